"""``fruit-assets spark-history``: Spark's own History Server over ``<root>/spark-events/``.

The event logs live in the data root (S3 or local files; spark_jobs/history.py carries them there
when each session stops). This command copies them into a local cache, keeps copying new ones
while it runs, and serves the cache with the History Server shipped inside the pyspark wheel
(``spark-class org.apache.spark.deploy.history.HistoryServer``). Ctrl-C or SIGTERM stops both.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading


def spark_home() -> str:
    import pyspark

    return os.path.dirname(pyspark.__file__)


def history_server_command(cache_dir: str, port: int, host: str) -> tuple[list[str], dict]:
    env = {
        **os.environ,
        "SPARK_HOME": spark_home(),
        "SPARK_LOCAL_IP": host,
        "SPARK_HISTORY_OPTS": " ".join(
            [
                f"-Dspark.history.fs.logDirectory=file://{os.path.abspath(cache_dir)}",
                f"-Dspark.history.ui.port={port}",
                "-Dspark.history.fs.update.interval=5s",
                "-Dspark.history.fs.cleaner.enabled=false",  # the data root keeps the logs; the cache follows it
            ]
        ),
    }
    return [os.path.join(spark_home(), "bin", "spark-class"), "org.apache.spark.deploy.history.HistoryServer"], env


def run(root: str, port: int, host: str, cache_dir: str | None, interval: float, sync_only: bool) -> int:
    from fruit_assets.spark_jobs.history import events_uri, sync_event_logs
    from fruit_assets.storage import StorageError

    cache_dir = cache_dir or os.path.join(
        tempfile.gettempdir(), "fruit_assets-spark-history", hashlib.sha256(root.encode()).hexdigest()[:12]
    )
    os.makedirs(cache_dir, exist_ok=True)
    try:
        copied = sync_event_logs(root, cache_dir)
    except StorageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = None
    if not sync_only:
        command, env = history_server_command(cache_dir, port, host)
        server = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        print(
            f"Spark History Server at http://{host}:{port} over {events_uri(root)} ({copied} files copied to "
            f"{cache_dir}); Ctrl-C stops it",
            flush=True,
        )
    else:
        print(f"syncing {events_uri(root)} into {cache_dir} every {interval:g} s; Ctrl-C stops it", flush=True)
    try:
        while not stop.wait(interval):
            if server is not None and server.poll() is not None:
                print(f"error: the History Server exited with code {server.returncode}", file=sys.stderr)
                return 1
            try:
                sync_event_logs(root, cache_dir)
            except StorageError as error:  # an outage: keep serving what is there, try again
                print(f"warning: {error}", file=sys.stderr, flush=True)
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
    return 0
