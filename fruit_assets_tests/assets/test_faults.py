"""Faults injected into real runs: the S3 server stops mid-run, the run process is killed
mid-write. What was committed before stays whole and readable; the next run recovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from dagster import materialize

from fruit_assets.assets import image_embeddings, raw_images
from fruit_assets.layout import DataLayout
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.manifest import build_manifests
from fruit_assets.steps.pca import fit_pca
from fruit_assets.steps.reduce import build_reduced_features
from fruit_assets.storage.published_files import dataset_files
from fruit_assets.storage.parquet_io import column_matrix, read_tables
from fruit_assets.storage import normalize_uri, open_store
from fruit_assets_tests.assets.test_assets import ALL_ASSETS, CLASSES, resources, run_graph
from fruit_assets_tests.harness.images import fresh_jpeg

pytestmark = pytest.mark.slow

RANGE = {"dagster/asset_partition_range_start": CLASSES[0], "dagster/asset_partition_range_end": CLASSES[-1]}
DATASETS = ("embeddings", "quarantine", "reduced_features")


def committed(layout: DataLayout) -> dict[str, dict[str, object]]:
    """What a reader sees: every class's committed files of each dataset, read back."""
    state = {}
    for name in DATASETS:
        dataset = getattr(layout, name)
        files = [uri for c in CLASSES for uri in dataset_files(dataset, c)]
        table = read_tables(files)
        state[name] = {"files": files, "table": table.sort_by("path") if table is not None else None}
    return state


def assert_same_tables(left, right):
    for name in DATASETS:
        a, b = left[name]["table"], right[name]["table"]
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.equals(b), name


def add_images(root: str, per_class: int = 4) -> None:
    """New uploads (new content under new keys) so the next run has work to do."""
    store = open_store(root)
    for class_index, fruit_class in enumerate(CLASSES):
        for index in range(per_class):
            store.write_bytes(f"{root}/Training/{fruit_class}/new upload {index}.jpg",
                              fresh_jpeg(100 * class_index + index, style=class_index))


def reference_run(spark, source_root: str, target: str, weights) -> DataLayout:
    """The same images, copied to local disk and run from scratch without faults or Dagster."""
    store, target = open_store(source_root), normalize_uri(target)
    for info in store.list_objects(f"{source_root}/Training"):
        open_store(target).write_bytes(target + info.uri[len(source_root):], store.read_bytes(info.uri))
    layout = DataLayout.at(target)
    build_manifests(layout, CLASSES)
    build_embeddings(spark, layout, CLASSES, weights, "reference-run", incremental=False)
    fit_pca(spark, layout, CLASSES, 0.9)
    build_reduced_features(spark, layout, CLASSES, "reference-run-2")
    return layout


def by_relative_path(table, column: str) -> dict[str, np.ndarray]:
    matrix = column_matrix(table[column])
    return {p.split("/Training/", 1)[1]: row for p, row in zip(table["path"].to_pylist(), matrix)}


def test_s3_server_stopping_mid_run_fails_clearly_and_loses_nothing(
    spark, s3_server, s3_sample_root, weights_file, onnx_model, dagster_instance, tmp_path
):
    root, server = s3_sample_root, s3_server["server"]
    layout = DataLayout.at(root)
    run_graph(dagster_instance, root, weights_file)
    before = committed(layout)
    add_images(root)

    outcome = {}

    def second_run():
        outcome["result"] = materialize(
            ALL_ASSETS, selection=[raw_images, image_embeddings], instance=dagster_instance,
            resources=resources(root, weights_file), tags=RANGE, raise_on_error=False,
        )

    run = threading.Thread(target=second_run)
    run.start()
    tracker = spark.sparkContext.statusTracker()
    deadline = time.monotonic() + 300
    while not tracker.getActiveJobsIds():  # the run is inside Spark: tasks are reading S3
        assert run.is_alive() and time.monotonic() < deadline, "the run never started a Spark job"
        time.sleep(0.02)
    server.stop()
    stopped = time.monotonic()
    try:
        run.join(timeout=300)
        assert not run.is_alive(), "the run hung instead of failing"
        # Bounded retries with backoff: minutes at worst, not forever.
        assert time.monotonic() - stopped < 240
    finally:
        server.start()

    result = outcome["result"]
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert s3_server["endpoint"] in message and "cannot reach S3" in message, message
    assert "\n" not in message and "Traceback" not in message and "Py4J" not in message

    # What readers see is the previous materialization, whole.
    assert_same_tables(committed(layout), before)

    # The server is back: re-running completes, and equals a clean run over the same images.
    run_graph(dagster_instance, root, weights_file)
    after = committed(layout)
    assert after["embeddings"]["table"].num_rows == 36 + 12
    reference = committed(reference_run(spark, root, str(tmp_path / "reference"), onnx_model))
    for name, column in (("embeddings", "embedding"), ("reduced_features", "features")):
        got, want = by_relative_path(after[name]["table"], column), by_relative_path(reference[name]["table"], column)
        assert sorted(got) == sorted(want)
        np.testing.assert_allclose(np.stack([got[p] for p in sorted(got)]), np.stack([want[p] for p in sorted(want)]),
                                   rtol=1e-4, atol=1e-5)
    staging = f"{root}/_staging"
    assert not list(open_store(staging).list_objects(staging))


def test_run_process_killed_mid_write_leaves_no_partial_output(spark, sample_root, weights_file, dagster_instance, tmp_path):
    """`dagster asset materialize` (the run process itself) is SIGKILLed while its Spark tasks are
    writing; readers keep seeing the previous version, and the next run completes the work."""
    layout = DataLayout.at(sample_root)
    run_graph(dagster_instance, sample_root, weights_file)
    before = committed(layout)
    add_images(layout.root)

    env = {
        **os.environ, "DAGSTER_HOME": dagster_instance.root_directory, "FRUIT_DATA_URI": sample_root,
        "FRUIT_MODEL_WEIGHTS": weights_file, "SPARK_MASTER": "local[2]",
    }
    # Small tasks: staged files appear one after another, so the kill lands mid-write.
    # (Run config replaces the resource's whole config, so the weights are repeated here.)
    config = json.dumps({"resources": {"embedding_settings": {"config": {"weights": weights_file, "max_images_per_task": 2}}}})
    bin_dir = os.path.dirname(sys.executable)
    log = open(os.path.join(tmp_path, "killed_run.log"), "wb")
    process = subprocess.Popen(
        [f"{bin_dir}/dagster", "asset", "materialize", "-m", "fruit_assets.definitions", "--select", "raw_images,image_embeddings",
         "--partition-range", f"{CLASSES[0]}...{CLASSES[-1]}", "--config-json", config],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    staging = os.path.join(sample_root, "_staging")
    deadline = time.monotonic() + 300
    try:
        while True:
            staged = [f for _, _, files in os.walk(staging) for f in files if f.endswith(".parquet")]
            if len(staged) >= 3:
                break
            assert process.poll() is None, open(log.name).read()[-3000:]
            assert time.monotonic() < deadline, "the run never staged any output"
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the run process, its Spark JVM and Python workers
        process.wait()
        log.close()

    # No partial output: readers see exactly the previous version of every class.
    assert_same_tables(committed(layout), before)
    import pyarrow.dataset as ds  # a plain folder reader (what Spark or pandas users run) agrees

    plain = ds.dataset(layout.embeddings[len("file://"):], format="parquet").to_table().sort_by("path")
    assert plain.equals(before["embeddings"]["table"].select(plain.column_names))

    # Run monitoring marks the dead run failed (a run pod's death is seen by the daemon); the next
    # run then recovers: every image embedded exactly once, the dead run's staging folder swept.
    [killed] = [r for r in dagster_instance.get_runs() if not r.is_finished]
    assert os.path.isdir(os.path.join(staging, killed.run_id))
    dagster_instance.report_run_failed(killed)
    run_graph(dagster_instance, sample_root, weights_file)
    assert os.listdir(staging) == []
    after = committed(layout)
    paths = after["embeddings"]["table"]["path"].to_pylist()
    assert len(paths) == len(set(paths)) == 36 + 12
    old = by_relative_path(before["embeddings"]["table"], "embedding")
    new = by_relative_path(after["embeddings"]["table"], "embedding")
    for path, vector in old.items():
        np.testing.assert_array_equal(new[path], vector)
