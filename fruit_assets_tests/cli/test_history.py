"""`fruit-assets spark-history` after real materializations, on local files and on the S3 server:
the application of every run is in `<root>/spark-events/`, Spark's History Server serves it, and
the event logs hold no secret."""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pyarrow as pa
import pytest
from dagster import AssetKey, DagsterInstance

from fruit_assets.assets.metadata import latest_run_figures
from fruit_assets.storage import open_store
from fruit_assets_tests.harness.dagster_dev import free_port
from fruit_assets_tests.harness.postgres import PostgresServer

BIN = os.path.dirname(sys.executable)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture(params=["local", "s3"])
def root(request, sample_root):
    return request.getfixturevalue("s3_sample_root") if request.param == "s3" else "file://" + sample_root


@pytest.mark.slow
def test_every_run_s_spark_jobs_stay_visible_in_the_history_server(root, weights_file, tmp_path, s3_server):
    home = tmp_path / "home"
    env = {**os.environ, "FRUIT_DATA_URI": root, "FRUIT_MODEL_WEIGHTS": weights_file, "SPARK_MASTER": "local[2]",
           "FRUIT_PCA_VARIANCE": "0.9", "DAGSTER_HOME": str(home),
           "FRUIT_SPARK_EVENTS_DIR": str(tmp_path / "local-events"),
           # The Helm chart's run pods carry the instance's Postgres login in their environment.
           PostgresServer.login_env: "pg-" + secrets.token_hex(8)}
    result = subprocess.run([f"{BIN}/fruit-assets", "materialize", "-q"], env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    with DagsterInstance.from_config(str(home)) as instance:
        metadata = latest_run_figures(instance, AssetKey("image_embeddings"))
    application = metadata["spark_application_id"].value
    assert metadata["spark_history"].value == f"http://127.0.0.1:18080/history/{application}/jobs/"
    assert metadata["spark_failed_task_attempts"].value == 0 and metadata["spark_executors"].value == 0  # local[2]
    store = open_store(root)
    logs = [info.uri for info in store.list_objects(f"{root}/spark-events")]
    folder = f"{root}/spark-events/eventlog_v2_{application}"
    assert f"{folder}/appstatus_{application}" in logs  # complete, not .inprogress
    assert not os.listdir(tmp_path / "local-events" / os.listdir(tmp_path / "local-events")[0])  # carried, not kept
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    events = b"".join(pa.CompressedInputStream(pa.BufferReader(store.read_bytes(uri)), "zstd").read()
                      for uri in logs if uri.endswith(".zstd"))
    assert b"SparkListenerApplicationStart" in events and b"SparkListenerJobEnd" in events
    assert secret and secret.encode() not in events
    assert env[PostgresServer.login_env].encode() not in events

    port = free_port()
    server = subprocess.Popen([f"{BIN}/fruit-assets", "spark-history", "--port", str(port), "--interval", "2",
                               "--cache", str(tmp_path / "cache")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline, applications = time.monotonic() + 180, []
        while application not in [a["id"] for a in applications]:
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read() if server.poll() else applications
            time.sleep(2)
            try:
                applications = get_json(f"http://127.0.0.1:{port}/api/v1/applications")
            except OSError:
                continue
        jobs = get_json(f"http://127.0.0.1:{port}/api/v1/applications/{application}/jobs")
        assert jobs and {job["status"] for job in jobs} == {"SUCCEEDED"}
        assert any(job["name"].startswith("collect") or "embed" in job.get("description", "") for job in jobs)
    finally:
        server.send_signal(signal.SIGTERM)
        returncode = server.wait(timeout=60)
    assert returncode == 0
    with pytest.raises(OSError):  # the History Server went with it
        get_json(f"http://127.0.0.1:{port}/api/v1/applications")
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


@pytest.mark.slow
def test_a_failed_run_still_leaves_its_event_log(sample_root, weights_file, tmp_path):
    """The PCA step fails (a target outside (0, 1]) after the embedding step ran its Spark jobs: the
    command exits 1, and the application's log is in the data root all the same, complete."""
    env = {**os.environ, "FRUIT_DATA_URI": sample_root, "FRUIT_MODEL_WEIGHTS": weights_file, "SPARK_MASTER": "local[2]",
           "FRUIT_PCA_VARIANCE": "1.5", "DAGSTER_HOME": str(tmp_path / "home"),
           "FRUIT_SPARK_EVENTS_DIR": str(tmp_path / "local-events")}
    result = subprocess.run([f"{BIN}/fruit-assets", "materialize", "-q"], env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 1 and "FRUIT_PCA_VARIANCE must be in (0, 1], got '1.5'" in result.stderr
    [log] = os.listdir(os.path.join(sample_root, "spark-events"))
    application = log[len("eventlog_v2_"):]
    assert f"appstatus_{application}" in os.listdir(os.path.join(sample_root, "spark-events", log))
