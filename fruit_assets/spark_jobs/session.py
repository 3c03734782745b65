"""One way to build a Spark session, for local[*], spark://host:port and k8s:// (client mode)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[*]"
    app_name: str = "fruit_assets"
    conf: dict[str, str] = field(default_factory=dict)


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
    conf.update(settings.conf)
    return conf


def build_spark_session(settings: SparkSettings):
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
