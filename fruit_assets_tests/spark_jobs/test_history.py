"""Carrying event logs to the data root: which logs go when (log folders laid out as Spark's rolling
event logs are, real files; the real thing end to end is in cli/test_history.py)."""

import os
import time

from fruit_assets.spark_jobs.history import STALE_SECONDS, publish_event_logs, sync_event_logs
from fruit_assets.spark_jobs.session import SparkSettings, session_conf


def test_the_event_log_is_on_compressed_and_rolling_and_credentials_are_redacted(tmp_path):
    conf = session_conf(SparkSettings("local[2]", event_log_dir=str(tmp_path)))
    assert conf["spark.eventLog.enabled"] == "true" and conf["spark.eventLog.dir"] == f"file://{tmp_path}"
    assert conf["spark.eventLog.compression.codec"] == "zstd" and conf["spark.eventLog.rolling.enabled"] == "true"
    import re

    pattern = re.compile(conf["spark.redaction.regex"])
    for key in ("spark.executorEnv.AWS_SECRET_ACCESS_KEY", "spark.hadoop.fs.s3a.access.key", "DAGSTER_PG_PASSWORD",
                "spark.executorEnv.AWS_SESSION_TOKEN"):
        assert pattern.search(key), key
    assert "spark.eventLog.enabled" not in session_conf(SparkSettings("local[2]"))


def app_log(folder, application, in_progress: bool, age: float = 0.0):
    path = folder / f"eventlog_v2_{application}"
    path.mkdir(parents=True)
    (path / f"events_1_{application}.zstd").write_bytes(b"events")
    (path / (f"appstatus_{application}.inprogress" if in_progress else f"appstatus_{application}")).write_bytes(b"")
    for name in os.listdir(path):
        os.utime(path / name, (time.time() - age, time.time() - age))


def test_complete_and_abandoned_logs_go_to_the_root_live_ones_stay(tmp_path):
    local, root = tmp_path / "local", tmp_path / "root"
    app_log(local, "local-1", in_progress=False)
    app_log(local, "local-2", in_progress=True)  # an application still running on this machine
    app_log(local, "local-3", in_progress=True, age=STALE_SECONDS + 60)  # a run killed outright
    assert publish_event_logs(str(local), f"file://{root}") == ["eventlog_v2_local-1", "eventlog_v2_local-3"]
    assert sorted(os.listdir(root / "spark-events")) == ["eventlog_v2_local-1", "eventlog_v2_local-3"]
    assert os.listdir(local) == ["eventlog_v2_local-2"]
    # Uploaded as it was: the History Server lists it as incomplete.
    assert sorted(os.listdir(root / "spark-events" / "eventlog_v2_local-3")) == [
        "appstatus_local-3.inprogress", "events_1_local-3.zstd"]

    cache = tmp_path / "cache"
    assert sync_event_logs(f"file://{root}", str(cache)) == 4
    assert sync_event_logs(f"file://{root}", str(cache)) == 0  # only what is new or changed
    assert (cache / "eventlog_v2_local-1" / "events_1_local-1.zstd").read_bytes() == b"events"

