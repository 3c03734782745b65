"""The pods the deployment defines, as Kubernetes would receive them, without a cluster: the Helm
values merged over the chart's defaults, the run Job that dagster-k8s' own code builds from them,
the chart's pods (webserver, read-only webserver, daemon, code server) put together field by field
as the chart's templates do, the executor pod as Spark builds it from the template, and the
manifests under infra/."""

from __future__ import annotations

import copy
import os

import yaml

from fruit_assets_tests.harness import REPO

SCHEMAS = os.path.join(os.path.dirname(REPO), "shared", "schemas")
RELEASE = "dagster"  # docs/deploy-eks.md installs the chart under this release name


def load(path: str):
    with open(path) as handle:
        return yaml.safe_load(handle)


def k8s_documents(path: str) -> list[dict]:
    with open(path) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def deep_merge(base, override):
    """Helm's merge of a values file over the chart's defaults: maps key by key, else replace."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else value
        return merged
    return override


def helm_values() -> dict:
    return deep_merge(load(os.path.join(SCHEMAS, "dagster-helm-default-values.yaml")),
                      load(os.path.join(REPO, "helm-values", "values.yaml")))


def image_name(image: dict) -> str:
    """The chart's ``dagster.dagsterImage.name``: the digest wins over the tag."""
    if image.get("digest"):
        return f"{image['repository']}@{image['digest']}"
    return f"{image['repository']}:{image['tag']}"


def run_job(values: dict) -> dict:
    """The Job dagster-k8s' K8sRunLauncher would create for a run of this code location, built by
    dagster-k8s' own job construction from the Helm values' runK8sConfig."""
    from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
    from kubernetes.client import ApiClient

    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    [deployment] = values["dagster-user-deployments"]["deployments"]
    snake = {"containerConfig": "container_config", "podSpecConfig": "pod_spec_config",
             "podTemplateSpecMetadata": "pod_template_spec_metadata", "jobSpecConfig": "job_spec_config",
             "jobMetadata": "job_metadata"}
    user_config = UserDefinedDagsterK8sConfig.from_dict({snake[k]: v for k, v in launcher["runK8sConfig"].items()})
    job_config = DagsterK8sJobConfig(
        job_image=image_name(deployment["image"]), dagster_home="/opt/dagster/dagster_home",
        image_pull_policy=launcher["imagePullPolicy"], instance_config_map="dagster-instance",
        postgres_password_secret=values["global"]["postgresqlSecretName"],
        # The code location's container context names the subchart's account; runK8sConfig overrides it.
        service_account_name=values["dagster-user-deployments"]["serviceAccount"]["name"], env_vars=[],
    )
    job = construct_dagster_k8s_job(
        job_config, ["dagster", "api", "execute_run", "{}"], "dagster-run-0123abcd",
        user_defined_k8s_config=user_config, pod_name="dagster-run-0123abcd", component="run_worker",
        env_vars=deployment["env"],
    )
    job = ApiClient().sanitize_for_serialization(job)
    job["metadata"].setdefault("namespace", "dagster")  # the launcher creates it in the run namespace
    return job


def _dagster_service_pod(values: dict, section: str, component: str, init_images: list[tuple[str, str]]) -> dict:
    """helm/dagster/templates/helpers/_deployment-webserver.tpl and deployment-daemon.yaml: the
    section's podSecurityContext on the pod, its securityContext on the main container and on every
    init container, initContainerResources on the init containers, its volumes and mounts."""
    settings = values[section]
    main = {
        "name": "dagster", "image": image_name({**settings["image"], "tag": settings["image"].get("tag") or "1.13.27"}),
        "securityContext": copy.deepcopy(settings["securityContext"]),
        "resources": copy.deepcopy(settings["resources"]),
        "volumeMounts": [{"name": "dagster-instance", "mountPath": "/opt/dagster/dagster_home/dagster.yaml",
                          "subPath": "dagster.yaml"}, *copy.deepcopy(settings.get("volumeMounts") or [])],
    }
    inits = [{"name": name, "image": image, "securityContext": copy.deepcopy(settings["securityContext"]),
              "resources": copy.deepcopy(settings.get("initContainerResources") or {})}
             for name, image in init_images]
    return {
        "metadata": {"labels": {"app.kubernetes.io/name": "dagster", "component": component}},
        "spec": {
            "serviceAccountName": values["serviceAccount"]["name"],
            "automountServiceAccountToken": True,  # the chart hard-codes it
            "securityContext": copy.deepcopy(settings["podSecurityContext"]),
            "initContainers": inits,
            "containers": [main],
            "volumes": [{"name": "dagster-instance", "configMap": {"name": f"{RELEASE}-instance"}},
                        *copy.deepcopy(settings.get("volumes") or [])],
        },
    }


def chart_pods(values: dict) -> dict[str, dict]:
    """The chart's long-running pods, keyed by their ``component`` label."""
    postgres = values["postgresql"]["image"]
    check_db = ("check-db-ready", f"{postgres['registry']}/{postgres['repository']}:{postgres['tag']}")
    subchart = values["dagster-user-deployments"]
    busybox = f"{values['busybox']['image']['repository']}:{values['busybox']['image']['tag']}"
    webserver_inits = [check_db, *[(f"init-user-deployment-{d['name']}", busybox) for d in subchart["deployments"]]]
    pods = {"dagster-webserver": _dagster_service_pod(values, "dagsterWebserver", "dagster-webserver", webserver_inits),
            "dagster-daemon": _dagster_service_pod(values, "dagsterDaemon", "dagster-daemon", [check_db])}
    if values["dagsterWebserver"]["enableReadOnly"]:
        pods["dagster-webserver-read-only"] = _dagster_service_pod(
            values, "dagsterWebserver", "dagster-webserver-read-only", webserver_inits)
    # helm/dagster/charts/dagster-user-deployments/templates/deployment-user.yaml
    for deployment in subchart["deployments"]:
        pods["user-deployments"] = {
            "metadata": {"labels": {"app.kubernetes.io/name": "dagster", "component": "user-deployments",
                                    "deployment": deployment["name"]}},
            "spec": {
                "serviceAccountName": (deployment.get("serviceAccount") or {}).get("name")
                or subchart["serviceAccount"]["name"],
                "automountServiceAccountToken": True,  # the subchart hard-codes it
                "securityContext": copy.deepcopy(deployment["podSecurityContext"]),
                "containers": [{
                    "name": "dagster", "image": image_name(deployment["image"]),
                    "securityContext": copy.deepcopy(deployment["securityContext"]),
                    "resources": copy.deepcopy(deployment["resources"]),
                    "volumeMounts": copy.deepcopy(deployment.get("volumeMounts") or []),
                }],
                "volumes": copy.deepcopy(deployment.get("volumes") or []),
            },
        }
    return pods


def executor_pod(spark_conf: dict[str, str]) -> dict:
    """docker/executor-pod-template.yaml with what Spark's BasicExecutorFeatureStep adds from the
    application's conf: the image, CPU request and limit, memory request = limit = heap + overhead."""
    template = load(os.path.join(REPO, "docker", "executor-pod-template.yaml"))
    container = template["spec"]["containers"][0]
    memory_mib = _mebibytes(spark_conf["spark.executor.memory"]) + _mebibytes(spark_conf["spark.executor.memoryOverhead"])
    resources = container.setdefault("resources", {})
    resources.setdefault("requests", {}).update(
        {"cpu": spark_conf["spark.kubernetes.executor.request.cores"], "memory": f"{memory_mib}Mi"})
    resources.setdefault("limits", {}).update({"memory": f"{memory_mib}Mi"})
    if "spark.kubernetes.executor.limit.cores" in spark_conf:
        resources["limits"]["cpu"] = spark_conf["spark.kubernetes.executor.limit.cores"]
    container["image"] = spark_conf["spark.kubernetes.container.image"]
    template["spec"]["serviceAccountName"] = spark_conf.get(
        "spark.kubernetes.authenticate.executor.serviceAccountName", template["spec"].get("serviceAccountName"))
    return template


def _mebibytes(size: str) -> int:
    units = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
    size = size.strip().lower().removesuffix("b")
    return int(float(size[:-1]) * units[size[-1]]) if size[-1] in units else int(size) // (1024 * 1024)


def infra_pods() -> dict[str, dict]:
    """Every pod template of a workload under infra/ (Deployments), keyed by the workload's name."""
    pods = {}
    for name in sorted(os.listdir(os.path.join(REPO, "infra"))):
        if name.endswith(".yaml"):
            for document in k8s_documents(os.path.join(REPO, "infra", name)):
                if document.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                    pods[document["metadata"]["name"]] = document["spec"]["template"]
    return pods
