"""Transient faults injected between real runs and the real S3 server (harness/fault_proxy.py):
throttling and dropped connections are ridden out, a fault that outlasts boto's retries is retried
by the step's RetryPolicy, an image deleted between listing and reading is quarantined as
`vanished`, an object over the size limit is refused from its listed size without a download."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
from dagster import DagsterEventType, materialize

from fruit_assets.assets import image_embeddings, raw_images
from fruit_assets.featurize.images import MAX_IMAGE_BYTES
from fruit_assets.layout import DataLayout
from fruit_assets.partitions import fruit_class_partitions
from fruit_assets.storage import open_store
from fruit_assets_tests.assets.test_assets import ALL_ASSETS, CLASSES, resources
from fruit_assets_tests.assets.test_faults import by_relative_path, committed, reference_run
from fruit_assets_tests.harness.fault_proxy import RESET, SLOW_DOWN, FaultProxy, Reset

RANGE = {"dagster/asset_partition_range_start": CLASSES[0], "dagster/asset_partition_range_end": CLASSES[-1]}


@pytest.fixture
def proxy(s3_server, monkeypatch):
    """The proxy; this process's S3 clients (the Dagster driver's) go through it."""
    with FaultProxy(s3_server["endpoint"], seed=20) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.endpoint)
        yield running


@contextmanager
def spark_tasks_with(spark, **variables):
    """Spark's Python workers started from now on get these variables, the way executors get
    spark.executorEnv.* in production (PySpark keys its worker daemons by that environment)."""
    environment = spark.sparkContext.environment
    previous = {name: environment.get(name) for name in variables}
    environment.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value


def step_attempts(instance, run_id: str, step: str) -> int:
    starts = (DagsterEventType.STEP_START, DagsterEventType.STEP_RESTARTED)
    return sum(1 for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.event_type in starts
               and e.dagster_event.step_key == step)


def quarantine_reasons(layout: DataLayout) -> dict[str, str]:
    table = committed(layout)["quarantine"]["table"]
    return {} if table is None else dict(zip(table["path"].to_pylist(), table["reason"].to_pylist()))


def embedded_paths(layout: DataLayout) -> list[str]:
    return sorted(committed(layout)["embeddings"]["table"]["path"].to_pylist())


@pytest.mark.slow
def test_a_whole_materialization_survives_every_third_request_throttled(
    s3_server, s3_sample_root, weights_file, spark, onnx_model, tmp_path
):
    """`fruit-assets materialize` on S3, every third request answered 503 SlowDown, some
    connections reset before or during their answer: it completes, and its outputs equal those of
    a run over the same images without faults."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with FaultProxy(s3_server["endpoint"], seed=3) as proxy:
        proxy.add_rule(SLOW_DOWN, every=3)
        proxy.add_rule(RESET, probability=0.03)
        proxy.add_rule(Reset(after_response_bytes=2000), method="GET", probability=0.03)
        env = {
            **os.environ, "AWS_ENDPOINT_URL": proxy.endpoint,  # the CLI's Spark workers inherit it
            "FRUIT_DATA_URI": s3_sample_root, "FRUIT_MODEL_WEIGHTS": weights_file, "SPARK_MASTER": "local[2]",
            "FRUIT_PCA_VARIANCE": "0.9", "DAGSTER_HOME": str(home),
        }
        result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "fruit-assets"), "materialize"],
                                env=env, capture_output=True, timeout=600)
        log = list(proxy.log)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert b"36 embedded" in result.stdout
    actions = [entry.action for entry in log]
    assert actions.count("slow_down") == len(actions) // 3 and len(actions) > 100
    assert actions.count("reset") and actions.count("reset_mid_response")
    assert any(entry.method == "PUT" and entry.action == "slow_down" for entry in log)  # writes throttled too

    got = committed(DataLayout.at(s3_sample_root))
    reference = committed(reference_run(spark, s3_sample_root, str(tmp_path / "reference"), onnx_model))
    assert got["quarantine"]["table"] is None or got["quarantine"]["table"].num_rows == 0
    for name, column in (("embeddings", "embedding"), ("reduced_features", "features")):
        faulty, clean = by_relative_path(got[name]["table"], column), by_relative_path(reference[name]["table"], column)
        assert sorted(faulty) == sorted(clean) and len(faulty) == 36
        np.testing.assert_allclose(np.stack([faulty[p] for p in sorted(faulty)]), np.stack([clean[p] for p in sorted(clean)]),
                                   rtol=1e-4, atol=1e-5)
    staging = f"{s3_sample_root}/_staging"
    assert not list(open_store(staging).list_objects(staging))


def test_on_s3_an_image_deleted_after_listing_is_vanished_and_an_oversize_one_is_never_fetched(
    spark, s3_server, s3_sample_root, weights_file, dagster_instance, proxy
):
    root = s3_sample_root
    bucket = root[len("s3://"):].split("/", 1)[0]
    store = open_store(root)
    huge = f"{root}/Training/Banana/huge scan.jpg"
    s3_server["client"].put_object(Bucket=bucket, Key=huge.split("/", 3)[3], Body=b"\xff\xd8" + bytes(MAX_IMAGE_BYTES))
    banana = sorted(info.uri for info in store.list_objects(f"{root}/Training/Banana") if info.uri != huge)
    doomed = banana[-1]
    doomed_key = doomed.split("/", 3)[3]

    def delete_then_pass(request):
        """Deleted on the server as its first read passes by: after the listing, before the read."""
        s3_server["client"].delete_object(Bucket=bucket, Key=doomed_key)

    proxy.add_rule(delete_then_pass, method="GET", key=f"{doomed_key}$", first=1)
    dagster_instance.add_dynamic_partitions(fruit_class_partitions.name, CLASSES)
    with spark_tasks_with(spark, AWS_ENDPOINT_URL=proxy.endpoint):
        result = materialize(ALL_ASSETS, selection=[raw_images, image_embeddings], instance=dagster_instance,
                             resources=resources(root, weights_file), tags=RANGE)
    assert result.success

    layout = DataLayout.at(root)
    assert quarantine_reasons(layout) == {doomed: "vanished", huge: "too_large"}
    images = [info.uri for info in store.list_objects(f"{root}/Training")]
    assert embedded_paths(layout) == sorted(set(images) - {huge}) and len(images) == 36  # 36 + huge - doomed
    assert proxy.requests(method="GET", key=f"{doomed_key}$")[0].status == 404  # it was read, and gone
    assert proxy.requests(key="huge scan") == []  # listed with its size, never fetched, not even a HEAD
    table = committed(layout)["quarantine"]["table"]
    errors = dict(zip(table["path"].to_pylist(), table["error"].to_pylist()))
    assert "deleted since it was listed" in errors[doomed] and str(MAX_IMAGE_BYTES) in errors[huge]


def test_on_local_files_an_image_deleted_after_listing_is_vanished_until_it_is_back_and_an_oversize_one_too_large(
    spark, sample_root, weights_file, dagster_instance
):
    huge = os.path.join(sample_root, "Training", "Pepper Red", "huge scan.jpg")
    with open(huge, "wb") as handle:
        handle.truncate(MAX_IMAGE_BYTES + 1)  # sparse: a size, no gigabytes on the test machine
    dagster_instance.add_dynamic_partitions(fruit_class_partitions.name, CLASSES)
    res = resources(sample_root, weights_file)
    assert materialize(ALL_ASSETS, selection=[raw_images], instance=dagster_instance, resources=res, tags=RANGE).success
    doomed = os.path.join(sample_root, "Training", "Apple Red 1", sorted(os.listdir(os.path.join(sample_root, "Training", "Apple Red 1")))[-1])
    with open(doomed, "rb") as handle:
        content = handle.read()
    os.unlink(doomed)  # listed in the manifest, gone before the embedding reads it

    result = materialize(ALL_ASSETS, selection=[image_embeddings], instance=dagster_instance, resources=res, tags=RANGE)
    assert result.success
    layout = DataLayout.at(sample_root)
    assert quarantine_reasons(layout) == {f"file://{doomed}": "vanished", f"file://{huge}": "too_large"}
    assert len(embedded_paths(layout)) == 35 and f"file://{doomed}" not in embedded_paths(layout)

    # Put back as it was (same path, same content): the next run reads it again instead of carrying
    # its quarantine record forward; the oversize object's record is carried forward.
    with open(doomed, "wb") as handle:
        handle.write(content)
    again = materialize(ALL_ASSETS, selection=[raw_images, image_embeddings], instance=dagster_instance,
                        resources=res, tags=RANGE)
    assert again.success
    assert quarantine_reasons(layout) == {f"file://{huge}": "too_large"}
    assert len(embedded_paths(layout)) == 36 and f"file://{doomed}" in embedded_paths(layout)


def test_a_throttled_listing_that_outlasts_boto_is_retried_by_the_step_and_bad_credentials_are_not(
    s3_sample_root, weights_file, dagster_instance, proxy, monkeypatch
):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    proxy.add_rule(SLOW_DOWN, method="GET", first=3)  # the step's first listing, through all 3 attempts
    dagster_instance.add_dynamic_partitions(fruit_class_partitions.name, ["Banana"])
    result = materialize(ALL_ASSETS, selection=[raw_images], instance=dagster_instance, partition_key="Banana",
                         resources=resources(s3_sample_root, weights_file))
    assert result.success
    assert step_attempts(dagster_instance, result.run_id, "raw_images") == 2
    [retry] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert "throttled" in str(retry.event_specific_data.error)
    assert [r.status for r in proxy.log[:4]] == [503, 503, 503, 200]

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNUNKNOWN01")  # pragma: allowlist secret
    failed = materialize(ALL_ASSETS, selection=[raw_images], instance=dagster_instance, partition_key="Banana",
                         resources=resources(s3_sample_root, weights_file), raise_on_error=False)
    assert not failed.success
    assert step_attempts(dagster_instance, failed.run_id, "raw_images") == 1  # the same keys fail the same way
    [failure] = [e for e in failed.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert "the access key is not known to this endpoint" in message and "\n" not in message


def test_a_fault_that_outlasts_boto_inside_a_spark_task_is_retried_by_the_step(
    spark, s3_sample_root, weights_file, dagster_instance, proxy, monkeypatch
):
    root = s3_sample_root
    dagster_instance.add_dynamic_partitions(fruit_class_partitions.name, CLASSES)
    res = resources(root, weights_file)
    assert materialize(ALL_ASSETS, selection=[raw_images], instance=dagster_instance, resources=res, tags=RANGE).success
    image = sorted(info.uri for info in open_store(root).list_objects(f"{root}/Training/Pepper Red"))[5]
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    proxy.add_rule(SLOW_DOWN, method="GET", key=f"{image.split('/', 3)[3]}$", first=2)
    with spark_tasks_with(spark, AWS_ENDPOINT_URL=proxy.endpoint, AWS_MAX_ATTEMPTS="2"):
        result = materialize(ALL_ASSETS, selection=[image_embeddings], instance=dagster_instance, resources=res,
                             tags=RANGE)
    assert result.success
    assert step_attempts(dagster_instance, result.run_id, "image_embeddings") == 2
    [retry] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert "throttled" in str(retry.event_specific_data.error)  # raised in a task, read from Spark's trace
    assert [r.status for r in proxy.requests(method="GET", key=f"{image.split('/', 3)[3]}$")][:3] == [503, 503, 200]
    layout = DataLayout.at(root)
    assert len(embedded_paths(layout)) == 36 and quarantine_reasons(layout) == {}
