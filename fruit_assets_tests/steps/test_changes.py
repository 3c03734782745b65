"""Change detection for the sensor, and the dataset's lifecycle: a class renamed, a class deleted,
a mass deletion refused (real Spark, real files and the real S3 server)."""

import os

import numpy as np
import pyarrow.compute as pc
import pytest

from fruit_assets.layout import DataLayout
from fruit_assets.steps.changes import (
    MassDeletionError,
    changed_since_publication,
    contiguous_ranges,
    decode_cursor,
    diff,
    encode_cursor,
    output_classes,
    remove_ghost_classes,
    spanning_ranges,
)
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.manifest import build_manifests, discover_classes
from fruit_assets.steps.pca import fit_pca, fit_pca_reporting
from fruit_assets.steps.publication import published_entries
from fruit_assets.steps.reduce import build_reduced_features
from fruit_assets.storage import open_store
from fruit_assets.storage.commit import dataset_files
from fruit_assets.storage.parquet_io import read_tables
from fruit_assets_tests.harness.images import fresh_jpeg


def test_contiguous_ranges_cover_exactly_the_selection():
    order = ["a", "b", "c", "d", "e"]
    assert contiguous_ranges(order, order) == [("a", "e")]
    assert contiguous_ranges(["b", "c", "e"], order) == [("b", "c"), ("e", "e")]
    assert contiguous_ranges([], order) == []


def test_spanning_ranges_never_cross_a_partition_whose_folder_is_gone():
    order = ["a", "b", "c", "d", "e"]
    assert spanning_ranges(["a", "e"], order) == [("a", "e")]
    assert spanning_ranges(["a", "e"], order, barriers={"c"}) == [("a", "a"), ("e", "e")]
    assert spanning_ranges(["a", "b", "e"], order, barriers={"c", "d"}) == [("a", "b"), ("e", "e")]
    assert spanning_ranges(["b"], order, barriers={"a", "e"}) == [("b", "b")]
    assert spanning_ranges([], order, barriers={"c"}) == []


def test_diff_and_cursor_round_trip():
    changes = diff({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"})
    assert (changes.new, changes.changed, changes.deleted) == (["d"], ["b"], ["c"])
    assert changes.to_run == ["b", "d"]
    assert decode_cursor(encode_cursor({"x y": "f"})) == {"x y": "f"}
    assert decode_cursor(None) == {} and decode_cursor('{"v": 0, "classes": {"a": "1"}}') == {}


def publish(spark, layout, model, token, incremental=True):
    """What one `fruit-assets materialize` does, step by step: every class on Training/."""
    classes = discover_classes(layout)
    build_manifests(layout, classes)
    report = build_embeddings(spark, layout, classes, model, token, incremental=incremental)
    removed = remove_ghost_classes(layout, spark=spark).removed  # as pca_model does
    fit = fit_pca_reporting(spark, layout, classes, 0.9)
    build_reduced_features(spark, layout, classes, token + "-r")
    return report, removed, fit


def published(layout, dataset, column):
    """{(class, image name within the dataset): vector} of a published dataset."""
    classes = sorted(output_classes(layout))
    table = read_tables([uri for c in classes for uri in dataset_files(dataset, c)])
    names = [p.split("/Training/", 1)[1] for p in table["path"].to_pylist()]
    vectors = table[column].to_numpy(zero_copy_only=False)
    return {(c, n): v for c, n, v in zip(table["fruit_class"].to_pylist(), names, vectors)}


def move_folder(root, old, new):
    store = open_store(root)
    for info in list(store.list_objects(f"{root}/Training/{old}")):
        store.write_bytes(f"{root}/Training/{new}" + info.uri[len(f"{root}/Training/{old}"):], store.read_bytes(info.uri))
    store.delete_prefix(f"{root}/Training/{old}")


@pytest.fixture(params=["local", "s3"])
def root(request, sample_root):
    return request.getfixturevalue("s3_sample_root") if request.param == "s3" else "file://" + sample_root


def test_a_renamed_class_reuses_its_embeddings_and_a_deleted_one_leaves_no_trace(spark, root, onnx_model, tmp_path):
    layout = DataLayout.at(root)
    publish(spark, layout, onnx_model, "first001")

    move_folder(root, "Pepper Red", "Pepper Red Renamed")
    open_store(root).delete_prefix(f"{root}/Training/Apple Red 1")
    report, removed, fit = publish(spark, layout, onnx_model, "second01")
    assert report.featurized == 0 and report.per_class["Pepper Red Renamed"].moved == 12
    assert removed == ["Apple Red 1", "Pepper Red"]
    # The refit read no embedding: the moments lost the removed rows and gained the renamed ones.
    assert report.moments_updated and (fit.moments_from, fit.embedding_files_read) == ("saved", 0)
    assert output_classes(layout) == {"Banana", "Pepper Red Renamed"}
    assert set(published_entries(layout)) == {"Banana", "Pepper Red Renamed"}

    # Equal to a from-scratch run over the new tree (no carry-forward, another root).
    reference = DataLayout.at(str(tmp_path / "reference"))
    for info in open_store(root).list_objects(f"{root}/Training"):
        open_store(reference.root).write_bytes(reference.root + info.uri[len(root):], open_store(root).read_bytes(info.uri))
    publish(spark, reference, onnx_model, "scratch1", incremental=False)
    for dataset, column, tolerance in (("embeddings", "embedding", 0.0), ("reduced_features", "features", 1e-4)):
        ours, theirs = published(layout, getattr(layout, dataset), column), published(reference, getattr(reference, dataset), column)
        assert sorted(ours) == sorted(theirs) and len(ours) == 24, dataset
        for key, vector in theirs.items():
            np.testing.assert_allclose(ours[key], vector, rtol=tolerance, atol=tolerance, err_msg=f"{dataset} {key}")


def test_losing_most_classes_at_once_or_all_of_them_is_refused_and_changes_nothing(spark, sample_root, onnx_model):
    layout = DataLayout.at(sample_root)
    publish(spark, layout, onnx_model, "first001")

    def everything():
        return sorted((d, sorted(os.listdir(os.path.join(d, f)))) for d, dirs, _f in os.walk(sample_root) for f in dirs
                      if f.startswith("fruit_class="))

    before = everything()
    for fruit_class in ("Apple Red 1", "Banana"):
        open_store(layout.root).delete_prefix(layout.training_class(fruit_class))
    with pytest.raises(MassDeletionError, match=r"^2 of 3 classes are gone from .*: refusing to delete their outputs"):
        remove_ghost_classes(layout)
    open_store(layout.root).delete_prefix(layout.training_class("Pepper Red"))
    with pytest.raises(MassDeletionError, match=r"^no class folders under .*refusing to delete the outputs of 3 classes"):
        remove_ghost_classes(layout)
    assert everything() == before

    removal = remove_ghost_classes(layout, allow_mass_deletion=True)
    assert removal.training == [] and removal.removed == ["Apple Red 1", "Banana", "Pepper Red"]
    assert output_classes(layout) == set() and published_entries(layout) == {}


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


def test_steps_run_again_on_unchanged_data_keep_what_is_published(spark, root, onnx_model):
    """image_embeddings over unchanged classes keeps their files (same names); the PCA is not fit
    again; reduced_features projects and publishes nothing. Then one new image: only then does
    each step do its work again, and every class is projected on the new basis."""
    from fruit_assets.steps.pca import read_pca, unchanged_fit
    from fruit_assets.storage.versions import current_version

    layout = DataLayout.at(root)
    classes = publish(spark, layout, onnx_model, "first001")[0].per_class
    before = current_version(layout.root)
    fitted = read_pca(layout)
    assert unchanged_fit(layout, sorted(classes), 0.9).fingerprint == fitted.fingerprint
    assert unchanged_fit(layout, sorted(classes), 0.95) is None  # another target: a refit

    report = build_embeddings(spark, layout, sorted(classes), onnx_model, "again001")
    assert report.featurized == 0 and report.reused == report.images == 36
    assert sorted(report.up_to_date) == sorted(classes)  # as published: not even read
    after_embeddings = current_version(layout.root)
    assert after_embeddings.number == before.number  # nothing changed: nothing published
    assert unchanged_fit(layout, sorted(classes), 0.9).fingerprint == fitted.fingerprint
    reduced, model = build_reduced_features(spark, layout, sorted(classes), "again001-r")
    assert sorted(reduced.up_to_date) == sorted(classes) and reduced.images == 36
    assert current_version(layout.root).number == after_embeddings.number  # nothing published

    tag = f"{onnx_model.engine}/{onnx_model.fingerprint}"
    assert changed_since_publication(layout, sorted(classes), tag) == []
    assert changed_since_publication(layout, sorted(classes), "tensorflow/" + onnx_model.fingerprint) == sorted(classes)
    new_image = f"{root}/Training/Banana/new_1.jpg"
    open_store(root).write_bytes(new_image, fresh_jpeg(1))
    assert changed_since_publication(layout, sorted(classes), tag) == ["Banana"]
    build_manifests(layout, ["Banana"])
    report = build_embeddings(spark, layout, ["Banana"], onnx_model, "third001")
    assert report.featurized == 1
    assert unchanged_fit(layout, sorted(classes), 0.9) is None  # Banana's embeddings changed
    refit = fit_pca(spark, layout, sorted(classes), 0.9)
    assert refit.fingerprint != fitted.fingerprint
    reduced, _ = build_reduced_features(spark, layout, ["Banana"], "third001-r")
    assert reduced.up_to_date == [] and sorted(reduced.per_class) == sorted(classes)  # new basis: all of them
    again, _ = build_reduced_features(spark, layout, ["Apple Red 1"], "third002-r")
    assert again.up_to_date == ["Apple Red 1"]
