"""Deployment files, validated the way Helm and Kubernetes would (no cluster runs here)."""

import json
import os
import sys

import jsonschema
import pytest

from fruit_assets_tests.harness import REPO
from fruit_assets_tests.harness.deployment import SCHEMAS, deep_merge, helm_values, k8s_documents, load, run_job

def validate(schema_file, values):
    with open(os.path.join(SCHEMAS, schema_file)) as handle:
        schema = json.load(handle)
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(values), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


@pytest.fixture(scope="module")
def values():
    return helm_values()


def test_helm_values_validate_against_the_dagster_chart_schema(values):
    validate("dagster-helm-values.schema.json", values)
    subchart = deep_merge(load(os.path.join(SCHEMAS, "dagster-user-deployments-default-values.yaml")),
                          values["dagster-user-deployments"])
    validate("dagster-user-deployments-values.schema.json", subchart)


def test_a_misspelt_key_is_caught_by_the_same_validation(values):
    broken = deep_merge(values, {"runLauncher": {"config": {"k8sRunLauncher": {"runK8sConfg": {}}}}})
    with pytest.raises(AssertionError, match="runK8sConfg"):
        validate("dagster-helm-values.schema.json", broken)


def test_helm_values_say_what_the_product_needs(values):
    daemon = values["dagsterDaemon"]
    assert daemon["runMonitoring"]["enabled"] and daemon["runRetries"]["enabled"]
    # No run can hold the data-root pool forever.
    assert daemon["runMonitoring"]["maxRuntimeSeconds"] == 21600
    assert daemon["runMonitoring"]["freeSlotsAfterRunEndSeconds"] == 60
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert "eks.amazonaws.com/role-arn" in values["serviceAccount"]["annotations"]
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "fruit_assets.definitions"]
    env = {e["name"] for e in deployment["env"]}
    assert {"FRUIT_DATA_URI", "SPARK_MASTER", "SPARK_K8S_IMAGE", "SPARK_K8S_NAMESPACE", "SPARK_K8S_SERVICE_ACCOUNT",
            "SPARK_K8S_EXECUTOR_SERVICE_ACCOUNT"} <= env
    assert not env & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # IRSA, never static keys
    run_env = {e["name"] for e in values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]["env"]}
    assert {"POD_NAME", "POD_IP"} <= run_env


def k8s_validate(document):
    import kubernetes_validate

    kubernetes_validate.validate(document, "1.33.0", strict=True)


CLUSTER_SCOPED = {"Namespace", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def test_every_kubernetes_manifest_validates():
    kinds = {}
    for name in sorted(os.listdir(os.path.join(REPO, "infra"))):
        if name.endswith(".yaml") and name != "cluster.yaml":  # eksctl's format, not Kubernetes'
            for document in k8s_documents(os.path.join(REPO, "infra", name)):
                k8s_validate(document)
                kinds.setdefault(name, set()).add(document["kind"])
                # Namespaces and admission policies are cluster-scoped; everything else lives in dagster.
                assert document["kind"] in CLUSTER_SCOPED or document["metadata"]["namespace"] == "dagster", name
    assert kinds == {
        "namespace.yaml": {"Namespace"}, "service-accounts.yaml": {"ServiceAccount"}, "rbac.yaml": {"Role", "RoleBinding"},
        "network-policies.yaml": {"NetworkPolicy"}, "oauth2-proxy.yaml": {"ServiceAccount", "Deployment", "Service"},
        "spark-history.yaml": {"ServiceAccount", "Deployment", "Service"},
        "admission-policy.yaml": {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ConfigMap"},
    }
    k8s_validate(load(os.path.join(REPO, "docker", "executor-pod-template.yaml")))


def test_one_identity_per_role(values):
    """Webserver and daemon (the chart's account), code server (the subchart's), run pods, executors:
    four accounts, each with its own IAM role, and only the run pods' bound to the driver Role."""
    run_pod = run_job(values)["spec"]["template"]["spec"]
    [deployment] = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    accounts = {
        "webserver and daemon": values["serviceAccount"]["name"],
        "code server": values["dagster-user-deployments"]["serviceAccount"]["name"],
        "run pod": run_pod["serviceAccountName"],
        "executor": env["SPARK_K8S_EXECUTOR_SERVICE_ACCOUNT"],
    }
    assert accounts == {"webserver and daemon": "fruit-assets-webserver", "code server": "fruit-assets-code-server",
                        "run pod": "fruit-assets-run", "executor": "fruit-assets-executor"}
    assert env["SPARK_K8S_SERVICE_ACCOUNT"] == run_pod["serviceAccountName"]
    roles = {
        values["serviceAccount"]["name"]: values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"],
        values["dagster-user-deployments"]["serviceAccount"]["name"]:
            values["dagster-user-deployments"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"],
    }
    for account in k8s_documents(os.path.join(REPO, "infra", "service-accounts.yaml")):
        roles[account["metadata"]["name"]] = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert set(roles) == set(accounts.values())
    assert {arn.rsplit("/", 1)[1] for arn in roles.values()} == set(accounts.values())  # role named as its account
    bindings = [d for d in k8s_documents(os.path.join(REPO, "infra", "rbac.yaml")) if d["kind"] == "RoleBinding"]
    assert [s["name"] for b in bindings for s in b["subjects"]] == ["fruit-assets-run"]
    # The subchart's default Role (every verb on pods and Jobs) is not bound to the code server.
    assert values["dagster-user-deployments"]["rbacEnabled"] is False


def test_the_database_password_comes_from_a_secret_the_runbook_creates(values):
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["enabled"] is False  # the chart's in-cluster Postgres keeps its default password
    assert values["postgresql"]["postgresqlPassword"] in ("", None)
    assert values["global"]["postgresqlSecretName"] == "dagster-postgresql-secret"  # pragma: allowlist secret
    with open(os.path.join(REPO, "docs", "deploy-eks.md")) as handle:
        runbook = handle.read()
    assert "kubectl -n dagster create secret generic dagster-postgresql-secret" in runbook
    env = run_job(values)["spec"]["template"]["spec"]["containers"][0]["env"]
    [password] = [e for e in env if e["name"] == "DAGSTER_PG_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["name"] == "dagster-postgresql-secret" and "value" not in password


def test_spark_history_server_manifest_validates_and_serves_what_the_sync_container_fills():
    documents = {d["kind"]: d for d in k8s_documents(os.path.join(REPO, "infra", "spark-history.yaml"))}
    assert set(documents) == {"ServiceAccount", "Deployment", "Service"}
    for document in documents.values():
        k8s_validate(document)
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    sync, server = containers["sync"], containers["history-server"]
    assert sync["command"][:3] == ["fruit-assets", "spark-history", "--sync-only"]
    cache = sync["command"][sync["command"].index("--cache") + 1]
    options = {e["name"]: e["value"] for e in server["env"]}["SPARK_HISTORY_OPTS"]
    assert f"-Dspark.history.fs.logDirectory=file://{cache}" in options.split()
    assert {m["mountPath"] for m in sync["volumeMounts"] if m["name"] == "cache"} == {cache}
    assert {(m["mountPath"], m.get("readOnly")) for m in server["volumeMounts"] if m["name"] == "cache"} == {(cache, True)}
    assert documents["Service"]["spec"]["ports"][0]["port"] == 18080 and documents["Service"]["spec"]["type"] == "ClusterIP"
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True


def test_a_kubernetes_validation_error_is_caught():
    import kubernetes_validate

    [role, _binding] = k8s_documents(os.path.join(REPO, "infra", "rbac.yaml"))
    role["rules"][0]["verbz"] = role["rules"][0].pop("verbs")
    with pytest.raises(kubernetes_validate.ValidationError):
        k8s_validate(role)


def test_run_job_built_by_dagster_k8s_validates_and_matches_rbac_and_spark_conf(values):
    from fruit_assets.resources import SparkResource

    job = run_job(values)
    k8s_validate(job)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"  # serialized back to camelCase
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert container["resources"]["limits"]["memory"] == "4Gi"
    assert pod["securityContext"]["runAsNonRoot"] is True

    [binding] = [d for d in k8s_documents(os.path.join(REPO, "infra", "rbac.yaml")) if d["kind"] == "RoleBinding"]
    assert pod["serviceAccountName"] == binding["subjects"][0]["name"] == env["SPARK_K8S_SERVICE_ACCOUNT"]["value"]

    # The Spark configuration the run pod would build from that environment.
    spark = SparkResource(
        master=env["SPARK_MASTER"]["value"], k8s_namespace=binding["metadata"]["namespace"],
        k8s_service_account=env["SPARK_K8S_SERVICE_ACCOUNT"]["value"], k8s_image=env["SPARK_K8S_IMAGE"]["value"],
        k8s_driver_pod_name="dagster-run-0123abcd", k8s_driver_pod_ip="10.1.2.3",
    )
    conf = spark.settings().conf
    assert conf["spark.submit.deployMode"] == "client"
    assert conf["spark.kubernetes.driver.pod.name"] == "dagster-run-0123abcd"
    assert conf["spark.driver.host"] == "10.1.2.3" and conf["spark.driver.port"] == "7078"
    assert conf["spark.kubernetes.authenticate.executor.serviceAccountName"] == pod["serviceAccountName"]
    assert conf["spark.kubernetes.container.image"] == container["image"]
    assert conf["spark.dynamicAllocation.shuffleTracking.enabled"] == "true"
    with open(os.path.join(REPO, "docker", "Dockerfile")) as handle:
        assert conf["spark.kubernetes.executor.podTemplateFile"] in handle.read()
    role = [d for d in k8s_documents(os.path.join(REPO, "infra", "rbac.yaml")) if d["kind"] == "Role"][0]
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert {("pods", "create"), ("pods", "delete"), ("pods", "watch"), ("configmaps", "create")} <= granted
    # The driver makes and removes its executors, nothing else: no Secrets, no edits, no wildcards.
    assert {r for r, _ in granted} == {"pods", "configmaps", "persistentvolumeclaims"}
    assert not {v for _, v in granted} & {"update", "patch", "*", "escalate", "bind", "impersonate"}
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])

    incomplete = SparkResource(master="k8s://https://kubernetes.default.svc")
    with pytest.raises(ValueError, match="SPARK_K8S_NAMESPACE"):
        incomplete.settings()


def test_image_constraints_pin_every_requirement_within_setup_py():
    """docker/constraints.txt (what the image installs) satisfies setup.py's ranges and pins each
    of its requirements: a bump in one without the other fails here, not ten minutes into a build."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    sys.path.insert(0, os.path.join(REPO, "docker"))
    try:
        from lock_constraints import read_lock, setup_py_requirements
    finally:
        sys.path.pop(0)
    pins = {key: version for key, (_name, version, _sha256s) in
            read_lock(os.path.join(REPO, "docker", "constraints.txt")).items()}
    runtime = [Requirement(r) for r in setup_py_requirements()]
    assert len(runtime) >= 15
    for requirement in runtime:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in docker/constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])
    assert {"tensorflow-cpu", "onnxruntime", "pyspark", "dagster", "tf2onnx", "protobuf"} <= set(pins)
