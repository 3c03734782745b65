"""infra/cluster.yaml (eksctl): the isolation the rest of the deployment assumes is switched on in
the cluster itself. No pod reaches the instance metadata service (IMDS) and with it the node's IAM
role, on any node group; the VPC CNI runs its network policy agent, without which EKS stores the
NetworkPolicies of infra/network-policies.yaml and enforces none of them; and the one AWS caller
that used to borrow the node role, the cluster autoscaler, has a role of its own.

No AWS account is reachable here. The settings are read from the file (every check is also run on
planted broken copies, so each one is shown to fail when its setting goes), and the whole file is
validated against eksctl's own ClusterConfig schema (vendored: data/README.md). The post-deploy
probes of docs/deploy-eks.md, which check the same isolation on the real cluster, are checked to be
pods the 'restricted' namespaces admit, aimed at what the NetworkPolicies protect."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import pytest
import yaml

from fruit_assets_tests.harness import REPO
from fruit_assets_tests.harness.deployment import RELEASE, chart_pods, helm_values, infra_pods, k8s_documents
from fruit_assets_tests.harness.network_policy import Peer, allowed
from fruit_assets_tests.harness.pod_security import violations

CLUSTER = os.path.join(REPO, "infra", "cluster.yaml")
DATA = os.path.join(os.path.dirname(__file__), "data")
SCHEMA = os.path.join(DATA, "eksctl-clusterconfig-v1alpha5.schema.json")
SCHEMA_COMMIT = "99984adb6164ece593c0728523b7f497ea61d60e"  # pragma: allowlist secret (a git commit)
SCHEMA_SHA256 = "ed723365682905196aad94782300f3a42962f7be1a2f8dc864b63f7dfd01b176"  # pragma: allowlist secret (a file hash)
RUNBOOK = os.path.join(REPO, "docs", "deploy-eks.md")
PROBE_SECTION = "## Isolation probes"
PROBE_NAMESPACE = "isolation-probe"
# Network policies arrived in vpc-cni 1.14 (EKS user guide, "Limit Pod traffic with Kubernetes
# network policies").
MIN_VPC_CNI = (1, 14)
AUTOSCALER = ("kube-system", "cluster-autoscaler")
POD_IDENTITY_AGENT = "eks-pod-identity-agent"


def load_cluster() -> dict:
    with open(CLUSTER) as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def cluster() -> dict:
    return load_cluster()


# --- what the file must say -----------------------------------------------------------------------

def node_groups(config: dict) -> list[tuple[str, dict]]:
    return [(f"{kind}[{index}] {group.get('name')!r}", group)
            for kind in ("nodeGroups", "managedNodeGroups") for index, group in enumerate(config.get(kind) or [])]


def imds_gaps(config: dict) -> list[str]:
    """Every node group on which a pod could reach IMDS (and so the node role), and why."""
    groups = node_groups(config)
    gaps = [] if groups else ["no node group at all"]
    for where, group in groups:
        # eksctl: IMDSv2 tokens required and a PUT response hop limit of 1 in the launch template
        # (pkg/cfn/builder/nodegroup.go makeMetadataOptions): the token never reaches a pod.
        if group.get("disablePodIMDS") is not True:
            gaps.append(f"{where}: disablePodIMDS is not true, pods reach IMDS")
        # eksctl defaults it to true today; said explicitly so that a change of default cannot reopen it.
        if group.get("disableIMDSv1") is not True:
            gaps.append(f"{where}: disableIMDSv1 is not true, IMDS answers without a token")
        addon_policies = sorted(k for k, v in ((group.get("iam") or {}).get("withAddonPolicies") or {}).items() if v)
        if addon_policies:  # pkg/apis/eksctl.io/v1alpha5/validation.go refuses the pair
            gaps.append(f"{where}: iam.withAddonPolicies {addon_policies} with disablePodIMDS, eksctl refuses the file")
        if group.get("launchTemplate"):  # eksctl cannot set the metadata options on a template it does not write
            gaps.append(f"{where}: a custom launchTemplate, eksctl refuses disablePodIMDS/disableIMDSv1 with it")
    return gaps


def parse_version(version: str) -> tuple[int, int] | None:
    match = re.match(r"v?(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def network_policy_gaps(config: dict) -> list[str]:
    """Every reason the VPC CNI would accept NetworkPolicies without enforcing them."""
    cnis = [addon for addon in config.get("addons") or [] if addon.get("name") == "vpc-cni"]
    if len(cnis) != 1:
        return [f"{len(cnis)} vpc-cni add-ons, one expected"]
    [cni] = cnis
    raw = cni.get("configurationValues")
    if not isinstance(raw, str) or not raw.strip():
        return ["vpc-cni: no configurationValues, the network policy agent stays off"]
    try:
        values = yaml.safe_load(raw)  # EKS takes JSON or YAML; JSON parses as YAML
    except yaml.YAMLError as error:
        return [f"vpc-cni: configurationValues do not parse: {error}"]
    if not isinstance(values, dict):
        return [f"vpc-cni: configurationValues are {type(values).__name__}, not an object"]
    gaps = []
    # The add-on's documented value is the string "true" (aws eks update-addon --configuration-values).
    if values.get("enableNetworkPolicy") != "true":
        gaps.append(f"vpc-cni: enableNetworkPolicy is {values.get('enableNetworkPolicy')!r}, not \"true\"")
    version = str(cni.get("version") or "latest")
    if version != "latest" and (parse_version(version) or (0, 0)) < MIN_VPC_CNI:
        gaps.append(f"vpc-cni: version {version} is older than {'.'.join(map(str, MIN_VPC_CNI))}, which has no policy agent")
    return gaps


def autoscaler_gaps(config: dict) -> list[str]:
    """The autoscaler's credentials, now that it cannot take the node role's."""
    associations = (config.get("iam") or {}).get("podIdentityAssociations") or []
    addons = {addon.get("name") for addon in config.get("addons") or []}
    gaps = []
    if associations and POD_IDENTITY_AGENT not in addons:  # pkg/ctl/cmdutils/configfile.go refuses the file
        gaps.append(f"iam.podIdentityAssociations without the {POD_IDENTITY_AGENT} add-on")
    mine = [a for a in associations if (a.get("namespace"), a.get("serviceAccountName")) == AUTOSCALER]
    if len(mine) != 1 or not (mine[0].get("wellKnownPolicies") or {}).get("autoScaler"):
        gaps.append("the cluster autoscaler has no Pod Identity role with eksctl's autoScaler policy")
    return gaps


def test_every_node_group_keeps_pods_away_from_imds(cluster):
    assert imds_gaps(cluster) == []
    assert {group["name"] for _, group in node_groups(cluster)} == {"system", "spark-executors"}


BREAK_IMDS = {
    "disablePodIMDS removed": lambda g: g.pop("disablePodIMDS"),
    "disablePodIMDS false": lambda g: g.update(disablePodIMDS=False),
    "disablePodIMDS as a string": lambda g: g.update(disablePodIMDS="true"),
    "disableIMDSv1 removed": lambda g: g.pop("disableIMDSv1"),
    "disableIMDSv1 false": lambda g: g.update(disableIMDSv1=False),
    "withAddonPolicies back": lambda g: g.update(iam={"withAddonPolicies": {"autoScaler": True}}),
    "a custom launch template": lambda g: g.update(launchTemplate={"id": "lt-0123456789abcdef0"}),
}


@pytest.mark.parametrize("group_name", ["system", "spark-executors"])
@pytest.mark.parametrize("breakage", sorted(BREAK_IMDS))
def test_one_node_group_that_leaves_imds_open_is_reported(cluster, breakage, group_name):
    broken = copy.deepcopy(cluster)
    [group] = [g for g in broken["managedNodeGroups"] if g["name"] == group_name]
    BREAK_IMDS[breakage](group)
    gaps = imds_gaps(broken)
    assert len(gaps) == 1 and repr(group_name) in gaps[0], gaps


def test_a_new_node_group_without_the_settings_is_reported(cluster):
    for kind in ("managedNodeGroups", "nodeGroups"):
        broken = copy.deepcopy(cluster)
        broken.setdefault(kind, []).append({"name": "gpu-executors", "instanceType": "g6.xlarge"})
        gaps = imds_gaps(broken)
        assert len(gaps) == 2 and all("'gpu-executors'" in gap for gap in gaps), gaps
    assert imds_gaps({**cluster, "managedNodeGroups": []}) == ["no node group at all"]


def test_the_vpc_cni_runs_its_network_policy_agent(cluster):
    assert network_policy_gaps(cluster) == []
    [cni] = [a for a in cluster["addons"] if a["name"] == "vpc-cni"]
    assert json.loads(cni["configurationValues"]) == {"enableNetworkPolicy": "true"}  # the form AWS documents
    # eksctl's addon update leaves a changed configuration alone unless told to overwrite it.
    assert cni["resolveConflicts"] == "overwrite"


BREAK_CNI = {
    "no configurationValues": (lambda a: a.pop("configurationValues"), "no configurationValues"),
    "turned off": (lambda a: a.update(configurationValues='{"enableNetworkPolicy": "false"}'), "'false'"),
    "a boolean": (lambda a: a.update(configurationValues='{"enableNetworkPolicy": true}'), "True"),
    "the key misspelt": (lambda a: a.update(configurationValues='{"enableNetworkPolicies": "true"}'), "None"),
    "not parseable": (lambda a: a.update(configurationValues='{"enableNetworkPolicy": "true"'), "do not parse"),
    "not an object": (lambda a: a.update(configurationValues='"enableNetworkPolicy"'), "not an object"),
    "too old a version": (lambda a: a.update(version="v1.13.4-eksbuild.1"), "older than 1.14"),
}


@pytest.mark.parametrize("breakage", sorted(BREAK_CNI))
def test_a_cni_that_would_not_enforce_is_reported(cluster, breakage):
    broken = copy.deepcopy(cluster)
    [cni] = [a for a in broken["addons"] if a["name"] == "vpc-cni"]
    change, expected = BREAK_CNI[breakage]
    change(cni)
    gaps = network_policy_gaps(broken)
    assert len(gaps) == 1 and expected in gaps[0], gaps


def test_a_missing_vpc_cni_is_reported(cluster):
    broken = copy.deepcopy(cluster)
    broken["addons"] = [a for a in broken["addons"] if a["name"] != "vpc-cni"]
    assert network_policy_gaps(broken) == ["0 vpc-cni add-ons, one expected"]
    cni = next(a for a in cluster["addons"] if a["name"] == "vpc-cni")
    for version in ("latest", "v1.14.0-eksbuild.3", "1.19.2"):
        assert network_policy_gaps({**cluster, "addons": [{**cni, "version": version}]}) == [], version


def test_the_cluster_autoscaler_has_a_role_of_its_own(cluster):
    assert autoscaler_gaps(cluster) == []
    [association] = cluster["iam"]["podIdentityAssociations"]
    # The chart names its account after the release unless told otherwise; Pod Identity binds by name.
    with open(RUNBOOK) as handle:
        runbook = handle.read()
    [install] = re.findall(r"helm upgrade --install cluster-autoscaler (.*?)\n```", runbook, re.S)
    assert f"-n {association['namespace']}" in install
    assert f"--set rbac.serviceAccount.name={association['serviceAccountName']}" in install


def test_an_autoscaler_without_credentials_is_reported(cluster):
    no_agent = copy.deepcopy(cluster)
    no_agent["addons"] = [a for a in no_agent["addons"] if a["name"] != POD_IDENTITY_AGENT]
    assert autoscaler_gaps(no_agent) == [f"iam.podIdentityAssociations without the {POD_IDENTITY_AGENT} add-on"]
    no_role = copy.deepcopy(cluster)
    del no_role["iam"]["podIdentityAssociations"]
    assert autoscaler_gaps(no_role) == ["the cluster autoscaler has no Pod Identity role with eksctl's autoScaler policy"]
    no_policy = copy.deepcopy(cluster)
    no_policy["iam"]["podIdentityAssociations"][0]["wellKnownPolicies"] = {"externalDNS": True}
    assert len(autoscaler_gaps(no_policy)) == 1


# --- eksctl's own schema ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def schema_validator():
    with open(SCHEMA, "rb") as handle:
        raw = handle.read()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "the vendored schema changed: update data/README.md"
    schema = json.loads(raw)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(validator, config: dict) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(config))


def test_the_vendored_schema_is_the_one_its_readme_names(schema_validator):
    with open(os.path.join(DATA, "README.md")) as handle:
        readme = handle.read()
    assert SCHEMA_COMMIT in readme and SCHEMA_SHA256 in readme and "eksctl-io/eksctl" in readme
    assert schema_validator.schema["$ref"] == "#/definitions/ClusterConfig"


def test_cluster_yaml_validates_against_eksctls_schema(schema_validator, cluster):
    assert schema_errors(schema_validator, cluster) == []


@pytest.mark.parametrize("change, where", [
    (lambda c: c["managedNodeGroups"][0].update(disablePodIMD=True), "managedNodeGroups/0: Additional properties"),
    (lambda c: c["managedNodeGroups"][1].update(disablePodIMDS="true"), "managedNodeGroups/1/disablePodIMDS: 'true' is not"),
    (lambda c: c["addons"][0].update(configurationValues={"enableNetworkPolicy": "true"}),
     "addons/0/configurationValues: {'enableNetworkPolicy': 'true'} is not of type 'string'"),
    (lambda c: c["addons"][0].update(configurationValue="{}"), "addons/0: Additional properties"),
    (lambda c: c["iam"]["podIdentityAssociations"][0].update(wellKnownPolicies={"autoscaler": True}),
     "iam/podIdentityAssociations/0/wellKnownPolicies: Additional properties"),
], ids=["misspelt field", "string for a boolean", "values not a string", "misspelt addon field", "misspelt policy"])
def test_the_schema_refuses_misspelt_and_mistyped_fields(schema_validator, cluster, change, where):
    broken = copy.deepcopy(cluster)
    change(broken)
    errors = schema_errors(schema_validator, broken)
    assert len(errors) == 1 and errors[0].startswith(where), errors


# --- the post-deploy probes of docs/deploy-eks.md ----------------------------------------------------

def probe_commands() -> dict[str, list[str]]:
    """Every `kubectl ... run` of the runbook's probe section, as argv, keyed by pod name."""
    with open(RUNBOOK) as handle:
        runbook = handle.read()
    section = runbook[runbook.index(PROBE_SECTION):]
    section = section[:section.index("\n## ", 1)]
    commands = {}
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:1] == ["kubectl"] and "run" in argv:
                commands[argv[argv.index("run") + 1]] = argv
    return commands


def options(argv: list[str]) -> dict[str, str | bool]:
    """kubectl's flags before `--`: `--flag=value`, `-n value`, or `--flag` (True)."""
    found: dict[str, str | bool] = {}
    words = argv[1:argv.index("--")]
    words = words[:words.index("run")] + words[words.index("run") + 2:]
    iterator = iter(words)
    for word in iterator:
        if word in ("-n", "--namespace"):
            found["namespace"] = next(iterator)
        elif word.startswith("--") and "=" in word:
            key, value = word[2:].split("=", 1)
            found[key] = value
        else:
            found[word.lstrip("-")] = True
    return found


def merged_pod(name: str, argv: list[str]) -> dict:
    """The pod `kubectl run` creates: its generated pod with --overrides applied as a strategic merge
    patch (containers merge by name), the part of it this probe uses."""
    flags = options(argv)
    overrides = json.loads(flags["overrides"])
    pod = {"containers": [{"name": name, "image": flags["image"], "command": argv[argv.index("--") + 1:]}],
           "restartPolicy": "Never"}
    for key, value in overrides["spec"].items():
        if key != "containers":
            pod[key] = value
    for patch in overrides["spec"].get("containers", []):
        target = next((c for c in pod["containers"] if c["name"] == patch["name"]), None)
        if target is None:  # a container of another name is added beside the generated one
            pod["containers"].append(patch)
        else:
            target.update({k: v for k, v in patch.items() if k != "name"})
    return pod


@pytest.fixture(scope="module")
def probes() -> dict[str, list[str]]:
    commands = probe_commands()
    assert set(commands) == {"probe-webserver-bypass", "probe-webserver-from-outside", "probe-imds-system",
                             "probe-imds-executors"}
    return commands


def test_every_probe_is_a_throwaway_pod_the_restricted_namespace_admits(probes):
    for name, argv in probes.items():
        flags = options(argv)
        assert flags.get("rm") is True and flags.get("i") is True and flags.get("restart") == "Never", name
        assert flags.get("command") is True and argv[argv.index("--") + 1:argv.index("--") + 3] == ["sh", "-c"], name
        assert re.fullmatch(r"curlimages/curl:\d+\.\d+\.\d+", flags["image"]), name  # a pinned version
        # Merged as a JSON merge patch (kubectl's default) the containers list would replace the
        # generated container, image and command included.
        assert flags.get("override-type") == "strategic", name
        overrides = json.loads(flags["overrides"])
        assert [c["name"] for c in overrides["spec"]["containers"]] == [name], name
        pod = merged_pod(name, argv)
        assert len(pod["containers"]) == 1 and violations(pod) == [], (name, violations(pod))
        assert pod["automountServiceAccountToken"] is False, name
    assert options(probes["probe-webserver-bypass"])["namespace"] == "dagster"
    assert {options(probes[n])["namespace"] for n in probes if n != "probe-webserver-bypass"} == {PROBE_NAMESPACE}


def test_the_runbook_gives_the_probe_namespace_the_same_pod_security_level():
    with open(RUNBOOK) as handle:
        runbook = handle.read()
    section = runbook[runbook.index(PROBE_SECTION):]
    assert f"kubectl create namespace {PROBE_NAMESPACE}" in section
    assert f"kubectl label namespace {PROBE_NAMESPACE} pod-security.kubernetes.io/enforce=restricted" in section
    assert f"kubectl delete namespace {PROBE_NAMESPACE}" in section
    [namespace] = k8s_documents(os.path.join(REPO, "infra", "namespace.yaml"))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


class _Discovery(BaseHTTPRequestHandler):
    """Just enough of an API server's discovery for `kubectl run --dry-run=client`."""

    DOCUMENTS = {
        "/api": {"kind": "APIVersions", "versions": ["v1"],
                 "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
        "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["create", "get"]}]},
    }

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.DOCUMENTS.get(self.path.split("?")[0])
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body or {"kind": "Status", "code": 404}).encode())

    def log_message(self, *args):
        pass


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_itself_renders_every_probe_as_an_admitted_pod(probes, tmp_path):
    """The same commands through kubectl's own flag handling and strategic merge (client-side dry
    run: no cluster, only a stub of the discovery it reads)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
        "users": [{"name": "stub", "user": {}}],
    }))
    try:
        for name, argv in probes.items():
            # A dry run cannot attach (-i) and creates nothing to remove (--rm).
            dry = [w for w in argv if w not in ("--rm", "-i")]
            dry[dry.index("--"):dry.index("--")] = ["--dry-run=client", "-o", "json"]
            result = subprocess.run(dry, env={**os.environ, "KUBECONFIG": str(config)}, capture_output=True,
                                    text=True, timeout=120)
            assert result.returncode == 0, (name, result.stderr)
            pod = json.loads(result.stdout)
            assert pod["kind"] == "Pod" and pod["metadata"]["name"] == name
            spec = pod["spec"]
            [container] = spec["containers"]
            assert container.get("image") == options(argv)["image"] and container["command"][:2] == ["sh", "-c"], name
            assert violations(spec) == [], (name, violations(spec))
            assert spec == {**merged_pod(name, argv), "dnsPolicy": "ClusterFirst",
                            "containers": [{**merged_pod(name, argv)["containers"][0], "resources": {}}]}, name
    finally:
        server.shutdown()


def ingress_rules_only(policies: list[dict]) -> list[dict]:
    """The policies with their egress halves dropped: what still refuses a connection when the
    source pod's own rules are not applied (the VPC CNI documents that it may not apply them to a
    standalone pod such as one from `kubectl run`)."""
    kept = copy.deepcopy(policies)
    for policy in kept:
        policy["spec"]["policyTypes"] = [t for t in policy["spec"].get("policyTypes", ["Ingress"]) if t == "Ingress"]
    return kept


def test_the_webserver_probes_aim_at_what_only_the_proxy_may_reach(probes):
    policies = k8s_documents(os.path.join(REPO, "infra", "network-policies.yaml"))
    labels = {name: pod["metadata"]["labels"] for name, pod in chart_pods(helm_values()).items()}
    webservers = {f"{RELEASE}-dagster-webserver": Peer(labels["dagster-webserver"]),
                  f"{RELEASE}-dagster-webserver-read-only": Peer(labels["dagster-webserver-read-only"])}
    proxy = Peer(infra_pods()["oauth2-proxy"]["metadata"]["labels"])
    # The address the proxy forwards to is the one the probes try directly.
    [proxy_pod] = [d for d in k8s_documents(os.path.join(REPO, "infra", "oauth2-proxy.yaml")) if d["kind"] == "Deployment"]
    [upstream] = [a.split("=", 1)[1] for a in proxy_pod["spec"]["template"]["spec"]["containers"][0]["args"]
                  if a.startswith("--upstream=")]
    assert upstream == f"http://{RELEASE}-dagster-webserver:3000"

    assert allowed(policies, proxy, webservers[f"{RELEASE}-dagster-webserver"], 3000)  # the one way in
    for name, namespace in (("probe-webserver-bypass", "dagster"), ("probe-webserver-from-outside", PROBE_NAMESPACE)):
        script = probes[name][-1]
        suffix = "" if namespace == "dagster" else ".dagster.svc.cluster.local"
        assert f'"http://$svc{suffix}:3000/server_info"' in script, name
        assert re.search(r"for svc in (.*?);", script)[1].split() == list(webservers), name
        probe = Peer({"run": name}, namespace=namespace)  # the only label kubectl run gives it
        for service, webserver in webservers.items():
            assert not allowed(ingress_rules_only(policies), probe, webserver, 3000), (name, service)
    # Inside dagster the probe's own default-deny egress refuses it too, where the CNI applies it.
    for webserver in webservers.values():
        assert not allowed(policies, Peer({"run": "probe-webserver-bypass"}), webserver, 3000)
    # The outside probe's control must pass, or its refusals prove nothing (no policy restricts its
    # own namespace, so only the proxy's ingress rules count).
    script = probes["probe-webserver-from-outside"][-1]
    assert "http://oauth2-proxy.dagster.svc.cluster.local:4180/ping" in script
    outside = Peer({"run": "probe-webserver-from-outside"}, namespace=PROBE_NAMESPACE)
    assert allowed(ingress_rules_only(policies), outside, proxy, 4180)


def test_the_imds_probes_land_on_every_node_group(probes, cluster):
    targets = {}
    for name in ("probe-imds-system", "probe-imds-executors"):
        spec = merged_pod(name, probes[name])
        script = probes[name][-1]
        assert "http://169.254.169.254/latest/meta-data/iam/security-credentials/" in script, name  # IMDSv1 GET
        assert '-X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60"' in script, name  # IMDSv2 token
        assert "http://169.254.169.254/latest/api/token" in script, name
        assert "-o /dev/null" in script and script.count("curl ") == 2, name  # prints no token, even on failure
        targets[name] = spec
    for _, group in node_groups(cluster):
        landing = [name for name, spec in targets.items()
                   if all(group["labels"].get(k) == v for k, v in spec["nodeSelector"].items())]
        assert len(landing) == 1, (group["name"], landing)
        tolerations = targets[landing[0]].get("tolerations") or []
        for taint in group.get("taints") or []:
            assert any(t["key"] == taint["key"] and t.get("effect") == taint["effect"]
                       and (t["operator"] == "Exists" or t.get("value") == taint["value"]) for t in tolerations), taint
