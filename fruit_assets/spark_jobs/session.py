"""One way to build a Spark session, for local[*], spark://host:port and k8s:// (client mode)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from fruit_assets.errors import ConfigurationError


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[*]"
    app_name: str = "fruit_assets"
    conf: dict[str, str] = field(default_factory=dict)
    # A local folder for Spark's event log (spark_jobs/history.py carries it to the data root);
    # empty: no event log.
    event_log_dir: str = ""


# Spark's default pattern plus the names under which credentials travel here (AWS_*, the
# instance's Postgres password, DAGSTER_PG_*): Spark redacts matching keys in the event log and the UI.
REDACTION_REGEX = r"(?i)secret|password|token|access[.]key|credential|aws_|pg_password"


def session_conf(settings: SparkSettings) -> dict[str, str]:
    """The full configuration; user-supplied ``conf`` wins over every default here."""
    python = os.environ.get("PYSPARK_PYTHON", sys.executable)
    conf = {
        # Python workers (and the MobileNetV2 each one caches) live across tasks and jobs.
        "spark.python.worker.reuse": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": sys.executable,
        "spark.executorEnv.FRUIT_ASSETS_SPARK_WORKER": "1",
        "spark.executorEnv.TF_ENABLE_ONEDNN_OPTS": "1",
        "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": "2",
        # Python threads per worker are ours to size (TensorFlow threads = spark.task.cpus).
        "spark.executorEnv.OMP_NUM_THREADS": "1",
        # Broadcast weights are 9 MB: keep them out of the task closures and compressed once.
        "spark.broadcast.compress": "true",
    }
    if settings.master.startswith("local"):
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    conf["spark.redaction.regex"] = REDACTION_REGEX
    if settings.event_log_dir:
        conf.update({
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": "file://" + os.path.abspath(settings.event_log_dir),
            "spark.eventLog.compress": "true",
            "spark.eventLog.compression.codec": "zstd",
            # Long runs roll into files of at most 128 MB; the History Server reads them as one log.
            "spark.eventLog.rolling.enabled": "true",
            "spark.eventLog.rolling.maxFileSize": "128m",
        })
    conf.update(settings.conf)
    return conf


def build_spark_session(settings: SparkSettings):
    if settings.event_log_dir:
        os.makedirs(settings.event_log_dir, exist_ok=True)
    if settings.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(settings.master).appName(settings.app_name)
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def warm_up_workers(session) -> None:
    """Starts one Python worker per task slot and imports what embedding tasks need (numpy, PIL,
    pyarrow, ONNX Runtime): the first real job then finds them ready (worker reuse is on)."""
    sc = session.sparkContext

    def warm(_):
        import fruit_assets.featurize.images  # noqa: F401
        import fruit_assets.storage.parquet_io  # noqa: F401
        import onnxruntime  # noqa: F401

        return []

    slots = sc.defaultParallelism
    sc.parallelize(range(slots), slots).mapPartitions(warm).count()


@dataclass(frozen=True)
class KubernetesSettings:
    """Client mode from the Dagster run pod: the pod is the driver, executors are pods it owns."""

    namespace: str
    service_account: str
    image: str
    driver_pod_name: str  # executors get an ownerReference to it: deleted with the run pod
    driver_pod_ip: str
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
    missing = [name for name in ("namespace", "service_account", "image", "driver_pod_name", "driver_pod_ip")
               if not getattr(k8s, name)]
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
        # Executors reach S3 through the same IRSA-annotated service account as the driver.
        "spark.kubernetes.authenticate.executor.serviceAccountName": k8s.service_account,
        "spark.kubernetes.driver.pod.name": k8s.driver_pod_name,
        "spark.kubernetes.executor.podTemplateFile": k8s.pod_template,
        "spark.kubernetes.executor.deleteOnTermination": "true",
        # Executors connect back to the driver at the pod's IP on fixed ports (Dagster #2748).
        "spark.driver.host": k8s.driver_pod_ip,
        "spark.driver.bindAddress": "0.0.0.0",
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
