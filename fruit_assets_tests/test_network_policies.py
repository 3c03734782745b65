"""infra/network-policies.yaml: default deny, then exactly the flows the product needs, checked on
the labels the real pods carry (the chart's, dagster-k8s' run Job, Spark's executor template)."""

import copy
import os

import pytest

from fruit_assets_tests.harness import REPO
from fruit_assets_tests.harness.deployment import RELEASE, chart_pods, helm_values, infra_pods, k8s_documents, load, run_job
from fruit_assets_tests.harness.network_policy import Peer, allowed

POSTGRES = Peer(address="VPC_CIDR")
INTERNET = Peer(address="internet")  # S3, STS, the OIDC provider, the API server's endpoint
DNS = Peer(labels={"k8s-app": "kube-dns"}, namespace="kube-system")


@pytest.fixture(scope="module")
def policies():
    documents = k8s_documents(os.path.join(REPO, "infra", "network-policies.yaml"))
    assert {d["kind"] for d in documents} == {"NetworkPolicy"}
    return documents


@pytest.fixture(scope="module")
def pods():
    values = helm_values()
    labelled = {name: Peer(pod["metadata"]["labels"]) for name, pod in chart_pods(values).items()}
    labelled["run pod"] = Peer(run_job(values)["spec"]["template"]["metadata"]["labels"])
    executor = load(os.path.join(REPO, "docker", "executor-pod-template.yaml"))
    labelled["executor"] = Peer({**executor["metadata"]["labels"], "spark-role": "executor"})  # Spark adds spark-role
    for name, template in infra_pods().items():
        labelled[name] = Peer(template["metadata"]["labels"])
    return labelled


def test_everything_is_denied_first(policies):
    [deny] = [p for p in policies if p["metadata"]["name"] == "default-deny-all"]
    assert deny["spec"]["podSelector"] == {} and set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]


def test_the_writable_webserver_is_reached_only_through_the_auth_proxy(policies, pods):
    webserver = pods["dagster-webserver"]
    assert allowed(policies, pods["oauth2-proxy"], webserver, 3000)
    for other in ("executor", "run pod", "user-deployments", "dagster-daemon", "fruit-assets-spark-history"):
        assert not allowed(policies, pods[other], webserver, 3000), other
    assert not allowed(policies, INTERNET, webserver, 3000)
    assert allowed(policies, INTERNET, pods["oauth2-proxy"], 4180)


def test_the_code_servers_grpc_port_admits_the_webservers_and_the_daemon_only(policies, pods):
    code_server = pods["user-deployments"]
    for caller in ("dagster-webserver", "dagster-webserver-read-only", "dagster-daemon"):
        assert allowed(policies, pods[caller], code_server, 3030), caller
    for other in ("executor", "run pod", "oauth2-proxy", "fruit-assets-spark-history"):
        assert not allowed(policies, pods[other], code_server, 3030), other
    assert not allowed(policies, pods["dagster-webserver"], code_server, 22)


def test_spark_driver_and_executors_reach_each_other_on_their_ports_only(policies, pods):
    driver, executor = pods["run pod"], pods["executor"]
    assert allowed(policies, executor, driver, 7078) and allowed(policies, executor, driver, 7079)
    assert allowed(policies, driver, executor, 7079) and allowed(policies, executor, executor, 7079)
    assert not allowed(policies, executor, driver, 8080)
    assert not allowed(policies, pods["user-deployments"], executor, 7079)


def test_postgres_is_reached_by_the_dagster_services_runs_and_code_server_not_by_executors(policies, pods):
    for client in ("run pod", "user-deployments", "dagster-webserver", "dagster-daemon"):
        assert allowed(policies, pods[client], POSTGRES, 5432), client
    for other in ("executor", "oauth2-proxy", "fruit-assets-spark-history"):
        assert not allowed(policies, pods[other], POSTGRES, 5432), other


def test_every_pod_resolves_names_and_reaches_what_it_needs_on_443(policies, pods):
    for name, pod in pods.items():
        assert allowed(policies, pod, DNS, 53, "UDP"), name
        assert allowed(policies, pod, INTERNET, 443), name
        assert not allowed(policies, pod, INTERNET, 80), name


def test_removing_a_rule_closes_its_flow(policies, pods):
    without_grpc = [p for p in copy.deepcopy(policies) if p["metadata"]["name"] != "code-server-grpc"]
    assert not allowed(without_grpc, pods["dagster-daemon"], pods["user-deployments"], 3030)


def test_the_auth_proxy_forwards_to_the_webserver_service_the_chart_creates():
    values = helm_values()
    [deployment] = [d for d in k8s_documents(os.path.join(REPO, "infra", "oauth2-proxy.yaml")) if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    service = f"{RELEASE}-{values['dagsterWebserver']['nameOverride']}"
    assert f"--upstream=http://{service}:{values['dagsterWebserver']['service']['port']}" in args
    assert values["dagsterWebserver"]["enableReadOnly"] is True
    assert values["dagsterWebserver"]["readinessProbe"]["httpGet"]["port"] == values["dagsterWebserver"]["service"]["port"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert [v["secret"]["secretName"] for v in volumes if "secret" in v] == ["oauth2-proxy-config"]
    assert not any("env" in c for c in deployment["spec"]["template"]["spec"]["containers"])  # secrets as files only
