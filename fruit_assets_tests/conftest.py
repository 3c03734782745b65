"""Shared fixtures: a real Spark session, a real weights file, sample images, Dagster instances.

Nothing here stands in for Spark, storage or Dagster: the fixtures start the real things.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid

import pytest

from fruit_assets_tests.harness import REPO

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
# A killed writer's intent protects its files until its lease runs out (storage/versions.py): 2 min
# in production, seconds here, so the crash tests' next run can recover what a kill left. Live
# writers renew every third of it, so this still tells a live writer from a dead one.
os.environ.setdefault("FRUIT_PUBLICATION_LEASE_SECONDS", "3")
# Superseded files are kept an hour by default; most tests assert that a plain reader of a folder
# reads exactly the current version once a publication is done, which is what a grace of 0 gives.
# The tests of the default retention (storage/test_retention.py) unset it.
os.environ.setdefault("FRUIT_PUBLICATION_GRACE_SECONDS", "0")

SPARK_MASTER = "local[2]"


def _test_cache() -> str:
    from fruit_assets_tests.harness.trained_backbone import default_cache_dir

    return default_cache_dir()


# Every JVM of the session (this process's, the commands' and Dagster's run workers') maps Spark's
# classes from one archive (spark_jobs/class_archive.py), kept with the tests' other downloads and
# recorded first if this machine has none (``spark_class_archive``).
os.environ.setdefault("FRUIT_SPARK_CLASS_ARCHIVE", os.path.join(_test_cache(), "spark-class-archive"))


@pytest.fixture(scope="session", autouse=True)
def spark_class_archive():
    """Records the class archive (about 13 s, once per machine) before any test starts a JVM: each
    later start is about 2 s shorter, and a JVM that recorded it at its own exit would hold the lock
    for the whole session."""
    from fruit_assets.spark_jobs.class_archive import record_now

    record_now()


def _native_bf16() -> bool:
    from fruit_assets.featurize.openvino_model import native_precisions

    return "bf16" in native_precisions()


# The bf16 tests need a CPU with a bf16 dot product (AMX or AVX-512 BF16): elsewhere the product
# refuses bf16 by design (tested everywhere: fruit_assets_tests/models/test_fidelity.py).
requires_native_bf16 = pytest.mark.skipif(not _native_bf16(), reason="this CPU has no native bf16 (AMX or AVX-512 BF16)")
SAMPLE_CLASSES = 3  # "Apple Red 1", "Banana", "Pepper Red": spaces, digits, mixed case
SAMPLE_IMAGES = 12


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> str:
    """Calibrated random MobileNetV2 weights saved the way a user's own file would be."""
    from fruit_assets.featurize.model import calibrated_random_model

    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_test.weights.h5"
    calibrated_random_model(seed=7).save_weights(str(path))
    return str(path)


@pytest.fixture(scope="session")
def trained_weights_file() -> str:
    """A trained MobileNetV2 (ImageNet, fine-tuned; harness/trained_backbone.py), for the figures
    that mean nothing on random weights. Downloaded once per machine into FRUIT_TEST_CACHE (default
    ~/.cache/fruit_assets_tests); a failed download is an error that says how to provide the file."""
    from fruit_assets_tests.harness.trained_backbone import default_cache_dir, trained_weights_file

    return trained_weights_file(default_cache_dir())


@pytest.fixture(scope="session")
def model_weights(weights_file):
    from fruit_assets.featurize.model import resolve_weights

    return resolve_weights(weights_file)


@pytest.fixture(scope="session")
def tensorflow_model(model_weights):
    """The weights file as the TensorFlow engine runs it (the reference)."""
    from fruit_assets.featurize.engines import TENSORFLOW, InferenceModel

    return InferenceModel(TENSORFLOW, model_weights.fingerprint, model_weights.source, model_weights.arrays)


@pytest.fixture(scope="session")
def onnx_model(weights_file, tmp_path_factory):
    """The weights file converted for ONNX Runtime (the default engine), parity measured."""
    from fruit_assets.layout import DataLayout
    from fruit_assets.models.build import build_embedding_model

    report = build_embedding_model(DataLayout.at(str(tmp_path_factory.mktemp("models"))), weights_file, 1234)
    assert report.converted and report.record.parity_max_rel < 1e-4
    return report.model


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server (SeaweedFS `weed mini`), loopback only, with credentials made up per session.

    The standard AWS variables are set for the whole test session (before any Spark session starts,
    so Spark's Python workers inherit them as executors inherit them in production)."""
    from fruit_assets_tests.harness.s3server import SeaweedFS

    with SeaweedFS(str(tmp_path_factory.mktemp("seaweedfs"))) as server:
        previous = {key: os.environ.get(key) for key in server.env}
        os.environ.update(server.env)
        yield {"endpoint": server.endpoint, "client": server.client(), "server": server, **server.env}
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh bucket, deleted with its objects afterwards: SeaweedFS gives every bucket volumes of
    its own, and a session of a few hundred buckets would run out of them."""
    client = s3_server["client"]
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    yield bucket
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=bucket)
    except Exception:  # noqa: BLE001 - a server a test stopped on purpose; its volumes go with the session
        pass


@pytest.fixture
def s3_sample_root(s3_bucket, sample_source) -> str:
    """The sample dataset uploaded under s3://<fresh bucket>/fruits/Training/."""
    from fruit_assets.storage import open_store

    root = f"s3://{s3_bucket}/fruits"
    store = open_store(root)
    for dirpath, _dirs, files in os.walk(os.path.join(sample_source, "Training")):
        for name in files:
            relative = os.path.relpath(os.path.join(dirpath, name), sample_source)
            with open(os.path.join(dirpath, name), "rb") as handle:
                store.write_bytes(f"{root}/{relative}", handle.read())
    return root


@pytest.fixture(scope="session")
def spark(s3_server):
    from fruit_assets.spark_jobs.session import SparkSettings, build_spark_session, stop_spark

    session = build_spark_session(SparkSettings(master=SPARK_MASTER, app_name="fruit_assets_tests"))
    yield session
    stop_spark(session)


@pytest.fixture(scope="session")
def sample_source(tmp_path_factory) -> str:
    """A pristine sample dataset; tests copy it (see ``sample_root``) before changing anything."""
    from fruit_assets.cli.sample import write_sample_dataset

    root = tmp_path_factory.mktemp("sample_source")
    write_sample_dataset(str(root), SAMPLE_CLASSES, SAMPLE_IMAGES, seed=3)
    return str(root)


@pytest.fixture
def sample_root(sample_source, tmp_path) -> str:
    root = tmp_path / "data"
    shutil.copytree(os.path.join(sample_source, "Training"), root / "Training")
    return str(root)


@pytest.fixture
def dagster_instance(tmp_path):
    from dagster import DagsterInstance

    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.local_temp(str(home)) as instance:
        yield instance


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory, sample_source, weights_file, s3_server):
    """`dagster dev` over a copy of the sample data, partitions registered, sensors stopped (the
    tests start what they need), with the repository's workspace.yaml and dagster.yaml."""
    from dagster import DagsterInstance

    from fruit_assets_tests.harness.dagster_dev import DagsterDev

    base = tmp_path_factory.mktemp("dagster_dev")
    home, root = base / "home", base / "data"
    home.mkdir()
    shutil.copytree(os.path.join(sample_source, "Training"), root / "Training")
    server = DagsterDev(str(home), {
        "FRUIT_DATA_URI": str(root), "FRUIT_MODEL_WEIGHTS": weights_file, "SPARK_MASTER": SPARK_MASTER,
        "FRUIT_PCA_VARIANCE": "0.9",
    })
    shutil.copy(os.path.join(REPO, "dagster.yaml"), home / "dagster.yaml")
    for sensor_name in ("new_uploads_sensor", "downstream_automation_sensor"):
        server.cli("sensor", "stop", sensor_name, "-w", "workspace.yaml")
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("fruit_class", ["Apple Red 1", "Banana", "Pepper Red"])
    server.start()
    server.data_root = str(root)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory, s3_server):
    """A Spark standalone master and two 1-core workers on 127.0.0.1 (started after the S3
    variables are set, so executors inherit them), with Spark authentication and network encryption
    on. While it runs, FRUIT_SPARK_AUTH_SECRET_FILE names its secret for the whole test session, as
    a deployment sets it: a driver started by a test (`fruit-assets materialize`) joins it."""
    from fruit_assets_tests.harness.spark_cluster import SparkStandalone

    cluster = SparkStandalone(str(tmp_path_factory.mktemp("spark_cluster")), workers=2, cores=1)
    previous = {key: os.environ.get(key) for key in cluster.driver_env}
    try:
        cluster.start()
        os.environ.update(cluster.driver_env)
        yield cluster
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        cluster.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 for Dagster instances shared with containers; its
    password is in DAGSTER_PG_PASSWORD (containers get the variable by name) while it runs."""
    from fruit_assets_tests.harness.postgres import PostgresServer

    with PostgresServer() as server:
        os.environ[server.login_env] = server.password
        try:
            yield server
        finally:
            os.environ.pop(server.login_env, None)


_built_images = []


@pytest.fixture(scope="session")
def container_image(tmp_path_factory) -> str:
    """docker/Dockerfile built by docker/build-local.sh from a clean state (no layer cache), baking
    the seeded random weights; its build time and size are printed at the end of the session."""
    from fruit_assets_tests.harness.container import IMAGE, build_image, missing_tools

    missing = missing_tools()
    if missing:
        pytest.fail(f"the container tests need {', '.join(missing)}: `bash .ci/run` installs them "
                    "(apt-get install podman runc debootstrap)")
    if os.environ.get("FRUIT_TEST_REUSE_IMAGE") == "1":  # iterating on these tests: the image as it is
        return IMAGE
    built = build_image(str(tmp_path_factory.mktemp("image") / "build.log"))
    _built_images.append(built)
    return built.name


def pytest_terminal_summary(terminalreporter):
    for built in _built_images:
        terminalreporter.write_line(built.summary())
