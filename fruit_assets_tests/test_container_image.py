"""docker/Dockerfile built for real (docker/build-local.sh, podman + runc) and run in its three
roles against services on the host, as pods reach theirs: the run worker, the Dagster code server
and the Spark executor. Each role's outputs are compared with the same work done on the host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from fruit_assets.layout import DataLayout
from fruit_assets.pca import load_pca
from fruit_assets.storage.published_files import dataset_files
from fruit_assets.storage.parquet_io import column_matrix, read_tables
from fruit_assets.storage import open_store
from fruit_assets.storage.sync import sync_folder
from fruit_assets_tests.harness import container
from fruit_assets_tests.harness.dagster_dev import DagsterDev, free_port

pytestmark = pytest.mark.slow

CLI = os.path.join(os.path.dirname(sys.executable), "fruit-assets")
CLASSES = ["Apple Red 1", "Banana", "Pepper Red"]
IMAGES = 36
# The image's interpreter: what a driver outside the image names for executors inside it.
IMAGE_PYTHON = "/opt/venv/bin/python"


def upload_sample(s3_server, sample_source: str) -> str:
    """The sample dataset in a bucket of its own: s3://<bucket>/fruits."""
    bucket = f"image-{uuid.uuid4().hex[:10]}"
    s3_server["client"].create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/fruits"
    sync_folder(os.path.join(sample_source, "Training"), f"{root}/Training")
    return root


def materialize_on_host(root: str, home: str, **env: str) -> str:
    os.makedirs(home, exist_ok=True)
    result = subprocess.run(
        [CLI, "materialize"], capture_output=True, text=True, timeout=900,
        env={**os.environ, "FRUIT_DATA_URI": root, "FRUIT_MODEL_WEIGHTS": container.TEST_WEIGHTS,
             "FRUIT_PCA_VARIANCE": "0.9", "SPARK_MASTER": "local[2]", "DAGSTER_HOME": home, **env},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout


def outputs(root: str) -> dict:
    """Embeddings and reduced features by image path relative to Training/, and the PCA spectrum."""
    layout = DataLayout.at(root)
    found = {}
    for name, dataset, column in (("embeddings", layout.embeddings, "embedding"),
                                  ("reduced", layout.reduced_features, "features")):
        table = read_tables([uri for c in CLASSES for uri in dataset_files(dataset, c)])
        assert table is not None, f"no {name} under {root}"
        found[name] = {path.split("/Training/", 1)[1]: row
                       for path, row in zip(table["path"].to_pylist(), column_matrix(table[column]))}
    found["pca"] = load_pca(open_store(layout.pca_model).read_bytes(layout.pca_model))
    return found


def assert_same_outputs(got: dict, expected: dict) -> None:
    for name in ("embeddings", "reduced"):
        assert sorted(got[name]) == sorted(expected[name]) and len(got[name]) == IMAGES, name
        np.testing.assert_allclose(np.stack([got[name][p] for p in sorted(got[name])]),
                                   np.stack([expected[name][p] for p in sorted(got[name])]), rtol=1e-5, atol=1e-5)
    assert got["pca"].k == expected["pca"].k
    np.testing.assert_allclose(got["pca"].explained_variance_ratio, expected["pca"].explained_variance_ratio, atol=1e-7)


@pytest.fixture(scope="module")
def host_outputs(s3_server, sample_source, tmp_path_factory) -> dict:
    """`fruit-assets materialize` run on the host, against the test S3 server: what each role's
    result must equal."""
    root = upload_sample(s3_server, sample_source)
    materialize_on_host(root, str(tmp_path_factory.mktemp("host_home")))
    return outputs(root)


# What the embedding_model materialization recorded (run inside the container, on its instance).
MODEL_METADATA = (
    "from dagster import AssetKey, DagsterInstance; "
    "m = DagsterInstance.get().get_latest_materialization_event(AssetKey('embedding_model')).asset_materialization.metadata; "
    "print('from_image=%s converted_now=%s' % (m['from_image'].value, m['converted_now'].value))"
)


def test_image_runs_non_root_with_consistent_dependencies_and_its_model_offline(container_image):
    """No network at all: the dependencies agree, PID 1 is tini, the user is not root, and a whole
    materialization runs on the model baked at build time (adopted, not converted)."""
    script = (
        "set -e; id -u; ps -o comm= -p 1; pip check; "
        "fruit-assets sample data --classes 2 --images 6 > /dev/null; fruit-assets materialize -q; "
        f'DAGSTER_HOME=$PWD/.dagster_home python -c "{MODEL_METADATA}"'
    )
    result = container.run(container_image, ["bash", "-c", script], network="none")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    lines = result.stdout.splitlines()
    assert int(lines[0]) != 0 and lines[1] == "tini"
    assert "No broken requirements found." in lines
    assert "  images               12 published; in the embedded classes 12 (12 embedded, 0 quarantined)" in lines
    assert lines[-1] == "from_image=True converted_now=False"  # the baked model: no tf2onnx, no download


def test_run_worker_in_the_image_equals_the_host(container_image, host_outputs, s3_server, sample_source):
    """`fruit-assets materialize` inside the container (Dagster, the Spark driver and local
    executors all in it), against the host's S3 server."""
    root = upload_sample(s3_server, sample_source)
    result = container.run(container_image, ["fruit-assets", "materialize"],
                           env={"FRUIT_DATA_URI": root, "FRUIT_PCA_VARIANCE": "0.9"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert f"  images               {IMAGES} published; in the embedded classes {IMAGES} ({IMAGES} embedded, 0 quarantined)" in result.stdout
    assert_same_outputs(outputs(root), host_outputs)


def wait_for_code_server(port: int, code_server: container.Container, timeout: float = 240) -> None:
    """Until `dagster api grpc-health-check` on the host reaches the server in the container."""
    check = [os.path.join(os.path.dirname(sys.executable), "dagster"), "api", "grpc-health-check",
             "-h", "127.0.0.1", "-p", str(port)]
    deadline = time.monotonic() + timeout
    while subprocess.run(check, capture_output=True, timeout=60).returncode != 0:
        assert code_server.running() and time.monotonic() < deadline, code_server.logs()[-4000:]
        time.sleep(1)


def test_code_server_in_the_image_serves_a_webserver_on_the_host(container_image, s3_server, postgres,
                                                                 sample_source, tmp_path):
    """The Helm chart's user-deployment role: `dagster api grpc -m fruit_assets.definitions` in the container,
    dagster-webserver on the host loading it through a workspace.yaml grpc_server entry; a run
    launched there executes in the code server's container. The instance is the chart's kind: runs
    and events in Postgres, compute logs in S3, shared by the host's webserver and the container."""
    from dagster import AssetKey, DagsterInstance

    root = upload_sample(s3_server, sample_source)
    logs_bucket = root.split("/")[2]
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        # Runs launch at once: no daemon here to dequeue them.
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
        + postgres.instance_storage()
        + "compute_logs:\n  module: dagster_aws.s3.compute_log_manager\n  class: S3ComputeLogManager\n"
        f"  config:\n    bucket: {logs_bucket}\n    prefix: dagster/compute-logs\n"
        "    endpoint_url:\n      env: AWS_ENDPOINT_URL\n"
    )
    grpc_port = free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {grpc_port}\n"
                         "      location_name: fruit_assets\n")
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("fruit_class", ["Banana"])

    with container.Container(
        container_image, ["dagster", "api", "grpc", "-h", "127.0.0.1", "-p", str(grpc_port), "-m", "fruit_assets.definitions"],
        env={"FRUIT_DATA_URI": root},
    ) as code_server:
        wait_for_code_server(grpc_port, code_server)
        webserver = DagsterDev(str(home), {}, workspace=str(workspace), webserver_only=True)
        try:
            webserver.start(timeout=300)
            nodes = webserver.graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]
            assert {"raw_images", "image_embeddings", "reduced_features"} <= {n["assetKey"]["path"][-1] for n in nodes}
            launched = webserver.graphql(
                "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename "
                "... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }",
                {"p": {"selector": {"repositoryLocationName": "fruit_assets", "repositoryName": "__repository__",
                                    "jobName": "embed_classes"},
                       "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "Banana"}]}}},
            )["launchRun"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            run_id = launched["run"]["runId"]
            deadline, status = time.monotonic() + 600, None
            while status not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() < deadline:
                time.sleep(2)
                status = webserver.graphql(f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status }} }} }}')[
                    "runOrError"]["status"]
        finally:
            webserver.stop()
        server_output = code_server.logs()
    assert status == "SUCCESS", server_output[-4000:]
    # The run's process was the code server's child: its event log lines are in the container's output.
    assert run_id in server_output
    for secret in (os.environ["AWS_SECRET_ACCESS_KEY"], postgres.password):  # passed by name, never shown
        assert secret not in server_output
    with DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(AssetKey("image_embeddings"))
        assert event.run_id == run_id and event.dagster_event.partition == "Banana"
    banana = read_tables(dataset_files(DataLayout.at(root).embeddings, "Banana"))
    assert banana.num_rows == 12 and set(banana["fruit_class"].to_pylist()) == {"Banana"}
    compute_logs = [info.uri for info in open_store(f"s3://{logs_bucket}/dagster").list_objects(
        f"s3://{logs_bucket}/dagster/compute-logs")]
    assert any(run_id in uri for uri in compute_logs), compute_logs


def test_spark_executors_in_the_image_equal_the_host(container_image, host_outputs, s3_server, sample_source,
                                                     tmp_path, monkeypatch):
    """A standalone Spark worker started from the image joins a master on the host, with Spark
    authentication and encryption on; the driver (`fruit-assets materialize` on the host) gets its
    executors, and Python workers, in the container."""
    from fruit_assets_tests.harness.spark_cluster import SparkStandalone

    root = upload_sample(s3_server, sample_source)
    (tmp_path / "spark").mkdir()
    cluster = SparkStandalone(str(tmp_path / "spark"), workers=0).start()
    work_dir = "/home/fruit/spark-work"
    try:
        worker_command = ["bash", "-c", f'exec "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker '
                          f"{cluster.master_url} --host 127.0.0.1 --cores 2 --memory 2g "
                          f"--webui-port {free_port()} --work-dir {work_dir}"]
        monkeypatch.setenv("SPARK_WORKER_OPTS", cluster.daemon_java_opts)  # passed by name: the secret
        with container.Container(container_image, worker_command, env={"SPARK_LOCAL_IP": "127.0.0.1"}) as worker:
            cluster.wait_for_workers(1, timeout=180)
            [registered] = cluster.master_state()["workers"]
            assert f"Successfully started service 'sparkWorker' on port {registered['port']}" in worker.logs()

            materialize_on_host(root, str(tmp_path / "home"), SPARK_MASTER=cluster.master_url,
                                PYSPARK_PYTHON=IMAGE_PYTHON, **cluster.driver_env)

            applications = [app["id"] for app in cluster.master_state()["completedapps"]]
            executor_dirs = worker.exec("bash", "-c", f"ls -d {work_dir}/*/*").split()
            executor_logs = worker.exec("bash", "-c", f"cat {work_dir}/*/*/stderr")
    finally:
        cluster.stop()
    # Every application the driver ran had its executors in the container (the only worker).
    assert applications and {d.split("/")[-2] for d in executor_dirs} == set(applications)
    assert "Finished task" in executor_logs
    assert_same_outputs(outputs(root), host_outputs)


# The executor branch as it was: it forwarded SPARK_JAVA_OPT_0 alone, so an executor lost
# spark.network.crypto.* and the driver's ports; a driver that requires AES-GCM refuses it.
FIRST_JAVA_OPTION_ONLY = """#!/usr/bin/env bash
set -euo pipefail
if [ "${1:-}" = "executor" ]; then
  exec java -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" ${SPARK_JAVA_OPT_0:-} -cp "$SPARK_HOME/jars/*" \\
    org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \\
    --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES" \\
    --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP" \\
    --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" --podName "${SPARK_EXECUTOR_POD_NAME:-}"
fi
exec "$@"
"""


def run_kubernetes_executor(image: str, root: str, tmp_path, wait_seconds: int, entrypoint: str | None = None):
    """A run pod's driver on the host (harness/k8s_driver.py: the product's session, authentication
    and AES-GCM required) and, in the image, the executor pod Spark's own Kubernetes code builds for
    that application, started as a kubelet would (its environment, field references, user, read-only
    root, capabilities, volumes and limits). Returns the driver's exit status and output, the
    container's output and the pod."""
    from fruit_assets_tests.harness import REPO
    from fruit_assets_tests.harness.spark_cluster import SparkStandalone
    from fruit_assets_tests.harness.spark_k8s import environment, podman_options

    (tmp_path / "scheduler").mkdir()
    # The scheduler the driver registers with starts no executor: the pod below is the only one.
    scheduler = SparkStandalone(str(tmp_path / "scheduler"), workers=0).start()
    pod_file, driver_log = tmp_path / "executor-pod.json", tmp_path / "driver.log"
    home = tmp_path / "run-home"
    home.mkdir()
    options = []
    if entrypoint is not None:
        (tmp_path / "entrypoint.sh").write_text(entrypoint)
        (tmp_path / "entrypoint.sh").chmod(0o755)
        options = ["-v", f"{tmp_path / 'entrypoint.sh'}:/usr/local/bin/fruit-assets-entrypoint:ro"]
    try:
        with open(driver_log, "w") as log:
            driver = subprocess.Popen(
                [sys.executable, "-m", "fruit_assets_tests.harness.k8s_driver", str(pod_file), str(free_port()),
                 str(free_port())], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **scheduler.driver_env, "SPARK_MASTER": scheduler.master_url, "FRUIT_DATA_URI": root,
                     "DAGSTER_HOME": str(home), "FRUIT_MODEL_WEIGHTS": container.TEST_WEIGHTS,
                     "FRUIT_PCA_VARIANCE": "0.9", "PYSPARK_PYTHON": IMAGE_PYTHON,
                     "FRUIT_SPARK_EXECUTOR_WAIT_SECONDS": str(wait_seconds)})
            try:
                deadline = time.monotonic() + 300
                while not pod_file.exists():
                    assert driver.poll() is None and time.monotonic() < deadline, driver_log.read_text()[-4000:]
                    time.sleep(0.5)
                pod = json.loads(pod_file.read_text())
                env = environment(pod, pod_ip="127.0.0.1")
                [args] = [c["args"] for c in pod["spec"]["containers"]]
                with container.Container(image, args, options=podman_options(pod) + options,
                                         env_by_name=env) as executor:
                    driver.wait(timeout=900)
                    executor_output = executor.logs()
            finally:
                if driver.poll() is None:
                    os.killpg(driver.pid, signal.SIGKILL)
                    driver.wait(timeout=60)
    finally:
        scheduler.stop()
    return driver.returncode, driver_log.read_text(), executor_output, pod


def test_executor_pods_spark_builds_join_an_authenticating_driver_and_embed_as_local(
        container_image, host_outputs, s3_server, sample_source, tmp_path):
    """Issue #27's contract: the executor role of the image, started from the very pod Spark's
    Kubernetes scheduler builds for the product's settings, registers with a driver that requires
    authentication and AES-GCM, and the run's embeddings and features equal local[*]'s."""
    root = upload_sample(s3_server, sample_source)
    status, driver_output, executor_output, pod = run_kubernetes_executor(container_image, root, tmp_path, 180)
    assert status == 0, driver_output[-4000:] + executor_output[-4000:]

    [container_spec] = pod["spec"]["containers"]
    java_options = sorted(v["value"] for v in container_spec["env"] if v["name"].startswith("SPARK_JAVA_OPT_"))
    assert {"-Dspark.authenticate=true", "-Dspark.network.crypto.enabled=true",
            "-Dspark.network.crypto.cipher=AES/GCM/NoPadding", "-Dspark.network.crypto.saslFallback=false",
            "-Dspark.network.crypto.authEngineVersion=2"} <= set(java_options) and len(java_options) == 7
    # The driver URL Spark gives executors is the run pod's IP (never the 0.0.0.0 it binds to).
    driver_url = next(v["value"] for v in container_spec["env"] if v["name"] == "SPARK_DRIVER_URL")
    assert driver_url.startswith("spark://CoarseGrainedScheduler@127.0.0.1:")
    assert "Successfully registered with driver" in executor_output
    [executors] = [json.loads(line.split(" ", 1)[1]) for line in driver_output.splitlines()
                   if line.startswith("EXECUTORS ")]
    assert sorted(executors) == ["1", "driver"] and executors["1"]["tasks"] > 0, executors
    secret = next(v["value"] for v in container_spec["env"] if v["name"] == "_SPARK_AUTH_SECRET")
    assert secret not in driver_output and secret not in executor_output
    assert f"  images               {IMAGES} published; in the embedded classes {IMAGES} ({IMAGES} embedded, 0 quarantined)" \
        in driver_output
    assert_same_outputs(outputs(root), host_outputs)


def test_an_executor_without_its_spark_java_options_never_joins_and_the_run_fails_in_bounded_time(
        container_image, s3_server, sample_source, tmp_path):
    """The same pod with the entrypoint that forwarded only SPARK_JAVA_OPT_0: the driver refuses
    the executor, and the run fails after the bounded wait with one line instead of hanging."""
    root = upload_sample(s3_server, sample_source)
    started = time.monotonic()
    status, driver_output, executor_output, _pod = run_kubernetes_executor(
        container_image, root, tmp_path, 30, entrypoint=FIRST_JAVA_OPTION_ONLY)
    assert status == 1, driver_output[-4000:]
    assert time.monotonic() - started < 400
    assert "Successfully registered with driver" not in executor_output, executor_output[-4000:]
    failed = [line for line in driver_output.splitlines() if "no Spark executor registered with the driver" in line]
    assert len(failed) == 1 and "for 30 s while a job waited for one" in failed[0], driver_output[-4000:]
