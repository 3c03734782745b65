"""Class centroids kept with the digest of the files they were computed from: a class whose files
did not change is not read again (real Spark, real files)."""

import numpy as np

from fruit_assets.layout import DataLayout
from fruit_assets.spark_jobs.quality import class_centroids as computed_centroids
from fruit_assets.steps.centroids import centroids_uri, class_centroids
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.manifest import build_manifests
from fruit_assets.storage import open_store
from fruit_assets.storage.parquet_io import read_table, write_table
from fruit_assets.storage.published_files import class_files, dataset_files
from fruit_assets_tests.harness.images import fresh_jpeg

CLASSES = ["Apple Red 1", "Banana", "Pepper Red"]


def test_only_classes_whose_files_changed_are_read_again(spark, sample_root, onnx_model):
    layout = DataLayout.at(sample_root)
    build_manifests(layout, CLASSES)
    build_embeddings(spark, layout, CLASSES, onnx_model, "run-embed")
    expected = computed_centroids(spark, class_files(layout.embeddings, CLASSES))

    first = class_centroids(spark, layout, CLASSES)
    assert set(first) == set(CLASSES)
    for fruit_class in CLASSES:
        np.testing.assert_array_equal(first[fruit_class], expected[fruit_class])
    assert open_store(centroids_uri(layout)).exists(centroids_uri(layout))

    # Served from the file: a published file altered in place (never done by the product; files
    # are immutable) is not read, so its class's centroid is the kept one.
    [banana_file] = dataset_files(layout.embeddings, "Banana")[:1]
    table = read_table(banana_file)
    write_table(banana_file, table.slice(0, 1))
    again = class_centroids(spark, layout, CLASSES)
    np.testing.assert_array_equal(again["Banana"], expected["Banana"])

    # A class embedded again publishes new files: a new digest, computed from them.
    new_image = f"{layout.training_class('Pepper Red')}/new_1.jpg"
    open_store(new_image).write_bytes(new_image, fresh_jpeg(1))
    build_manifests(layout, ["Pepper Red"])
    build_embeddings(spark, layout, ["Pepper Red"], onnx_model, "run-again")
    after = class_centroids(spark, layout, CLASSES)
    fresh = computed_centroids(spark, class_files(layout.embeddings, ["Pepper Red"]))
    np.testing.assert_array_equal(after["Pepper Red"], fresh["Pepper Red"])
    assert not np.array_equal(after["Pepper Red"], expected["Pepper Red"])
    np.testing.assert_array_equal(after["Apple Red 1"], expected["Apple Red 1"])


def test_an_unreadable_file_of_centroids_is_computed_again(spark, sample_root, onnx_model):
    layout = DataLayout.at(sample_root)
    build_manifests(layout, CLASSES)
    build_embeddings(spark, layout, CLASSES, onnx_model, "run-embed")
    open_store(centroids_uri(layout)).write_bytes(centroids_uri(layout), b"not an npz")
    centroids = class_centroids(spark, layout, CLASSES)
    expected = computed_centroids(spark, class_files(layout.embeddings, CLASSES))
    assert set(centroids) == set(CLASSES)
    for fruit_class in CLASSES:
        np.testing.assert_array_equal(centroids[fruit_class], expected[fruit_class])
