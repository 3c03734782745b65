"""One way to build Spark for local[*], spark://host:port and k8s:// (client mode): a context (what
the product's jobs use) and a SQL session on it for whoever wants one; their settings, the
configuration they give, and where the deployment says Spark runs."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field, fields

from fruit_assets.errors import ConfigurationError
from fruit_assets.spark_jobs.class_archive import RECORD, USE, ClassArchive, discard, finish_recording, plan_archive
from fruit_assets.spark_jobs.network_security import (
    AUTH_FILE_VARIABLE,
    SHARED_KEY_SETTING,
    network_security_conf,
    read_auth_secret,
)


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


def build_spark_context(settings: SparkSettings, on_context=None):
    """The SparkContext for ``settings``; the process's JVM is started first if it has none
    (``launch_driver_jvm``). ``on_context`` is called with it as soon as it runs. The product's
    Spark jobs use nothing else (RDDs of file work items): no Spark SQL session is made for them,
    whose JVM side alone took a second of every run's start."""
    if settings.event_log_dir:
        os.makedirs(settings.event_log_dir, exist_ok=True)
    launch_driver_jvm(settings)
    context = _start(settings, session_conf(settings))
    context.setLogLevel("WARN")
    if on_context is not None:
        on_context(context)
    if settings.executor_wait_seconds > 0 and not settings.master.startswith("local"):
        from fruit_assets.spark_jobs.executors import ExecutorWatch

        ExecutorWatch(context, settings.executor_wait_seconds).start()
    return context


def build_spark_session(settings: SparkSettings, on_context=None):
    """A Spark SQL session on the context ``build_spark_context`` makes (tests, notebooks, users'
    own assets: the SQL conf comes from the context's)."""
    return session_on(build_spark_context(settings, on_context))


def session_on(context):
    """The Spark SQL session of ``context`` (made now if it has none)."""
    from pyspark.sql import SparkSession

    return _session_of(context) or SparkSession(context)


def spark_context(spark):
    """The SparkContext of ``spark``: a SparkContext, or a SparkSession (a test's, a notebook's).
    The jobs here use Spark's core API alone, so either will do."""
    return getattr(spark, "sparkContext", spark)


DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
# The class archive this process's JVM is recording (class_archive.py): finished when it stops.
_recording: ClassArchive | None = None


def launch_driver_jvm(settings: SparkSettings) -> None:
    """Starts this process's JVM, with the class archive (class_archive.py), unless it has one. A
    session built afterwards only creates its SparkContext on it: a caller with other work to do
    first (the command line: Dagster's import, the change detection) overlaps the JVM's start with
    it. The configuration goes on spark-submit's command line, where what the JVM itself needs is
    read (driver memory, JVM options); never a secret (the standalone one is set after the start)."""
    from pyspark import SparkConf, SparkContext
    from pyspark.errors import PySparkRuntimeError

    global _recording
    if settings.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    with SparkContext._lock:
        if SparkContext._gateway is not None:
            return
        conf = {**session_conf(settings), "spark.master": settings.master, "spark.app.name": settings.app_name}
        archive = plan_archive(conf)

        def start(options: dict[str, str]) -> None:
            SparkContext._ensure_initialized(conf=SparkConf(loadDefaults=False).setAll(list(options.items())))

        try:
            start(_with_archive(conf, archive))
        except PySparkRuntimeError:
            if archive.mode == RECORD:
                finish_recording(archive, None)
            if archive.mode != USE:
                raise
            # A JVM that will not start with the archive (one of another build): removed, started without.
            logging.getLogger(__name__).warning("the JVM did not start with %s: removed, started without", archive.path)
            discard(archive.path)
            start(conf)
        if archive.mode == RECORD:
            _recording = archive


def stop_unused_driver_jvm() -> None:
    """Ends this process's JVM if no SparkContext runs on it (a command that found nothing to run):
    at once, without recording the class archive."""
    from pyspark import SparkContext

    global _recording
    with SparkContext._lock:
        gateway = SparkContext._gateway
        if gateway is None or SparkContext._active_spark_context is not None:
            return
        process = getattr(gateway, "proc", None)
        try:
            gateway.shutdown()
        finally:
            SparkContext._gateway = None
            SparkContext._jvm = None
        if process is not None:
            process.kill()
            process.wait()
        if _recording is not None:
            archive, _recording = _recording, None
            finish_recording(archive, None)


def _start(settings: SparkSettings, conf: dict[str, str]):
    from pyspark import SparkConf, SparkContext

    secret = ""
    if settings.master.startswith("spark://") and conf.get("spark.authenticate") == "true":
        # Standalone needs the secret in the application's conf (Spark generates one only for
        # local, YARN and Kubernetes). Builder settings reach spark-submit as arguments anyone on
        # the machine can read with ps, unless the JVM is already up, as it is here
        # (launch_driver_jvm): the secret is set on the application only.
        secret = read_auth_secret(settings.auth_secret_file)
    elif settings.master.startswith("spark://"):
        logging.getLogger(__name__).warning(
            "Spark traffic with %s is neither authenticated nor encrypted: set %s (docs/operations.md)",
            settings.master,
            AUTH_FILE_VARIABLE,
        )
    application = {**conf, "spark.master": settings.master, "spark.app.name": settings.app_name}
    if secret:
        application[SHARED_KEY_SETTING] = secret
    return SparkContext.getOrCreate(SparkConf().setAll(list(application.items())))


def _with_archive(conf: dict[str, str], archive: ClassArchive) -> dict[str, str]:
    if not archive.java_options:
        return conf
    options = f"{conf.get(DRIVER_JAVA_OPTIONS, '')} {archive.java_options}".strip()
    return {**conf, DRIVER_JAVA_OPTIONS: options}


def stop_spark(spark) -> str | None:
    """Stops ``spark`` (a SparkContext or a SparkSession: the context, so its event log, and any
    SQL session made on it); when its JVM was recording the class archive, also ends that JVM and
    returns the archive it wrote (else None)."""
    import threading

    from pyspark import SparkContext

    global _recording
    context = spark_context(spark)
    # pyspark's stop waits for its accumulator server to notice, which polls every second: nothing
    # needs that wait (no accumulator is updated once the JVM stopped), so it ends in the background.
    server = getattr(context, "_accumulatorServer", None)
    context._accumulatorServer = None
    if server is not None:
        # The JVM closing its end while the server still polls is its end, not an error: without
        # this, socketserver prints an EOFError traceback (on a verbose command's terminal).
        server.handle_error = _quiet_at_end_of_stream(server.handle_error)
    session = _session_of(context)
    if session is not None:
        session.stop()  # the context, and the JVM's default session with it
    else:
        context.stop()
    if server is not None:
        threading.Thread(target=server.shutdown, name="accumulator-server-stop", daemon=True).start()
    if _recording is None:
        return None
    archive, _recording = _recording, None
    gateway = SparkContext._gateway
    process = getattr(gateway, "proc", None)
    try:
        if gateway is not None:
            gateway.shutdown()
    finally:
        # The next session of this process starts a JVM of its own.
        SparkContext._gateway = None
        SparkContext._jvm = None
    return finish_recording(archive, process)


def _session_of(context):
    """The SQL session made on ``context``, if one was (pyspark.sql unimported: none was)."""
    sql = sys.modules.get("pyspark.sql.session")
    session = sql.SparkSession._instantiatedSession if sql is not None else None
    return session if session is not None and session._sc is context else None


def _quiet_at_end_of_stream(handle_error):
    def handle(request, client_address):
        if not isinstance(sys.exc_info()[1], EOFError):
            handle_error(request, client_address)

    return handle


def warm_up_workers(sc) -> None:
    """Starts one Python worker per task slot of SparkContext ``sc`` and imports what embedding
    tasks need (numpy, PIL, pyarrow, ONNX Runtime): the first real job then finds them ready
    (worker reuse is on)."""

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
