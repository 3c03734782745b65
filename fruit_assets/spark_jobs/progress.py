"""Progress of a running Spark job, read on the driver from Spark's status tracker. No Dagster.

Tasks cannot report mid-way (accumulators reach the driver when a task ends), so the unit of
progress is a finished task: the embedding job cuts its work into tasks of a few hundred images
(each Python worker keeps its model across tasks), which makes the steps small enough to watch.
"""

from __future__ import annotations

import threading
import time

from fruit_assets.progress import Progress, ProgressCallback, notify


class JobProgress:
    """While open, polls the jobs of ``group`` and reports images done, counting each finished
    task as its ``task_sizes[partition]`` images (the partition a task ran is not exposed by the
    status tracker, so equal-sized tasks are assumed: exact to within one task)."""

    def __init__(
        self,
        spark_context,
        group: str,
        task_sizes: list[int],
        callbacks: list[ProgressCallback],
        interval: float = 0.25,
    ):
        self.sc = spark_context
        self.group = group
        self.total = sum(task_sizes)
        self.tasks = len(task_sizes)
        self.callbacks = callbacks
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{group}", daemon=True)
        self._started = 0.0

    def _tasks_done(self) -> int:
        tracker = self.sc.statusTracker()
        done = 0
        for job_id in tracker.getJobIdsForGroup(self.group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else []:
                stage = tracker.getStageInfo(stage_id)
                if stage is not None:
                    done += stage.numCompletedTasks
        return min(done, self.tasks)

    def _report(self, tasks_done: int) -> None:
        images = self.total if tasks_done >= self.tasks else round(self.total * tasks_done / self.tasks)
        notify(self.callbacks, Progress(images, self.total, time.monotonic() - self._started))

    def _run(self) -> None:
        last = -1
        while not self._stop.wait(self.interval):
            try:
                done = self._tasks_done()
            except Exception:  # noqa: BLE001 - the context may be stopping; progress is best effort
                continue
            if done != last and done < self.tasks:
                last = done
                self._report(done)

    def __enter__(self) -> JobProgress:
        self._started = time.monotonic()
        self._report(0)
        self.sc.setJobGroup(self.group, f"fruit_assets: embed {self.total} images", interruptOnCancel=False)
        self._thread.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sc.setLocalProperty("spark.jobGroup.id", None)
        self.sc.setLocalProperty("spark.job.description", None)
        if exc_type is None:
            self._report(self.tasks)
