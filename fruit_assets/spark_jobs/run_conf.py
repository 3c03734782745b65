"""What a run's config may set on the Spark resource: the sizing keys and the values they take."""

from __future__ import annotations

import re

from fruit_assets.errors import RunConfigNotAllowed

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
