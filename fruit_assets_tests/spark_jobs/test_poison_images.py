"""Poison inputs: an image whose decode kills its Python worker, or exhausts its memory limit, is
quarantined with its own reason, every other image is embedded, and the next run reads it no more.
Real Spark, real files, real memory limits: the kernel's OOM killer on a memory cgroup around the
Python workers (as an executor container's limit), and spark.executor.pyspark.memory (RLIMIT_AS)."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.dataset as ds
import pytest
from PIL import Image

from fruit_assets.featurize.images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from fruit_assets.layout import DataLayout
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.manifest import build_manifests, discover_classes
from fruit_assets_tests.harness.memory_cgroup import MemoryCgroup

POISON = "Banana/depth.tif"


def write_poison(path) -> None:
    """A valid 24 Mpx 32-bit greyscale TIFF (a depth map, say), under both caps, whose decode needs
    ~0.4 GB more than a worker holds (frame, its bytes and a float32 copy, 4 bytes each a pixel,
    plus the 96 MB file): more than the limits below leave, alone or not."""
    side = 4900
    assert side * side <= MAX_IMAGE_PIXELS
    ramp = (np.linspace(0, 60000, side, dtype=np.float32)[None, :] * np.ones((side, 1), np.float32)).astype(np.int32)
    Image.fromarray(ramp, mode="I").save(path)  # uncompressed
    assert os.path.getsize(path) <= MAX_IMAGE_BYTES


def embed(spark, layout, model, token):
    classes = discover_classes(layout)
    build_manifests(layout, classes)
    return build_embeddings(spark, layout, classes, model, token)


def quarantine(layout) -> dict[str, tuple[str, str]]:
    table = ds.dataset(layout.quarantine[len("file://"):], format="parquet").to_table()
    return {row["path"].split("/Training/", 1)[1]: (row["reason"], row["error"]) for row in table.to_pylist()}


def embedded_paths(layout) -> set[str]:
    table = ds.dataset(layout.embeddings[len("file://"):], format="parquet").to_table(columns=["path"])
    return {path.split("/Training/", 1)[1] for path in table["path"].to_pylist()}


def test_an_image_that_kills_its_python_worker_is_quarantined_and_the_run_goes_on(spark, onnx_model, sample_root, tmp_path):
    why_not = MemoryCgroup.available(str(tmp_path))
    if why_not:
        pytest.skip(why_not)
    from fruit_assets.cli.sample import write_sample_dataset

    write_poison(os.path.join(sample_root, "Training", POISON))
    layout = DataLayout.at(sample_root)
    others = {f"{c}/{f}" for c in os.listdir(f"{sample_root}/Training") for f in os.listdir(f"{sample_root}/Training/{c}")} - {POISON}
    cgroup = MemoryCgroup(str(tmp_path))
    sc = spark.sparkContext
    python = sc.pythonExec
    try:
        # Python workers started from now on (a daemon of their own: the executable differs) live in
        # the cgroup. Loaded with the model (both task slots), they hold what the limit then allows,
        # plus 100 MB: room for any image Fruits-360 holds, not for the poison's ~400 MB.
        sc.pythonExec = cgroup.python_wrapper
        write_sample_dataset(str(tmp_path / "warm"), 2, 4, seed=1)
        assert embed(spark, DataLayout.at(str(tmp_path / "warm")), onnx_model, "warm0001").embedded == 8
        assert len(cgroup.pids()) >= 3  # the daemon and a worker per slot
        cgroup.set_limit(cgroup.peak() + 100 * 1024**2)

        first = embed(spark, layout, onnx_model, "run00001")
        kills = cgroup.oom_kills()
        second = embed(spark, layout, onnx_model, "run00002")
    finally:
        sc.pythonExec = python
        cgroup.remove()

    assert kills >= 2  # the kernel killed workers: the worker decoding it, alone, twice at least
    assert (first.images, first.embedded, first.quarantined, first.featurized) == (37, 36, 1, 37)
    reason, error = quarantine(layout)[POISON]
    assert reason == "worker_killed" and "died 2 times while decoding it alone" in error
    assert embedded_paths(layout) == others
    # Remembered: nothing is read again, no worker dies.
    assert (second.featurized, second.reused, second.quarantined) == (0, 37, 1)
    assert quarantine(layout) == {POISON: (reason, error)}


DRIVER = """
import json, sys
from fruit_assets.featurize.engines import InferenceModel
from fruit_assets.layout import DataLayout
from fruit_assets.spark_jobs.session import SparkSettings, build_spark_session
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.manifest import build_manifests, discover_classes

root, model_file, fingerprint, limit = sys.argv[1:]
# Two malloc arenas: each thread's own would reserve 64 MB of the address space RLIMIT_AS counts,
# and how many a worker makes varies from run to run.
spark = build_spark_session(SparkSettings(master="local[2]", app_name="poison", conf={
    "spark.executor.pyspark.memory": limit, "spark.executorEnv.MALLOC_ARENA_MAX": "2"}))
model = InferenceModel("onnxruntime", fingerprint, "test", open(model_file, "rb").read())
layout = DataLayout.at(root)
classes = discover_classes(layout)
build_manifests(layout, classes)
for token in ("run00001", "run00002"):
    r = build_embeddings(spark, layout, classes, model, token)
    print("REPORT", json.dumps([r.images, r.embedded, r.quarantined, r.featurized, r.reused]), flush=True)
jobs = spark.sparkContext._jsc.sc().statusStore().jobsList(None)
print("FAILED_TASKS", sum(int(jobs.apply(i).numFailedTasks()) for i in range(jobs.size())))
spark.stop()
"""


def test_an_image_over_the_python_worker_memory_limit_is_quarantined_as_out_of_memory(onnx_model, sample_root, tmp_path):
    """spark.executor.pyspark.memory sets RLIMIT_AS for every Python worker (local mode too): past
    it, allocations raise MemoryError, measured here not always in the decode that exhausted the
    limit (numpy's preprocessing, ONNX Runtime or Arrow in the same worker as often): the task
    fails, and its images are run again one at a time in a fresh worker, where the poison's own
    decode raises it. A separate driver: the limit is set when a Spark application starts."""
    write_poison(os.path.join(sample_root, "Training", POISON))
    model_file = tmp_path / "model.onnx"
    model_file.write_bytes(onnx_model.payload)
    # 650 MiB of address space. Measured: a worker embedding the sample reaches 610-730 MiB (four
    # fetch threads; glibc makes do with less when it must, or the task fails and goes image by
    # image), one going image by image 510 MiB; the poison needs ~400 MiB more, alone. At 800 MiB
    # it sometimes fits.
    done = subprocess.run([sys.executable, "-c", DRIVER, sample_root, str(model_file), onnx_model.fingerprint, "650m"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    reports = [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    failed_tasks = int(next(line for line in done.stdout.splitlines() if line.startswith("FAILED_TASKS")).split()[1])

    assert failed_tasks >= 1  # the limit bit
    # images, embedded, quarantined, featurized, reused
    assert reports == [[37, 36, 1, 37, 0], [37, 36, 1, 0, 37]]
    layout = DataLayout.at(sample_root)
    reason, error = quarantine(layout)[POISON]
    assert reason == "out_of_memory" and "MemoryError decoding it alone" in error
    assert POISON not in embedded_paths(layout) and len(embedded_paths(layout)) == 36
