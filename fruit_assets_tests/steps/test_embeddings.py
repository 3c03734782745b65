"""Incremental featurization: pay only for new or changed images (real Spark, real files)."""

import os
import shutil

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds

from fruit_assets.layout import DataLayout
from fruit_assets.steps.manifest import discover_classes
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.manifest import build_manifests
from fruit_assets.steps.pca import fit_pca
from fruit_assets.steps.reduce import build_reduced_features
from fruit_assets.storage.parquet_io import read_tables
from fruit_assets.storage.published_files import dataset_files
from fruit_assets_tests.harness.images import fresh_jpeg
from fruit_assets_tests.steps.test_ghosts import publish


def embed(spark, layout, model, token):
    classes = discover_classes(layout)
    build_manifests(layout, classes)
    return build_embeddings(spark, layout, classes, model, token)


def table(root, folder):
    return ds.dataset(os.path.join(root, folder), format="parquet").to_table().sort_by("path")


def test_only_new_or_changed_images_are_featurized(spark, sample_root, onnx_model, weights_file):
    layout = DataLayout.at(sample_root)
    training = os.path.join(sample_root, "Training")
    banana = os.path.join(training, "Banana")

    first = embed(spark, layout, onnx_model, "run00001")
    assert (first.featurized, first.reused, first.embedded) == (36, 0, 36)
    before = table(sample_root, "embeddings")

    unchanged = embed(spark, layout, onnx_model, "run00002")
    assert (unchanged.featurized, unchanged.reused, unchanged.embedded) == (0, 36, 36)
    after = table(sample_root, "embeddings")
    assert after["path"].to_pylist() == before["path"].to_pylist()
    np.testing.assert_array_equal(np.stack(after["embedding"].to_numpy(zero_copy_only=False)),
                                  np.stack(before["embedding"].to_numpy(zero_copy_only=False)))

    with open(os.path.join(banana, "added_100.jpg"), "wb") as handle:
        handle.write(fresh_jpeg(1))
    added = embed(spark, layout, onnx_model, "run00003")
    assert (added.featurized, added.reused, added.moved, added.embedded) == (1, 36, 0, 37)
    assert added.per_class["Banana"].featurized == 1 and added.per_class["Apple Red 1"].featurized == 0

    with open(os.path.join(banana, "3_100.jpg"), "wb") as handle:  # same name, new content
        handle.write(fresh_jpeg(2))
    modified = embed(spark, layout, onnx_model, "run00004")
    assert (modified.featurized, modified.reused, modified.embedded) == (1, 36, 37)
    rows = table(sample_root, "embeddings")
    assert rows.num_rows == 37 and len(set(rows["path"].to_pylist())) == 37  # replaced, not duplicated

    # Bytes that exist under another path (an image copied or moved in from another class, a file
    # renamed): its embedding is taken as it is, nothing is decoded.
    shutil.copy(os.path.join(training, "Apple Red 1", "0_100.jpg"), os.path.join(banana, "3_100.jpg"))
    moved = embed(spark, layout, onnx_model, "run00004b")
    assert (moved.featurized, moved.reused, moved.moved, moved.embedded) == (0, 37, 1, 37)
    rows = table(sample_root, "embeddings")
    assert rows.num_rows == 37 and len(set(rows["path"].to_pylist())) == 37
    by_path = dict(zip(rows["path"].to_pylist(), rows["embedding"].to_numpy(zero_copy_only=False)))
    apple = by_path[f"file://{training}/Apple Red 1/0_100.jpg"]
    np.testing.assert_array_equal(by_path[f"file://{banana}/3_100.jpg"], apple)

    os.remove(os.path.join(banana, "5_100.jpg"))
    deleted = embed(spark, layout, onnx_model, "run00005")
    assert (deleted.featurized, deleted.reused, deleted.embedded) == (0, 36, 36)
    assert f"file://{banana}/5_100.jpg" not in table(sample_root, "embeddings")["path"].to_pylist()
    classes = discover_classes(layout)
    fit_pca(spark, layout, classes, 0.9)
    build_reduced_features(spark, layout, classes, "run00006")
    reduced_paths = table(sample_root, "output/resultats_features_parquet")["path"].to_pylist()
    assert len(reduced_paths) == 36 and f"file://{banana}/5_100.jpg" not in reduced_paths

    # Files per class stay bounded: one carried-forward file plus this run's new ones.
    assert len(os.listdir(os.path.join(sample_root, "embeddings", "fruit_class=Banana"))) <= 3


def test_other_weights_mean_everything_is_featurized_again(spark, sample_root, onnx_model):
    from fruit_assets.models.build import inference_model

    layout = DataLayout.at(sample_root)
    embed(spark, layout, onnx_model, "run00011")
    other = embed(spark, layout, inference_model(layout, "onnxruntime", "random", 99).model, "run00012")
    assert (other.featurized, other.reused, other.remodeled) == (36, 0, 36)


def test_switching_the_engine_embeds_again_and_never_mixes(spark, sample_root, onnx_model, tensorflow_model):
    import pyarrow.parquet as pq

    layout = DataLayout.at(sample_root)

    def engines():
        folder = os.path.join(sample_root, "embeddings")
        return {pq.read_schema(os.path.join(d, f)).metadata[b"fruit_assets.engine"].decode()
                for d, _s, files in os.walk(folder) for f in files}

    first = embed(spark, layout, onnx_model, "run00021")
    assert first.featurized == 36 and engines() == {"onnxruntime"}
    switched = embed(spark, layout, tensorflow_model, "run00022")
    assert (switched.featurized, switched.reused, switched.remodeled) == (36, 0, 36)
    assert engines() == {"tensorflow"}
    unchanged = embed(spark, layout, tensorflow_model, "run00023")
    assert (unchanged.featurized, unchanged.reused, unchanged.remodeled) == (0, 36, 0)
    back = embed(spark, layout, onnx_model, "run00024")
    assert (back.featurized, back.remodeled) == (36, 36) and engines() == {"onnxruntime"}


def test_a_run_records_the_executor_cpu_seconds_of_its_featurization(spark, sample_root, onnx_model):
    """CPU-seconds: the Python workers' (measured in the tasks) + the executor JVMs' (Spark's task
    metrics, from its status store); a run that featurizes nothing records 0 CPU-seconds and no rate."""
    from fruit_assets.assets.embeddings import embedding_metadata

    layout = DataLayout.at(sample_root)
    first = embed(spark, layout, onnx_model, "runcpu01")
    assert first.featurized == 36
    assert first.python_cpu_seconds > 0 and first.jvm_cpu_seconds > 0 and first.task_seconds > 0
    assert first.executor_cpu_seconds == first.python_cpu_seconds + first.jvm_cpu_seconds
    # The work is the Python workers': decoding and inference. The JVM task thread mostly waits.
    assert first.python_cpu_seconds > 0.5 * first.executor_cpu_seconds
    assert first.images_per_cpu_second == 36 / first.executor_cpu_seconds
    print(f"36 images: {first.executor_cpu_seconds:.2f} CPU-s (Python {first.python_cpu_seconds:.2f}, "
          f"JVM {first.jvm_cpu_seconds:.2f}), task {first.task_seconds:.2f} s, step {first.seconds:.2f} s: "
          f"{first.images_per_cpu_second:.2f} images per CPU-second")

    metadata = embedding_metadata(first, onnx_model, "local[2]", None)
    assert metadata["executor_cpu_seconds"] == round(first.executor_cpu_seconds, 3)
    assert metadata["images_per_cpu_second"] == round(first.images_per_cpu_second, 3)
    assert {"python_cpu_seconds", "jvm_cpu_seconds", "task_seconds"} <= set(metadata)
    assert "images featurized by this run / executor_cpu_seconds" in metadata["executor_cpu"].value

    again = embed(spark, layout, onnx_model, "runcpu02")
    assert again.featurized == 0
    assert (again.executor_cpu_seconds, again.python_cpu_seconds, again.jvm_cpu_seconds, again.task_seconds) == (0, 0, 0, 0)
    assert again.images_per_cpu_second is None
    metadata = embedding_metadata(again, onnx_model, "local[2]", None)
    assert metadata["executor_cpu_seconds"] == 0 and "images_per_cpu_second" not in metadata


def test_the_embedding_of_identical_bytes_is_taken_from_the_first_file_that_holds_it(spark, sample_root, onnx_model):
    """Two classes hold the same image, then a third copy arrives: one row, the same vector."""
    layout = DataLayout.at(sample_root)
    banana = os.path.join(sample_root, "Training", "Banana")
    with open(os.path.join(banana, "0_100.jpg"), "rb") as handle:
        data = handle.read()
    with open(os.path.join(sample_root, "Training", "Pepper Red", "twin.jpg"), "wb") as handle:
        handle.write(data)
    publish(spark, layout, onnx_model, "first001")
    with open(os.path.join(sample_root, "Training", "Apple Red 1", "third.jpg"), "wb") as handle:
        handle.write(data)
    report, _, _ = publish(spark, layout, onnx_model, "second01")
    assert (report.featurized, report.moved) == (0, 1)
    table = read_tables(dataset_files(layout.embeddings, "Apple Red 1"))
    third = table.filter(pc.equal(table["path"], f"file://{sample_root}/Training/Apple Red 1/third.jpg"))
    assert third.num_rows == 1
    banana_rows = read_tables(dataset_files(layout.embeddings, "Banana"))
    original = banana_rows.filter(pc.equal(banana_rows["path"], f"file://{banana}/0_100.jpg"))
    assert third["embedding"].to_pylist() == original["embedding"].to_pylist()
