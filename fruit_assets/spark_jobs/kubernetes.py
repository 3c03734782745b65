"""Spark on Kubernetes in client mode: the settings of the executors' pods and the spark.* conf
they make."""

from __future__ import annotations

import os
from dataclasses import dataclass

from fruit_assets.errors import ConfigurationError


@dataclass(frozen=True)
class KubernetesSettings:
    """Client mode from the Dagster run pod: the pod is the driver, executors are pods it owns."""

    namespace: str
    service_account: str
    image: str
    driver_pod_name: str  # executors get an ownerReference to it: deleted with the run pod
    driver_pod_ip: str
    executor_service_account: str = ""  # empty: the driver's
    executor_cores: int = 2
    # The JVM only moves file names and small summaries; the Python workers (ONNX Runtime, ~0.4 GiB
    # each at batch 8, measured in benchmarks/featurize.py) live in the overhead. With
    # FRUIT_INFERENCE_ENGINE=tensorflow raise the overhead to ~1.5 GiB per core.
    executor_memory: str = "1g"
    executor_memory_overhead: str = "1g"
    min_executors: int = 0
    max_executors: int = 10
    pod_template: str = "/opt/fruit_assets/executor-pod-template.yaml"
    driver_port: int = 7078
    block_manager_port: int = 7079


def kubernetes_conf(k8s: KubernetesSettings) -> dict[str, str]:
    """spark.* settings for ``k8s://`` masters. Every value comes from configuration."""
    missing = [
        name
        for name in ("namespace", "service_account", "image", "driver_pod_name", "driver_pod_ip")
        if not getattr(k8s, name)
    ]
    if missing:
        raise ConfigurationError(
            f"Spark on Kubernetes needs {', '.join(missing)}: set SPARK_K8S_NAMESPACE, SPARK_K8S_SERVICE_ACCOUNT, "
            "SPARK_K8S_IMAGE, and POD_NAME / POD_IP from the downward API (helm-values/ does)"
        )
    return {
        "spark.submit.deployMode": "client",
        "spark.kubernetes.namespace": k8s.namespace,
        "spark.kubernetes.container.image": k8s.image,
        "spark.kubernetes.authenticate.driver.serviceAccountName": k8s.service_account,
        # Executors reach S3 through their own IRSA-annotated account when the deployment names one
        # (they need no Kubernetes API), else through the driver's.
        "spark.kubernetes.authenticate.executor.serviceAccountName": k8s.executor_service_account
        or k8s.service_account,
        "spark.kubernetes.driver.pod.name": k8s.driver_pod_name,
        "spark.kubernetes.executor.podTemplateFile": k8s.pod_template,
        "spark.kubernetes.executor.deleteOnTermination": "true",
        # Executors connect back to the driver at the pod's IP on fixed ports (Dagster #2748). Spark
        # (spark.kubernetes.executor.useDriverPodIP, on by default since 4.0) gives executors the
        # driver's *bind* address, not spark.driver.host: bound to 0.0.0.0, every executor would
        # dial itself. The pod's IP is its own interface, so binding there is what Spark's cluster
        # mode does too (SPARK_DRIVER_BIND_ADDRESS).
        "spark.driver.host": k8s.driver_pod_ip,
        "spark.driver.bindAddress": k8s.driver_pod_ip,
        "spark.driver.port": str(k8s.driver_port),
        "spark.driver.blockManager.port": str(k8s.block_manager_port),
        "spark.executor.cores": str(k8s.executor_cores),
        "spark.kubernetes.executor.request.cores": str(k8s.executor_cores),
        "spark.kubernetes.executor.limit.cores": str(k8s.executor_cores),
        "spark.executor.memory": k8s.executor_memory,
        "spark.executor.memoryOverhead": k8s.executor_memory_overhead,
        # One inference thread per task slot: cores are never oversubscribed.
        "spark.task.cpus": "1",
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.shuffleTracking.enabled": "true",
        "spark.dynamicAllocation.minExecutors": str(k8s.min_executors),
        "spark.dynamicAllocation.maxExecutors": str(k8s.max_executors),
        "spark.dynamicAllocation.executorIdleTimeout": "60s",
        "spark.executorEnv.AWS_REGION": os.environ.get("AWS_REGION", ""),
    }
