"""Progress of a running Spark job, read on the driver from Spark's status tracker. No Dagster.

Tasks cannot report mid-way (accumulators reach the driver when a task ends), so the unit of
progress is a finished task: the embedding job cuts its work into tasks of a few hundred images
(each Python worker keeps its model across tasks), which makes the steps small enough to watch.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def describe(self, unit: str = "images") -> str:
        percent = 100.0 * self.done / self.total if self.total else 100.0
        eta = self.eta_seconds
        eta_text = "?" if eta is None else _clock(eta)
        return (f"{self.done}/{self.total} {unit} ({percent:.0f}%), {self.rate:.1f} {unit}/s, "
                f"elapsed {_clock(self.seconds)}, ETA {eta_text}")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


ProgressCallback = Callable[[Progress], None]

# Whoever shows progress in this process (the CLI's bar) listens here; jobs need not know them.
_listeners: list[ProgressCallback] = []
_listeners_lock = threading.Lock()


def add_listener(callback: ProgressCallback) -> None:
    with _listeners_lock:
        _listeners.append(callback)


def remove_listener(callback: ProgressCallback) -> None:
    with _listeners_lock:
        if callback in _listeners:
            _listeners.remove(callback)


def _notify(callbacks: list[ProgressCallback], progress: Progress) -> None:
    with _listeners_lock:
        everyone = callbacks + list(_listeners)
    for callback in everyone:
        try:
            callback(progress)
        except Exception:  # noqa: BLE001 - a broken display must never fail the job it watches
            pass


class Throttled:
    """Passes on a progress report when ``every_seconds`` passed or ``every_fraction`` of the
    work was done since the last one, and always the last one (done == total)."""

    def __init__(self, emit: ProgressCallback, every_seconds: float = 10.0, every_fraction: float = 0.05):
        self.emit = emit
        self.every_seconds = every_seconds
        self.every_fraction = every_fraction
        self._last_time = float("-inf")
        self._last_done = None

    def __call__(self, progress: Progress) -> None:
        if progress.done == self._last_done:
            return
        now = time.monotonic()
        finished = progress.done >= progress.total
        step = self.every_fraction * max(progress.total, 1)
        if finished or now - self._last_time >= self.every_seconds or progress.done - (self._last_done or 0) >= step:
            self._last_time, self._last_done = now, progress.done
            self.emit(progress)


class JobProgress:
    """While open, polls the jobs of ``group`` and reports images done, counting each finished
    task as its ``task_sizes[partition]`` images (the partition a task ran is not exposed by the
    status tracker, so equal-sized tasks are assumed: exact to within one task)."""

    def __init__(self, spark_context, group: str, task_sizes: list[int], callbacks: list[ProgressCallback],
                 interval: float = 0.25):
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
        _notify(self.callbacks, Progress(images, self.total, time.monotonic() - self._started))

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

    def __enter__(self) -> "JobProgress":
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
