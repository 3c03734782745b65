"""Helpers shared by the benchmark scripts: process-tree memory sampling and data generation."""

from __future__ import annotations

import os
import threading
import time

import psutil


class PeakMemory:
    """Samples RSS of this process (the driver), its JVM child and the Spark Python workers."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.driver = self.jvm = self.workers = self.worker_max = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                driver = me.memory_info().rss
                jvm = workers = largest = 0
                for child in me.children(recursive=True):
                    try:
                        name, rss = child.name(), child.memory_info().rss
                    except psutil.Error:
                        continue
                    if name == "java":
                        jvm += rss
                    elif name.startswith("python"):
                        workers += rss
                        largest = max(largest, rss)
                self.driver = max(self.driver, driver)
                self.jvm = max(self.jvm, jvm)
                self.workers = max(self.workers, workers)
                self.worker_max = max(self.worker_max, largest)
            except psutil.Error:
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def describe(self) -> str:
        mib = 1 << 20
        return (f"driver python {self.driver / mib:.0f} MiB, driver JVM {self.jvm / mib:.0f} MiB, "
                f"python workers (sum) {self.workers / mib:.0f} MiB, largest worker {self.worker_max / mib:.0f} MiB")


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - started


def ensure_env():
    import sys

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def materialize_env(work: str, root: str, home: str, variance_target: str) -> dict[str, str]:
    """The environment of `fruit-assets materialize` on the local root, with random weights saved
    under ``work`` and converted beforehand, so no step of the measured runs pays the conversion."""
    from fruit_assets.featurize.model import calibrated_random_model
    from fruit_assets.layout import DataLayout
    from fruit_assets.models.build import build_embedding_model

    weights = os.path.join(work, "w.weights.h5")
    calibrated_random_model(seed=1).save_weights(weights)
    build_embedding_model(DataLayout.at(root), weights, 1234)
    return {**os.environ, "FRUIT_DATA_URI": root, "FRUIT_MODEL_WEIGHTS": weights, "DAGSTER_HOME": home,
            "SPARK_MASTER": "local[*]", "FRUIT_PCA_VARIANCE": variance_target}
