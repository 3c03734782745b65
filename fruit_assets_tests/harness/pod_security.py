"""Kubernetes' Pod Security Standard 'restricted' (v1.33), as the admission controller applies it to
a pod spec (camelCase, as the API server receives it). No cluster runs here: this is the
published rule list (kubernetes.io/docs/concepts/security/pod-security-standards), one function
per control, so a manifest that would be refused by a namespace labelled
``pod-security.kubernetes.io/enforce: restricted`` fails a test instead of a deployment."""

from __future__ import annotations

# Volume types 'restricted' allows (everything else, hostPath above all, is refused).
ALLOWED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}
ALLOWED_SECCOMP = {"RuntimeDefault", "Localhost"}
ALLOWED_ADDED_CAPABILITIES = {"NET_BIND_SERVICE"}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def _containers(pod: dict) -> list[dict]:
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or []), *(pod.get("ephemeralContainers") or [])]


def violations(pod: dict) -> list[str]:
    """Every reason the 'restricted' profile would refuse this pod spec (empty: admitted)."""
    found: list[str] = []
    pod_context = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"pod: {field} is true")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            found.append(f"volume {volume.get('name')}: type {sorted(kinds - ALLOWED_VOLUME_TYPES)} not allowed")
    for sysctl in pod_context.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"pod: sysctl {sysctl.get('name')} not allowed")
    if pod_context.get("runAsUser") == 0:
        found.append("pod: runAsUser is 0")
    if (pod_context.get("windowsOptions") or {}).get("hostProcess"):
        found.append("pod: hostProcess")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP:
        found.append(f"pod: seccompProfile {pod_seccomp}")
    pod_non_root = pod_context.get("runAsNonRoot")
    if pod_non_root is False:
        found.append("pod: runAsNonRoot is false")

    containers = _containers(pod)
    if not containers:
        found.append("pod: no containers")
    for container in containers:
        name = f"container {container.get('name')}"
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{name}: hostProcess")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{name}: hostPort {port['hostPort']}")
        if context.get("procMount") not in (None, "Default"):
            found.append(f"{name}: procMount {context['procMount']}")
        apparmor = (context.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            found.append(f"{name}: appArmorProfile {apparmor}")
        selinux = (context.get("seLinuxOptions") or {}).get("type")
        if selinux not in (None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"):
            found.append(f"{name}: seLinuxOptions.type {selinux}")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{name}: capabilities.drop does not hold ALL")
        added = set(capabilities.get("add") or []) - ALLOWED_ADDED_CAPABILITIES
        if added:
            found.append(f"{name}: capabilities.add {sorted(added)}")
        non_root = context.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            found.append(f"{name}: runAsNonRoot not true (pod or container)")
        if context.get("runAsUser") == 0:
            found.append(f"{name}: runAsUser is 0")
        seccomp = (context.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ALLOWED_SECCOMP:
            found.append(f"{name}: seccompProfile {seccomp} (pod or container must set RuntimeDefault)")
    return found


def hardening_gaps(pod: dict) -> list[str]:
    """What this project asks beyond 'restricted': a read-only root filesystem and requests and
    limits on every container."""
    gaps: list[str] = []
    for container in _containers(pod):
        name = f"container {container.get('name')}"
        if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            gaps.append(f"{name}: root filesystem not read-only")
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(kind) or {}):
                    gaps.append(f"{name}: no {resource} {kind[:-1]}")
    return gaps
