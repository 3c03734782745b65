"""What a group of Spark jobs cost in executor time, read on the driver from Spark's own task
metrics (its status store). No Dagster.

Why the embedding step counts two sides: in PySpark a task's work runs in the executor's Python
worker, a process of its own. Spark's task metric ``executorCpuTime`` is the CPU time of the
executor JVM's task thread only, which for a Python task mostly waits on the worker's socket: it
misses the decoding and the inference that the run is paid for. So the tasks measure their Python
worker's CPU time themselves (``python_cpu_time``, returned with their results), and the driver
adds the JVM side read here: the two together are what the executors' vCPUs spent.

The figures come from the status store (``AppStatusStore``: what the Spark UI and the History
Server show), which Spark keeps with the UI disabled too (``spark.ui.enabled=false``). It is
reached through py4j: Scala's ``private[spark]`` is public in the bytecode. Anything missing (an
older or newer Spark, a stopped context, stages the listener has not caught up with in time)
gives None: a metric never fails a step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

# Stage statuses after which the status store holds a stage's final task metrics.
_FINAL = {"COMPLETE", "FAILED", "SKIPPED"}


@dataclass(frozen=True)
class JvmTaskTime:
    """The executor JVM's side of the tasks of a job group, summed over every task attempt
    (failed ones included: their time was spent too)."""

    cpu_seconds: float  # executorCpuTime + executorDeserializeCpuTime: the JVM task threads' CPU
    run_seconds: float  # executorRunTime: wall-clock time the tasks ran (Spark UI's task Duration)
    stages: int


def python_cpu_time() -> float:
    """CPU seconds this process has used so far, every thread of it (the fetch threads, ONNX
    Runtime's or TensorFlow's intra-op threads), user + system. A Python worker is reused across
    tasks: a task counts the difference between its end and its start."""
    return time.process_time()


def group_task_time(
    spark_context, group: str, wait_seconds: float = 10.0, poll_seconds: float = 0.05
) -> JvmTaskTime | None:
    """The JVM task time of the jobs of ``group`` once they have ended, or None where it cannot
    be read. Spark's listener updates the status store a moment after a job returns: waits up to
    ``wait_seconds`` for the listener bus to drain (so every job of the group is listed) and for
    every stage of the group to reach a final status, and gives None (rather than an undercount)
    if one has not."""
    try:
        scala_context = spark_context._jsc.sc()
        store = scala_context.statusStore()
        tracker = spark_context.statusTracker()
        deadline = time.monotonic() + wait_seconds
        try:
            scala_context.listenerBus().waitUntilEmpty(int(wait_seconds * 1000))
        except Exception:  # noqa: BLE001 - a timeout, or a Spark without it: the stages' statuses still tell
            pass
        stage_ids = sorted(
            {
                stage_id
                for job_id in tracker.getJobIdsForGroup(group)
                if (job := tracker.getJobInfo(job_id)) is not None
                for stage_id in job.stageIds
            }
        )
        while True:
            attempts = [attempt for stage_id in stage_ids for attempt in _stage_attempts(store, stage_id)]
            if all(attempt.status().toString() in _FINAL for attempt in attempts):
                break
            if time.monotonic() > deadline:
                logging.getLogger(__name__).warning(
                    "Spark's status store had not caught up with the stages of %s after %.0f s: "
                    "their JVM task time is not recorded",
                    group,
                    wait_seconds,
                )
                return None
            time.sleep(poll_seconds)
        return JvmTaskTime(
            cpu_seconds=sum(a.executorCpuTime() + a.executorDeserializeCpuTime() for a in attempts) / 1e9,
            run_seconds=sum(a.executorRunTime() for a in attempts) / 1e3,
            stages=len(stage_ids),
        )
    except Exception as error:  # noqa: BLE001 - py4j errors, a stopped context, another Spark's API
        logging.getLogger(__name__).warning(
            "JVM task time of %s not read from Spark's status store: %s",
            group,
            str(error).splitlines()[0] if str(error) else type(error).__name__,
        )
        return None


def _stage_attempts(store, stage_id: int) -> list:
    """Every attempt of one stage, as the status store's v1.StageData (a stage no longer retained,
    past spark.ui.retainedStages, raises: the caller gives None)."""
    no_task_filter = getattr(store, "stageData$default$3")()
    no_quantiles = getattr(store, "stageData$default$5")()
    attempts = store.stageData(stage_id, False, no_task_filter, False, no_quantiles)
    return [attempts.apply(i) for i in range(attempts.size())]
