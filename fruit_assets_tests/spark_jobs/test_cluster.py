"""The full graph on a real Spark standalone cluster (master + two workers), including a worker
killed while image_embeddings runs."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import psutil
import pyarrow.dataset as ds
import pytest

pytestmark = pytest.mark.slow

CLI = os.path.join(os.path.dirname(sys.executable), "fruit-assets")


def start_materialize(root, home, master, weights_file):
    os.makedirs(home, exist_ok=True)
    env = {**os.environ, "FRUIT_DATA_URI": str(root), "FRUIT_MODEL_WEIGHTS": weights_file,
           "SPARK_MASTER": master, "FRUIT_PCA_VARIANCE": "0.9", "DAGSTER_HOME": str(home)}
    return subprocess.Popen([CLI, "materialize"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=900):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


def table(root, folder):
    return ds.dataset(os.path.join(root, folder), format="parquet").to_table().sort_by("path")


def relative(paths):
    return [p.split("/Training/", 1)[1] for p in paths]


def test_cluster_results_equal_local(spark_cluster, sample_source, weights_file, tmp_path):
    on_cluster, local = tmp_path / "cluster", tmp_path / "local"
    for root in (on_cluster, local):
        shutil.copytree(os.path.join(sample_source, "Training"), root / "Training")
    cluster_run = start_materialize(on_cluster, tmp_path / "home-cluster", spark_cluster.master_url, weights_file)
    finish(cluster_run)
    finish(start_materialize(local, tmp_path / "home-local", "local[2]", weights_file))

    for folder, column in (("embeddings", "embedding"), ("output/resultats_features_parquet", "features")):
        a, b = table(on_cluster, folder), table(local, folder)
        assert a.num_rows == b.num_rows == 36
        assert relative(a["path"].to_pylist()) == relative(b["path"].to_pylist())
        np.testing.assert_allclose(np.stack(a[column].to_numpy(zero_copy_only=False)),
                                   np.stack(b[column].to_numpy(zero_copy_only=False)), rtol=1e-5, atol=1e-5)
    pca_a, pca_b = (np.load(os.path.join(r, "models", "pca", "pca.npz")) for r in (on_cluster, local))
    np.testing.assert_allclose(pca_a["explained_variance_ratio"], pca_b["explained_variance_ratio"], atol=1e-8)


def python_workers_of(process):
    try:
        return [p for p in psutil.Process(process.pid).children(recursive=True) if p.name().startswith("python")]
    except psutil.Error:
        return []


def test_run_survives_a_worker_killed_mid_embedding(spark_cluster, sample_source, weights_file, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(os.path.join(sample_source, "Training"), root / "Training")
    run = start_materialize(root, tmp_path / "home", spark_cluster.master_url, weights_file)
    try:
        deadline = time.monotonic() + 300
        while not python_workers_of(spark_cluster.workers[0]):  # a task is running on worker 0
            assert run.poll() is None and time.monotonic() < deadline, "no task started on worker 0"
            time.sleep(0.1)
        time.sleep(1.0)  # well inside the task: TensorFlow import and model build take longer
        spark_cluster.kill_worker(0)
        output = finish(run)
    finally:
        if spark_cluster.workers[0] is None:
            spark_cluster.restart_worker(0)
    assert "images               36 published; in the embedded classes 36 (36 embedded, 0 quarantined)" in output
    embeddings = table(root, "embeddings")
    assert embeddings.num_rows == 36 and len(set(embeddings["path"].to_pylist())) == 36
    assert table(root, "output/resultats_features_parquet").num_rows == 36
    # The run says it survived: its metadata counts the task attempts lost with the worker, and the
    # application's event log is in the data root for the History Server.
    from dagster import AssetKey, DagsterInstance

    from fruit_assets.assets.metadata import latest_run_figures

    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        metadata = latest_run_figures(instance, AssetKey("image_embeddings"))
    assert metadata["spark_failed_task_attempts"].value >= 1
    application = metadata["spark_application_id"].value
    assert os.path.isdir(root / "spark-events" / f"eventlog_v2_{application}")
    stages = history_server_stages(f"file://{root}", application, tmp_path)
    # The History Server shows them too (the later steps of the same application may add none or more).
    assert sum(stage["numFailedTasks"] for stage in stages) >= metadata["spark_failed_task_attempts"].value >= 1


def history_server_stages(root: str, application: str, tmp_path) -> list[dict]:
    """The application's stages as `fruit-assets spark-history` serves them."""
    import json
    import signal
    import urllib.request

    from fruit_assets_tests.harness.dagster_dev import free_port

    port = free_port()
    server = subprocess.Popen([CLI, "spark-history", "--port", str(port),
                               "--cache", str(tmp_path / "history-cache")],
                              env={**os.environ, "FRUIT_DATA_URI": root}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "the History Server did not list the application"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/applications/{application}/stages", timeout=10) as response:
                    return json.load(response)
            except OSError:
                time.sleep(2)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
