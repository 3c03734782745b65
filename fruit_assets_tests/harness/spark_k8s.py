"""Spark's own Kubernetes code (the spark-kubernetes jar in the pyspark wheel) driven through py4j:
the executor pod exactly as Spark's scheduler would ask the API server for it, for the product's
configuration of ``k8s://`` masters and its pod template, with no API server
(KubernetesConf.createExecutorConf, then KubernetesExecutorBuilder with every feature step).

``podman_options`` does what a kubelet does with that pod's one container (environment and field
references, volumes, user, capabilities, read-only root, memory and CPU limits), so the built image
can be started in the executor role the way a node would start it."""

from __future__ import annotations

import json
import os

from fruit_assets.spark_jobs.kubernetes import KubernetesSettings, kubernetes_conf
from fruit_assets.spark_jobs.session import SparkSettings, session_conf
from fruit_assets_tests.harness import REPO

K8S_MASTER = "k8s://https://kubernetes.default.svc"
# The file the image copies to /opt/fruit_assets/executor-pod-template.yaml.
POD_TEMPLATE = os.path.join(REPO, "docker", "executor-pod-template.yaml")
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fruit-assets@sha256:" + "0" * 64


def product_settings(**overrides) -> KubernetesSettings:
    """KubernetesSettings as helm-values/ deploy them (names from infra/service-accounts.yaml)."""
    values = dict(namespace="dagster", service_account="fruit-assets-run",
                  executor_service_account="fruit-assets-executor", image=IMAGE,
                  driver_pod_name="dagster-run-0a1b2c3d-x7k2p", driver_pod_ip="10.0.3.7", pod_template=POD_TEMPLATE)
    values.update(overrides)
    return KubernetesSettings(**values)


def product_conf(k8s: KubernetesSettings) -> dict[str, str]:
    """Every spark.* setting the product's driver has on a ``k8s://`` master."""
    return session_conf(SparkSettings(K8S_MASTER, conf=kubernetes_conf(k8s)))


def scala_object(jvm, name: str):
    return jvm.java.lang.Class.forName(name + "$").getField("MODULE$").get(None)


def executor_pod(spark_context, conf: dict[str, str], app_id: str, executor_id: str = "1",
                 security_manager=None) -> dict:
    """The executor pod (one container) Spark's Kubernetes scheduler would create, as a dict.

    ``security_manager``: the driver's (SparkEnv's), whose secret the pod then carries as Spark
    hands it over; default, a new one that generates a secret as a Kubernetes driver does."""
    jvm = spark_context._jvm
    spark_conf = jvm.org.apache.spark.SparkConf(False)
    for key, value in {**conf, "spark.master": K8S_MASTER, "spark.app.id": app_id}.items():
        spark_conf.set(key, value)
    if security_manager is None:
        security_manager = _security_manager(spark_context, spark_conf)
        security_manager.initializeAuth()
    executor_conf = scala_object(jvm, "org.apache.spark.deploy.k8s.KubernetesConf").createExecutorConf(
        spark_conf, executor_id, app_id, scala_object(jvm, "scala.None"), 0)
    profile = scala_object(jvm, "org.apache.spark.resource.ResourceProfile").getOrCreateDefaultProfile(spark_conf)
    # Built without a request: the client only parses the pod template here.
    client = jvm.io.fabric8.kubernetes.client.KubernetesClientBuilder().build()
    try:
        spec = jvm.org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBuilder().buildFromFeatures(
            executor_conf, security_manager, client, profile)
    finally:
        client.close()
    # As ExecutorPodsAllocator does: the pod with its executor container added.
    model = jvm.io.fabric8.kubernetes.api.model
    containers = spark_context._gateway.new_array(model.Container, 1)
    containers[0] = spec.pod().container()
    pod = model.PodBuilder(spec.pod().pod()).editOrNewSpec().addToContainers(containers).endSpec().build()
    return json.loads(jvm.io.fabric8.kubernetes.client.utils.Serialization.asJson(pod))


def _security_manager(spark_context, spark_conf):
    jvm = spark_context._jvm
    config = scala_object(jvm, "org.apache.spark.internal.config.package")
    return jvm.org.apache.spark.SecurityManager(spark_conf, scala_object(jvm, "scala.None"),
                                                config.AUTH_SECRET_FILE_DRIVER())


def driver_security_manager(spark_context):
    """A SecurityManager over the running driver's configuration: it holds the secret the driver
    authenticates with. (py4j cannot call SparkEnv.securityManager(): reflecting over SparkEnv
    loads a class that needs protobuf, which the wheel's driver class path lacks.)"""
    return _security_manager(spark_context, spark_context._jsc.sc().getConf())


def environment(pod: dict, pod_ip: str) -> dict[str, str]:
    """The executor container's environment as the kubelet sets it (downward-API fields resolved)."""
    fields = {"status.podIP": pod_ip, "metadata.name": pod["metadata"]["name"]}
    [container] = pod["spec"]["containers"]
    values = {}
    for variable in container.get("env", []):
        if "valueFrom" in variable:
            field_path = variable["valueFrom"].get("fieldRef", {}).get("fieldPath")
            if field_path not in fields:
                raise ValueError(f"the harness cannot resolve {variable}")
            values[variable["name"]] = fields[field_path]
        else:
            values[variable["name"]] = variable.get("value", "")
    return values


def _mebibytes(quantity: str) -> int:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[:-len(suffix)]) * factor)
    return int(int(quantity) / 2**20)


def podman_options(pod: dict) -> list[str]:
    """``podman run`` options that give the container what its pod spec asks of a node."""
    spec = pod["spec"]
    [container] = spec["containers"]
    pod_security, security = spec.get("securityContext", {}), container.get("securityContext", {})
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    group = security.get("runAsGroup", pod_security.get("runAsGroup"))
    options = []
    if user is not None:
        options += ["--user", f"{user}:{group}" if group is not None else str(user)]
    if security.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    for capability in security.get("capabilities", {}).get("drop", []):
        options += ["--cap-drop", capability]
    if security.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    limits = container.get("resources", {}).get("limits", {})
    if "memory" in limits:
        options += ["--memory", f"{_mebibytes(limits['memory'])}m"]
    if "cpu" in limits:
        options += ["--cpus", str(limits["cpu"])]
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        # emptyDir: a fresh writable folder. configMap: the files Spark's driver would put there
        # (its SPARK_CONF_DIR's, none here): an empty folder is what such a driver gives.
        if "emptyDir" not in volume and "configMap" not in volume:
            raise ValueError(f"the harness cannot mount {volume}")
        options += ["--tmpfs", f"{mount['mountPath']}:rw,exec,nosuid,nodev,mode=1777"]
    return options
