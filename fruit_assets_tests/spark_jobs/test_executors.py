"""A job whose executors never come fails in bounded time with one line, and the run gives its
data-root pool slot back: a real standalone master with no worker is a scheduler whose executors
never join, as a Kubernetes namespace is whose executor pods cannot start or reach the driver."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from fruit_assets.errors import ConfigurationError
from fruit_assets.spark_jobs.executors import never_joined_message
from fruit_assets.spark_jobs.session import SparkDeployment

CLI = os.path.join(os.path.dirname(sys.executable), "fruit-assets")


def test_the_wait_comes_from_the_deployment_and_a_bad_value_is_one_line():
    assert SparkDeployment.from_environ({}).executor_wait() == 600
    assert SparkDeployment.from_environ({"FRUIT_SPARK_EXECUTOR_WAIT_SECONDS": "45"}).executor_wait() == 45
    for bad in ("soon", "-1", "1.5"):
        with pytest.raises(ConfigurationError, match="FRUIT_SPARK_EXECUTOR_WAIT_SECONDS"):
            SparkDeployment.from_environ({"FRUIT_SPARK_EXECUTOR_WAIT_SECONDS": bad}).executor_wait()


def test_the_message_names_the_likely_causes_of_the_master_it_waited_on():
    k8s = never_joined_message("k8s://https://kubernetes.default.svc", "10.0.3.7:7078", 600)
    assert "10.0.3.7:7078 for 600 s" in k8s
    for cause in ("SPARK_K8S_IMAGE", "service account", "quota", "NetworkPolicy"):
        assert cause in k8s
    assert "\n" not in k8s
    assert "no worker that has free cores" in never_joined_message("spark://m:7077", "10.0.0.1:41000", 30)


@pytest.mark.slow
def test_a_run_whose_executors_never_join_fails_in_bounded_time_and_frees_the_pool(sample_root, tmp_path):
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from fruit_assets.concurrency import DATA_ROOT_POOL
    from fruit_assets_tests.harness.spark_cluster import SparkStandalone

    (tmp_path / "spark").mkdir()
    cluster = SparkStandalone(str(tmp_path / "spark"), workers=0).start()
    home = tmp_path / "home"
    home.mkdir()
    wait = 15
    try:
        started = time.monotonic()
        result = subprocess.run(
            [CLI, "materialize", "-q"], capture_output=True, text=True, timeout=600,
            env={**os.environ, **cluster.driver_env, "FRUIT_DATA_URI": sample_root, "DAGSTER_HOME": str(home),
                 "FRUIT_MODEL_WEIGHTS": "random", "SPARK_MASTER": cluster.master_url,
                 "FRUIT_SPARK_EXECUTOR_WAIT_SECONDS": str(wait)})
        elapsed = time.monotonic() - started
    finally:
        cluster.stop()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    # Spark start, the model's conversion and one bounded wait; nothing near an unbounded hang.
    assert elapsed < 300, elapsed
    failed = [line for line in output.splitlines() if "no Spark executor registered with the driver" in line]
    assert len(failed) == 1, output[-4000:]
    assert re.fullmatch(
        rf"error: run \S+ of embed_classes failed: no Spark executor registered with the driver at \S+:\d+ for {wait} s "
        rf"while a job waited for one \({re.escape(cluster.master_url)}\): check a cluster with no worker .*", failed[0])
    assert "SparkException" not in output and "Traceback" not in output

    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
        assert [run.job_name for run in runs] == ["embed_classes"]
        assert instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.QUEUED])) == []
        pool = instance.event_log_storage.get_concurrency_info(DATA_ROOT_POOL)
        assert pool.claimed_slots == [] and pool.pending_steps == []
