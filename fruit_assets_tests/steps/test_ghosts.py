"""The dataset's lifecycle: a class renamed, a class deleted, a mass deletion refused (real Spark,
real files and the real S3 server)."""

import os

import numpy as np
import pytest

from fruit_assets.layout import DataLayout
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.ghosts import MassDeletionError, output_classes, remove_ghost_classes
from fruit_assets.steps.manifest import build_manifests, discover_classes
from fruit_assets.steps.pca import fit_pca_reporting
from fruit_assets.steps.publication import published_entries
from fruit_assets.steps.reduce import build_reduced_features
from fruit_assets.storage import open_store
from fruit_assets.storage.published_files import dataset_files
from fruit_assets.storage.parquet_io import read_tables


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
