"""Deployment files, validated the way Helm and Kubernetes would (no cluster runs here)."""

import json
import os
import sys

import jsonschema
import pytest
import yaml

from fruit_assets_tests.harness import REPO

SCHEMAS = os.path.join(os.path.dirname(REPO), "shared", "schemas")


def deep_merge(base, override):
    """Helm's merge of a values file over the chart's defaults: maps key by key, else replace."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else value
        return merged
    return override


def load(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def validate(schema_file, values):
    with open(os.path.join(SCHEMAS, schema_file)) as handle:
        schema = json.load(handle)
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(values), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


@pytest.fixture(scope="module")
def values():
    return deep_merge(load(os.path.join(SCHEMAS, "dagster-helm-default-values.yaml")),
                      load(os.path.join(REPO, "helm-values", "values.yaml")))


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
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert "eks.amazonaws.com/role-arn" in values["serviceAccount"]["annotations"]
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "fruit_assets"]
    env = {e["name"] for e in deployment["env"]}
    assert {"FRUIT_DATA_URI", "SPARK_MASTER", "SPARK_K8S_IMAGE", "SPARK_K8S_NAMESPACE", "SPARK_K8S_SERVICE_ACCOUNT"} <= env
    assert not env & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # IRSA, never static keys
    run_env = {e["name"] for e in values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]["env"]}
    assert {"POD_NAME", "POD_IP"} <= run_env


def k8s_documents(path):
    with open(path) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def k8s_validate(document):
    import kubernetes_validate

    kubernetes_validate.validate(document, "1.33.0", strict=True)


def test_rbac_and_executor_pod_template_validate():
    documents = k8s_documents(os.path.join(REPO, "infra", "rbac.yaml"))
    assert {d["kind"] for d in documents} == {"Role", "RoleBinding"}
    for document in documents + k8s_documents(os.path.join(REPO, "docker", "executor-pod-template.yaml")):
        k8s_validate(document)


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


def run_job(values):
    """The Job dagster-k8s' K8sRunLauncher would create for a run of this code location, built by
    dagster-k8s' own job construction from the Helm values' runK8sConfig."""
    from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
    from kubernetes.client import ApiClient

    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    [deployment] = values["dagster-user-deployments"]["deployments"]
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    snake = {"containerConfig": "container_config", "podSpecConfig": "pod_spec_config",
             "podTemplateSpecMetadata": "pod_template_spec_metadata", "jobSpecConfig": "job_spec_config",
             "jobMetadata": "job_metadata"}
    user_config = UserDefinedDagsterK8sConfig.from_dict({snake[k]: v for k, v in launcher["runK8sConfig"].items()})
    job_config = DagsterK8sJobConfig(
        job_image=image, dagster_home="/opt/dagster/dagster_home", image_pull_policy=launcher["imagePullPolicy"],
        instance_config_map="dagster-instance",
        postgres_password_secret="dagster-postgresql-secret",  # pragma: allowlist secret (a Secret's name)
        service_account_name=values["serviceAccount"]["name"], env_vars=[],
    )
    job = construct_dagster_k8s_job(
        job_config, ["dagster", "api", "execute_run", "{}"], "dagster-run-0123abcd",
        user_defined_k8s_config=user_config, pod_name="dagster-run-0123abcd", component="run_worker",
        env_vars=deployment["env"],
    )
    return ApiClient().sanitize_for_serialization(job)


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
    assert {("pods", "create"), ("pods", "delete"), ("pods", "watch"), ("services", "create"), ("configmaps", "create")} <= granted

    incomplete = SparkResource(master="k8s://https://kubernetes.default.svc")
    with pytest.raises(ValueError, match="SPARK_K8S_NAMESPACE"):
        incomplete.settings()


def test_iam_policy_is_least_privilege_and_matches_eksctl():
    with open(os.path.join(REPO, "infra", "iam-policy.json")) as handle:
        policy = json.load(handle)
    cluster = load(os.path.join(REPO, "infra", "cluster.yaml"))
    [account] = cluster["iam"]["serviceAccounts"]
    assert cluster["iam"]["withOIDC"] is True and account["metadata"]["name"] == "fruit-assets"
    assert account["attachPolicy"]["Statement"] == policy["Statement"]
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert actions == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    assert all("*" not in r.split(":::")[1].split("/")[0] for s in policy["Statement"] for r in s["Resource"])
    assert not any(s["Resource"] == ["*"] for s in policy["Statement"])


def test_image_constraints_pin_every_requirement_within_setup_py():
    """docker/constraints.txt (what the image installs) satisfies setup.py's ranges and pins each
    of its requirements: a bump in one without the other fails here, not ten minutes into a build."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with open(os.path.join(REPO, "docker", "constraints.txt")) as handle:
        pins = {}
        for line in handle:
            if line.strip() and not line.startswith("#"):
                requirement = Requirement(line.strip())
                pins[canonicalize_name(requirement.name)] = str(requirement.specifier).removeprefix("==")
    sys.path.insert(0, os.path.join(REPO, "docker"))
    try:
        from lock_constraints import setup_py_requirements
    finally:
        sys.path.pop(0)
    runtime = [Requirement(r) for r in setup_py_requirements()]
    assert len(runtime) >= 15
    for requirement in runtime:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in docker/constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])
    assert {"tensorflow-cpu", "onnxruntime", "pyspark", "dagster", "tf2onnx", "protobuf"} <= set(pins)
