"""A real standalone cluster with Spark authentication and network encryption on: a driver with its
secret (from FRUIT_SPARK_AUTH_SECRET_FILE, as a deployment sets it) runs on its workers and never
shows the secret; a driver without it is refused."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest

pytestmark = pytest.mark.slow

# The driver, as a run pod starts it: SparkResource with its deployment from the environment.
DRIVER = r"""
import json, os, sys, urllib.request
import psutil
from fruit_assets.resources import SparkResource

spark = SparkResource(data_uri=sys.argv[1])
sc = spark.get_context()

def where(_):
    from pyspark import TaskContext
    executor = next(p for p in psutil.Process().parents() if p.name() == "java")
    return [{"partition": TaskContext.get().partitionId(), "cwd": os.getcwd(), "executor_command": executor.cmdline()}]

def commands(processes):
    for process in processes:
        try:
            yield process.cmdline()
        except psutil.Error:  # a launcher script's process that has exited
            pass

tasks = sc.parallelize(range(4), 4).mapPartitions(where).collect()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/environment", timeout=30) as response:
    environment = response.read().decode()
print("RESULT " + json.dumps({
    "application": sc.applicationId, "tasks": tasks, "environment": environment,
    "driver_commands": list(commands(psutil.Process().children(recursive=True))),
    "conf": {key: sc.getConf().get(key) for key in ("spark.authenticate", "spark.network.crypto.enabled")},
}), flush=True)
spark.stop_application()
"""


def start_driver(env: dict, root: str, log_path: str) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-c", DRIVER, root], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its JVM goes with it when the test kills the group


def files_under(folder: str):
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            yield os.path.join(dirpath, name)


def event_log_text(folder: str) -> str:
    return b"".join(pa.CompressedInputStream(pa.OSFile(path), "zstd").read() for path in files_under(folder)
                    if path.endswith(".zstd")).decode()


def test_a_driver_with_the_secret_runs_on_the_workers_and_shows_the_secret_nowhere(spark_cluster, tmp_path):
    with open(spark_cluster.secret_file) as handle:
        secret = handle.read().strip()
    assert os.stat(spark_cluster.secret_file).st_mode & 0o077 == 0
    root, log_path = str(tmp_path / "data"), str(tmp_path / "driver.log")
    driver = start_driver({**os.environ, "SPARK_MASTER": spark_cluster.master_url}, root, log_path)
    driver.wait(timeout=300)
    with open(log_path) as handle:
        output = handle.read()
    assert driver.returncode == 0, output[-4000:]
    [result] = [json.loads(line.split(" ", 1)[1]) for line in output.splitlines() if line.startswith("RESULT ")]
    application = result["application"]

    # Every task ran in an executor a worker of this cluster launched (its working directory), and
    # executors were started with authentication and AES encryption, the secret off their command line.
    assert sorted(task["partition"] for task in result["tasks"]) == [0, 1, 2, 3]
    for task in result["tasks"]:
        worker_dir = os.path.relpath(task["cwd"], spark_cluster.work_dir).split(os.sep)
        assert worker_dir[0] in ("worker-0", "worker-1") and worker_dir[1] == application, task["cwd"]
        command = " ".join(task["executor_command"])
        assert "-Dspark.authenticate=true" in command and "-Dspark.network.crypto.enabled=true" in command
        assert secret not in command
    assert result["conf"] == {"spark.authenticate": "true", "spark.network.crypto.enabled": "true"}
    assert application in {app["id"] for app in spark_cluster.master_state()["completedapps"]}

    # Not on the driver's JVM command line, not in the UI's environment tab (redacted), not in the
    # event log, not in any log or executor output of the cluster.
    [submit] = [" ".join(c) for c in result["driver_commands"] if "org.apache.spark.deploy.SparkSubmit" in c]
    assert "spark.network.crypto.enabled=true" in submit and secret not in submit  # the rest of the conf is there
    properties = dict(json.loads(result["environment"])["sparkProperties"])
    assert properties["spark.authenticate.secret"] == "*********(redacted)" and secret not in result["environment"]
    events = event_log_text(os.path.join(root, "spark-events", f"eventlog_v2_{application}"))
    assert '"spark.authenticate.secret":"*********(redacted)"' in events and secret not in events
    assert secret not in output
    written = [path for path in files_under(spark_cluster.work_dir)
               if path not in (spark_cluster.secret_file, spark_cluster.daemon_properties_file)]
    assert any(application in path and path.endswith("stderr") for path in written)
    for path in written:
        with open(path, "rb") as handle:
            assert secret.encode() not in handle.read(), path


def test_a_driver_without_the_secret_is_refused_by_the_cluster(spark_cluster, tmp_path):
    def applications() -> set[str]:
        state = spark_cluster.master_state()
        return {app["id"] for app in state["activeapps"] + state["completedapps"]}

    before = applications()
    env = {key: value for key, value in os.environ.items() if key not in spark_cluster.driver_env}
    log_path = str(tmp_path / "driver.log")
    driver = start_driver({**env, "SPARK_MASTER": spark_cluster.master_url}, str(tmp_path / "data"), log_path)
    refused = f"Failed to connect to master 127.0.0.1:{spark_cluster.port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with open(log_path) as handle:
                output = handle.read()
            if refused in output or driver.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    assert refused in output, output[-4000:]
    assert "neither authenticated nor encrypted" in output  # the driver said why it might be refused
    assert "RESULT " not in output and applications() == before
