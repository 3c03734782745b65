"""Spark's event logs, carried to ``<root>/spark-events/`` so Spark's History Server can show a run's
jobs, stages, task retries and executors after the run process (or run pod) is gone. No Dagster.

There is no S3A connector here, so Spark writes its event log to a local folder (one per data
root), and the storage layer copies it: when a session stops (``publish_event_logs``), including
after a failed run; a log left in progress by a process killed outright is carried by the next one
that stops on the same machine. ``fruit-assets spark-history`` copies them back into a local cache
(``sync_event_logs``) and serves that with the History Server shipped in the pyspark wheel.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

from fruit_assets.spark_jobs.session import spark_context
from fruit_assets.storage import join_uri, open_store

EVENTS_FOLDER = "spark-events"
# With rolling event logs, an application's log is a folder; Spark marks it complete by removing
# this file from it.
IN_PROGRESS_PREFIX = "appstatus_"
IN_PROGRESS_SUFFIX = ".inprogress"
# A log in progress that has not changed for this long belongs to a process that died.
STALE_SECONDS = 3600.0


def events_uri(root: str) -> str:
    return join_uri(root, EVENTS_FOLDER)


def local_event_log_dir(root: str) -> str:
    """One local folder per data root (a machine may serve several roots): logs go where their run wrote."""
    base = os.environ.get("FRUIT_SPARK_EVENTS_DIR") or os.path.join(tempfile.gettempdir(), "fruit_assets-spark-events")
    return os.path.join(base, hashlib.sha256(root.encode()).hexdigest()[:12])


def _in_progress(folder: str) -> bool:
    return any(n.startswith(IN_PROGRESS_PREFIX) and n.endswith(IN_PROGRESS_SUFFIX) for n in os.listdir(folder))


def _last_change(folder: str) -> float:
    return max((os.path.getmtime(os.path.join(folder, n)) for n in os.listdir(folder)), default=0.0)


def discard_event_log(local_dir: str, application_id: str) -> None:
    """Removes the local event log of ``application_id`` (an application that ran nothing)."""
    if not application_id or not os.path.isdir(local_dir):
        return
    for name in os.listdir(local_dir):
        if application_id in name:
            path = os.path.join(local_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.remove(path)
                except OSError:
                    pass


def publish_event_logs(local_dir: str, root: str, now: float | None = None) -> list[str]:
    """Uploads the event logs under ``local_dir`` to ``<root>/spark-events/<log folder>/``: complete
    ones (then removed locally), and those in progress but unchanged for an hour (a killed run's;
    uploaded as they are, incomplete, then removed). Returns the log folders uploaded."""
    from fruit_assets.storage.sync import sync_folder

    if not os.path.isdir(local_dir):
        return []
    now = time.time() if now is None else now
    uploaded = []
    for name in sorted(os.listdir(local_dir)):
        folder = os.path.join(local_dir, name)
        if not os.path.isdir(folder):
            continue
        if _in_progress(folder) and now - _last_change(folder) < STALE_SECONDS:
            continue  # a live application (this machine may run two)
        sync_folder(folder, join_uri(events_uri(root), name))
        shutil.rmtree(folder, ignore_errors=True)
        uploaded.append(name)
    return uploaded


def sync_event_logs(root: str, cache_dir: str) -> int:
    """Copies ``<root>/spark-events/`` into ``cache_dir`` (the History Server's log directory),
    objects missing or changed only; returns how many were copied."""
    source = events_uri(root)
    store = open_store(source)
    copied = 0
    for info in store.list_objects(source, content_hash=False):
        relative = info.uri[len(source) + 1 :]
        target = os.path.join(cache_dir, *relative.split("/"))
        if os.path.exists(target) and os.path.getsize(target) == info.size:
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        temporary = target + ".part"
        with open(temporary, "wb") as handle:
            handle.write(store.read_bytes(info.uri))
        os.replace(temporary, target)
        copied += 1
    return copied


@dataclass(frozen=True)
class ApplicationFacts:
    """What a step records of the Spark application it ran in (metadata in the Dagster UI)."""

    application_id: str
    history_url: str
    executors: int  # excluding the driver (local mode: the driver runs the tasks)
    failed_task_attempts: int


def history_url(application_id: str) -> str:
    base = os.environ.get("FRUIT_SPARK_HISTORY_URL", "http://127.0.0.1:18080").rstrip("/")
    return f"{base}/history/{application_id}/jobs/"


def application_facts(spark) -> ApplicationFacts:
    """From the driver's status store (what the live UI shows): failed task attempts over every job
    so far, executors registered now."""
    sc = spark_context(spark)
    jobs = sc._jsc.sc().statusStore().jobsList(None)
    failed = sum(int(jobs.apply(i).numFailedTasks()) for i in range(jobs.size()))  # a Scala Seq
    executors = len(sc._jsc.sc().statusTracker().getExecutorInfos()) - 1  # the driver is listed too
    return ApplicationFacts(sc.applicationId, history_url(sc.applicationId), max(0, executors), failed)
