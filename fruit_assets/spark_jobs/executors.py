"""A bound on how long a Spark job waits for executors that never come.

Spark itself waits forever: a job with pending tasks and no executor registered (an executor image
that cannot start, a service account or quota that refuses the pods, a NetworkPolicy between the
executors and the driver, a standalone cluster with no free worker) holds the run, and with it the
data root's pool slot, until a person notices. The watch cancels such jobs after a set time, with a
reason that errors.user_facing_message reads as one line, so the step fails with the likely causes
named, the run ends and its slot is freed."""

from __future__ import annotations

import logging
import threading
import time

from fruit_assets.errors import ExecutorsNeverJoinedError

POLL_SECONDS = 2.0


def never_joined_message(master: str, driver_address: str, waited_seconds: int) -> str:
    if master.startswith("k8s://"):
        causes = (
            "the executor image (SPARK_K8S_IMAGE: pull errors, a crash at start: kubectl get pods -l "
            "spark-role=executor, kubectl logs), the executor service account, the namespace's quota or "
            "admission policy (kubectl get events), or a NetworkPolicy between the executor pods and the run pod"
        )
    else:
        causes = "a cluster with no worker that has free cores and memory, or workers that cannot reach the driver"
    return (
        f"no Spark executor registered with the driver at {driver_address} for {waited_seconds} s while a job "
        f"waited for one ({master}): check {causes}"
    )


class ExecutorWatch(threading.Thread):
    """Cancels the active jobs of ``spark_context`` once they have waited ``timeout_seconds`` with
    no executor registered; ends with the context."""

    def __init__(self, spark_context, timeout_seconds: int, poll_seconds: float = POLL_SECONDS):
        super().__init__(name="spark-executor-watch", daemon=True)
        self.spark_context, self.timeout_seconds, self.poll_seconds = spark_context, timeout_seconds, poll_seconds

    def run(self) -> None:
        waiting_since = None
        while True:
            time.sleep(self.poll_seconds)
            try:
                java_context = self.spark_context._jsc
                if java_context is None:
                    return
                scala_context = java_context.sc()
                # The driver's own block manager is listed among them.
                executors = len(scala_context.statusTracker().getExecutorInfos()) - 1
                jobs = list(self.spark_context.statusTracker().getActiveJobsIds())
            except Exception:  # noqa: BLE001 - the context (or its JVM) stopped under us
                return
            if executors > 0 or not jobs:
                waiting_since = None
                continue
            waiting_since = waiting_since or time.monotonic()
            if time.monotonic() - waiting_since < self.timeout_seconds:
                continue
            conf = self.spark_context.getConf()
            message = never_joined_message(
                self.spark_context.master,
                f"{conf.get('spark.driver.host', '?')}:{conf.get('spark.driver.port', '?')}",
                self.timeout_seconds,
            )
            logging.getLogger(__name__).error("%s", message)
            # Spark appends the reason to "Job N cancelled": on a line of its own, it reads as the
            # error's one-line message wherever the failure surfaces.
            for job in jobs:
                scala_context.cancelJob(job, f"\n{ExecutorsNeverJoinedError.__name__}: {message}\n")
            waiting_since = None
