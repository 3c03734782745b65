"""Every pod the product defines meets Kubernetes' Pod Security Standard 'restricted' (the namespace
enforces it) plus what this project asks beyond it: a read-only root filesystem, requests and limits
on every container, and no Kubernetes API token where the role needs none."""

import copy
import os

import pytest

from fruit_assets_tests.harness import REPO
from fruit_assets_tests.harness.deployment import (
    chart_pods, executor_pod, helm_values, infra_pods, k8s_documents, run_job,
)
from fruit_assets_tests.harness.pod_security import hardening_gaps, violations


@pytest.fixture(scope="module")
def values():
    return helm_values()


def spark_conf_of_the_run_pod(values) -> dict[str, str]:
    """The executor settings a run pod builds from the deployment's environment."""
    from fruit_assets.spark_jobs.kubernetes import KubernetesSettings, kubernetes_conf

    [deployment] = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    return kubernetes_conf(KubernetesSettings(
        namespace=env["SPARK_K8S_NAMESPACE"], service_account=env["SPARK_K8S_SERVICE_ACCOUNT"],
        executor_service_account=env["SPARK_K8S_EXECUTOR_SERVICE_ACCOUNT"],
        image=env["SPARK_K8S_IMAGE"], driver_pod_name="dagster-run-0123abcd", driver_pod_ip="10.1.2.3",
    ))


def every_pod(values) -> dict[str, dict]:
    pods = {f"chart {name}": pod["spec"] for name, pod in chart_pods(values).items()}
    pods["run pod (dagster-k8s Job)"] = run_job(values)["spec"]["template"]["spec"]
    pods["Spark executor"] = executor_pod(spark_conf_of_the_run_pod(values))["spec"]
    pods.update({f"infra/{name}": template["spec"] for name, template in infra_pods().items()})
    return pods


def test_the_namespace_enforces_restricted():
    [namespace] = k8s_documents(os.path.join(REPO, "infra", "namespace.yaml"))
    labels = namespace["metadata"]["labels"]
    assert namespace["metadata"]["name"] == "dagster"
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "v1.33"


def test_every_pod_meets_restricted_and_the_project_hardening(values):
    pods = every_pod(values)
    assert {"chart dagster-webserver", "chart dagster-webserver-read-only", "chart dagster-daemon",
            "chart user-deployments", "run pod (dagster-k8s Job)", "Spark executor",
            "infra/fruit-assets-spark-history", "infra/oauth2-proxy"} <= set(pods)
    findings = {name: violations(pod) + hardening_gaps(pod) for name, pod in pods.items()}
    assert {name: found for name, found in findings.items() if found} == {}
    # The webserver's init containers (database and code-server waits) are covered too.
    assert len(pods["chart dagster-webserver"]["initContainers"]) == 2


def test_pods_that_need_no_api_token_mount_none(values):
    pods = every_pod(values)
    for name in ("Spark executor", "infra/fruit-assets-spark-history", "infra/oauth2-proxy"):
        assert pods[name]["automountServiceAccountToken"] is False, name
    executor_account = pods["Spark executor"]["serviceAccountName"]
    assert executor_account == "fruit-assets-executor"
    [executor_sa] = [d for d in k8s_documents(os.path.join(REPO, "infra", "service-accounts.yaml"))
                     if d["metadata"]["name"] == executor_account]
    assert executor_sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize("breach, expected", [
    (lambda pod: pod["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
     "allowPrivilegeEscalation is not false"),
    (lambda pod: [pod["securityContext"].pop("seccompProfile"),
                  pod["containers"][0]["securityContext"].pop("seccompProfile")], "seccompProfile None"),
    (lambda pod: pod["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
     "capabilities.add ['SYS_ADMIN']"),
    (lambda pod: pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}}), "type ['hostPath'] not allowed"),
    (lambda pod: pod.update(hostNetwork=True), "hostNetwork is true"),
    (lambda pod: pod["securityContext"].update(runAsUser=0), "runAsUser is 0"),
])
def test_a_pod_that_breaks_restricted_is_caught(values, breach, expected):
    pod = copy.deepcopy(executor_pod(spark_conf_of_the_run_pod(values))["spec"])
    assert violations(pod) == []
    breach(pod)
    assert any(expected in finding for finding in violations(pod)), violations(pod)


def test_a_writable_root_or_a_missing_limit_is_caught(values):
    pod = copy.deepcopy(run_job(values)["spec"]["template"]["spec"])
    pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    del pod["containers"][0]["resources"]["limits"]["cpu"]
    assert hardening_gaps(pod) == ["container dagster: root filesystem not read-only", "container dagster: no cpu limit"]
