"""One way to build a Spark session, for local[*], spark://host:port and k8s:// (client mode)."""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field, fields

from fruit_assets.errors import ConfigurationError, RunConfigNotAllowed

# The variable naming the file that holds a standalone cluster's shared secret, alone.
AUTH_FILE_VARIABLE = "FRUIT_SPARK_AUTH_SECRET_FILE"


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[*]"
    app_name: str = "fruit_assets"
    conf: dict[str, str] = field(default_factory=dict)
    # A local folder for Spark's event log (spark_jobs/history.py carries it to the data root);
    # empty: no event log.
    event_log_dir: str = ""
    # spark:// masters: the file holding the cluster's shared secret; empty: no authentication.
    auth_secret_file: str = ""
    # Masters whose executors are started elsewhere: how long a job may wait with no executor
    # registered before it is cancelled (spark_jobs/executors.py); 0: no bound.
    executor_wait_seconds: int = 0


# Spark's default pattern plus the names under which credentials travel here (AWS_*, the
# instance's Postgres password, DAGSTER_PG_*): Spark redacts matching keys in the event log and the UI
# ("secret" covers spark.authenticate.secret and the executors' _SPARK_AUTH_SECRET).
REDACTION_REGEX = r"(?i)secret|password|token|access[.]key|credential|aws_|pg_password"

# Driver <-> executor (and, standalone, <-> master and workers) traffic: mutual authentication with
# a shared secret, then AES on every RPC and block transfer. A standalone master and its workers
# must be started with the same settings (docs/operations.md). GCM, because the default CTR mode
# does not authenticate what it decrypts; auth engine version 2, the one Spark recommends (1 is
# kept for older peers); no fallback to SASL DIGEST-MD5, so a peer without AES is refused.
# spark.io.encryption.enabled (shuffle and spill files on executor disks) stays off: on Kubernetes
# those files live in the executor pod's emptyDir, gone with the pod, on volumes the platform
# encrypts at rest; encrypting them again costs CPU on every shuffle for no threat we have.
NETWORK_SECURITY_CONF = {
    "spark.authenticate": "true",
    "spark.network.crypto.enabled": "true",
    "spark.network.crypto.cipher": "AES/GCM/NoPadding",
    "spark.network.crypto.authEngineVersion": "2",
    "spark.network.crypto.saslFallback": "false",
}
# Where a standalone application's shared secret goes (Kubernetes: Spark generates it).
SHARED_KEY_SETTING = "spark.authenticate.secret"

_SIZE = re.compile(r"[0-9]+[kmgt]?b?", re.I)  # Spark's byte strings: 512m, 4g, 1024 (MiB)
_COUNT = re.compile(r"[0-9]+")

# The spark.* keys a run config may set (Dagster's launchpad lets anyone who launches a run edit the
# resource's config): how big a run is, never where or as whom it runs. Any other key could choose
# the executor image, service account, pod template or volumes (spark.kubernetes.*), run code in
# the driver or the executors (spark.jars*, spark.plugins, spark.*.extraJavaOptions,
# spark.executorEnv.*, spark.extraListeners), turn off authentication or encryption
# (spark.authenticate*, spark.network.crypto.*, spark.ssl.*), point the driver elsewhere
# (spark.driver.host, spark.master) or unmask secrets (spark.redaction.regex, spark.eventLog.*).
# The sizes are bounded where they are spent: the run pod's memory limit (driver memory; in client
# mode the driver is the run pod), the namespace's quota or the standalone workers' cores and memory.
RUN_CONFIG_SPARK_KEYS = {
    "spark.driver.memory": _SIZE,
    "spark.executor.memory": _SIZE,
    "spark.executor.memoryOverhead": _SIZE,  # the Python workers live here (KubernetesSettings)
    "spark.executor.cores": _COUNT,
    "spark.cores.max": _COUNT,  # standalone: the application's cores over all workers
    "spark.task.cpus": _COUNT,  # inference threads per task (TensorFlow)
    "spark.executor.instances": _COUNT,
    "spark.dynamicAllocation.initialExecutors": _COUNT,
    "spark.dynamicAllocation.minExecutors": _COUNT,
    "spark.dynamicAllocation.maxExecutors": _COUNT,
    "spark.sql.shuffle.partitions": _COUNT,
    "spark.default.parallelism": _COUNT,
}


def run_sizing_conf(conf: dict[str, str]) -> dict[str, str]:
    """``conf`` from a run config if every key is on RUN_CONFIG_SPARK_KEYS and every value a size
    or a count; otherwise one line that names what was refused and what is allowed."""
    refused = sorted(key for key in conf if key not in RUN_CONFIG_SPARK_KEYS)
    if refused:
        raise RunConfigNotAllowed(
            f"run config may not set {', '.join(refused)} on the Spark resource: only the sizing keys "
            f"{', '.join(sorted(RUN_CONFIG_SPARK_KEYS))} (and the k8s_executor_* fields) are set per run; "
            "everything else comes from the deployment"
        )
    for key, value in conf.items():
        check_sizing_value(key, value, RUN_CONFIG_SPARK_KEYS[key])
    return dict(conf)


def check_sizing_value(name: str, value: str, pattern: re.Pattern = _SIZE) -> str:
    if not pattern.fullmatch(str(value)):
        # The value is not repeated: run config can fill it from any of the run pod's variables ({env: ...}).
        expected = "a size such as 4g or 512m" if pattern is _SIZE else "a whole number"
        raise RunConfigNotAllowed(f"run config sets {name} to something other than {expected}")
    return str(value)


def network_security_conf(settings: SparkSettings) -> dict[str, str]:
    """Authentication and encryption for the masters whose executors are across a network.

    ``local``: none, driver and executors are one JVM. ``k8s://``: on, with no secret here: Spark
    generates one per application and hands it to the executor pods it creates. ``spark://``: on
    when the cluster's secret file is set (the master and workers are started with the same
    secret; an application without it is refused by them), off for a cluster without one."""
    if settings.master.startswith("k8s://") or (settings.master.startswith("spark://") and settings.auth_secret_file):
        return dict(NETWORK_SECURITY_CONF)
    return {}


def read_auth_secret(path: str) -> str:
    """The standalone cluster's shared secret, from the file the deployment names (never logged)."""
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.read().strip()
    except OSError as error:
        raise ConfigurationError(
            f"{AUTH_FILE_VARIABLE}={path} cannot be read ({error.strerror}): it must name "
            "the file holding the Spark cluster's shared secret"
        ) from None
    if not secret:
        raise ConfigurationError(
            f"{AUTH_FILE_VARIABLE}={path} is empty: it must hold the Spark cluster's shared secret"
        )
    return secret


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
        conf.update(
            {
                "spark.eventLog.enabled": "true",
                "spark.eventLog.dir": "file://" + os.path.abspath(settings.event_log_dir),
                "spark.eventLog.compress": "true",
                "spark.eventLog.compression.codec": "zstd",
                # Long runs roll into files of at most 128 MB; the History Server reads them as one log.
                "spark.eventLog.rolling.enabled": "true",
                "spark.eventLog.rolling.maxFileSize": "128m",
            }
        )
    conf.update(settings.conf)
    # Not a default: applied last, so no conf turns it off.
    conf.update(network_security_conf(settings))
    return conf


def build_spark_session(settings: SparkSettings):
    if settings.event_log_dir:
        os.makedirs(settings.event_log_dir, exist_ok=True)
    if settings.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    conf = session_conf(settings)
    secret = ""
    if settings.master.startswith("spark://") and conf.get("spark.authenticate") == "true":
        # Standalone needs the secret in the application's conf (Spark generates one only for
        # local, YARN and Kubernetes). Builder settings reach spark-submit as arguments anyone on
        # the machine can read with ps, unless the JVM is already up: start it without the secret.
        secret = read_auth_secret(settings.auth_secret_file)
        _start_jvm({**conf, "spark.master": settings.master, "spark.app.name": settings.app_name})
    elif settings.master.startswith("spark://"):
        logging.getLogger(__name__).warning(
            "Spark traffic with %s is neither authenticated nor encrypted: set %s (docs/operations.md)",
            settings.master,
            AUTH_FILE_VARIABLE,
        )
    builder = SparkSession.builder.master(settings.master).appName(settings.app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    if secret:
        builder = builder.config(SHARED_KEY_SETTING, secret)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    if settings.executor_wait_seconds > 0 and not settings.master.startswith("local"):
        from fruit_assets.spark_jobs.executors import ExecutorWatch

        ExecutorWatch(session.sparkContext, settings.executor_wait_seconds).start()
    return session


def _start_jvm(conf: dict[str, str]) -> None:
    """Starts PySpark's JVM (if this process has none yet) with ``conf`` on its command line, where
    spark-submit reads what it needs before the JVM exists (driver memory, JVM options)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized(conf=SparkConf(loadDefaults=False).setAll(list(conf.items())))


def warm_up_workers(session) -> None:
    """Starts one Python worker per task slot and imports what embedding tasks need (numpy, PIL,
    pyarrow, ONNX Runtime): the first real job then finds them ready (worker reuse is on)."""
    sc = session.sparkContext

    def warm(_):
        import onnxruntime  # noqa: F401

        import fruit_assets.featurize.images  # noqa: F401
        import fruit_assets.storage.parquet_io  # noqa: F401

        return []

    slots = sc.defaultParallelism
    sc.parallelize(range(slots), slots).mapPartitions(warm).count()


@dataclass(frozen=True)
class SparkDeployment:
    """Where Spark runs and as whom: the deployment's to decide, never a run's (resources/spark.py).

    On Kubernetes the run pod's spec sets the variables (helm-values/); a standalone cluster needs
    SPARK_MASTER and the file holding its secret; nothing at all gives ``local[*]``."""

    master: str = "local[*]"
    k8s_namespace: str = ""
    k8s_service_account: str = ""  # the driver's (the run pod's)
    k8s_executor_service_account: str = ""  # empty: the driver's
    k8s_image: str = ""  # the executor image (= the run pod's)
    k8s_driver_pod_name: str = ""  # downward API
    k8s_driver_pod_ip: str = ""
    auth_secret_file: str = ""
    # How long a job may wait for its first executor (an executor node group scaling from zero:
    # a node's start and a 2 GB image pull take minutes); then the job is cancelled with the likely
    # causes named, and the run ends instead of holding its pool slot.
    executor_wait_seconds: str = "600"

    @classmethod
    def from_environ(cls, environ=None) -> SparkDeployment:
        environ = os.environ if environ is None else environ
        return cls(
            **{name: environ[variable] for name, variable in DEPLOYMENT_VARIABLES.items() if environ.get(variable)}
        )

    def executor_wait(self) -> int:
        try:
            seconds = int(self.executor_wait_seconds)
        except ValueError:
            seconds = -1
        if seconds < 0:
            raise ConfigurationError(
                f"{DEPLOYMENT_VARIABLES['executor_wait_seconds']}={self.executor_wait_seconds!r}: "
                "it must be a whole number of seconds (0: wait for executors without a bound)"
            )
        return seconds

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))


DEPLOYMENT_VARIABLES = {
    "master": "SPARK_MASTER",
    "k8s_namespace": "SPARK_K8S_NAMESPACE",
    "k8s_service_account": "SPARK_K8S_SERVICE_ACCOUNT",
    "k8s_executor_service_account": "SPARK_K8S_EXECUTOR_SERVICE_ACCOUNT",
    "k8s_image": "SPARK_K8S_IMAGE",
    "k8s_driver_pod_name": "POD_NAME",
    "k8s_driver_pod_ip": "POD_IP",
    "auth_secret_file": AUTH_FILE_VARIABLE,
    "executor_wait_seconds": "FRUIT_SPARK_EXECUTOR_WAIT_SECONDS",
}


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
