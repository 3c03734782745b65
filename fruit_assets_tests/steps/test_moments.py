"""The PCA's kept moments: a refit after a change reads no embedding, and fits what a pass over
every embedding would (real Spark; local files and the real S3 server)."""

import numpy as np
import pytest

from fruit_assets.layout import DataLayout
from fruit_assets.pca import Moments
from fruit_assets.steps import moments as kept
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.manifest import build_manifests, discover_classes
from fruit_assets.steps.pca import fit_pca_reporting
from fruit_assets.storage import open_store
from fruit_assets.storage.parquet_io import column_matrix, read_tables
from fruit_assets.storage.versions import current_version
from fruit_assets_tests.harness.images import fresh_jpeg


@pytest.fixture(params=["local", "s3"])
def root(request, sample_root):
    return request.getfixturevalue("s3_sample_root") if request.param == "s3" else "file://" + sample_root


def embed(spark, layout, model, token, classes=None):
    classes = classes or discover_classes(layout)
    build_manifests(layout, classes)
    return build_embeddings(spark, layout, classes, model, token)


def rows_now(layout) -> np.ndarray:
    return column_matrix(read_tables(current_version(layout.root).uris("embeddings"))["embedding"], 1280)


def test_a_refit_after_new_and_deleted_images_reads_no_embedding_and_fits_what_a_pass_would(spark, root, onnx_model):
    layout = DataLayout.at(root)
    store = open_store(root)
    classes = discover_classes(layout)
    embed(spark, layout, onnx_model, "first001")
    first = fit_pca_reporting(spark, layout, classes, 0.9)
    assert first.moments_from == "embeddings" and first.embedding_files_read == len(current_version(root).uris("embeddings"))

    store.write_bytes(f"{root}/Training/Banana/new_1.jpg", fresh_jpeg(1))
    store.delete([f"{root}/Training/Pepper Red/0_100.jpg"])
    report = embed(spark, layout, onnx_model, "second01", ["Banana", "Pepper Red"])
    assert report.featurized == 1 and report.moments_updated is True

    # The kept moments are those of the rows published now, to float64 rounding.
    saved, updates = kept.saved_moments(layout, current_version(root))
    direct = Moments.of(rows_now(layout))
    assert updates == 1 and saved.count == direct.count == 36
    np.testing.assert_allclose(saved.mean, direct.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(saved.scatter, direct.scatter, atol=1e-9 * np.abs(direct.scatter).max())

    def no_spark():
        raise AssertionError("a fit from kept moments needs no Spark session")

    refit = fit_pca_reporting(no_spark, layout, classes, 0.9)
    assert (refit.moments_from, refit.embedding_files_read) == ("saved", 0)
    assert refit.model.num_samples == 36 and refit.model.fingerprint != first.model.fingerprint

    # What a pass over every embedding fits (the moments file removed, so the fit must read them).
    store.delete_prefix(kept.moments_folder(layout))
    passed = fit_pca_reporting(spark, layout, classes, 0.9)
    assert passed.moments_from == "embeddings"
    assert passed.model.k == refit.model.k
    np.testing.assert_allclose(refit.model.mean, passed.model.mean, atol=1e-9)
    np.testing.assert_allclose(np.abs(refit.model.components @ passed.model.components.T).diagonal(), 1.0, atol=1e-6)
    # The pass saved the moments again: only that one file is kept.
    assert [i.uri.rsplit("/", 1)[-1] for i in store.list_objects(kept.moments_folder(layout))] == [
        kept.rows_digest(current_version(root)) + ".npz"]


def test_a_chain_at_its_bound_is_not_extended_and_the_next_fit_reads_everything(spark, sample_root, onnx_model,
                                                                                     monkeypatch):
    """Moments are never taken for rows they do not sum: a change they did not follow (here, a
    chain at its bound) leaves no file under the new rows' name, and the fit reads every embedding.
    (The update before it reads the changed files in Spark tasks, as a round over many classes does.)"""
    layout = DataLayout.at(sample_root)
    classes = discover_classes(layout)
    embed(spark, layout, onnx_model, "first001")
    fit_pca_reporting(spark, layout, classes, 0.9)

    monkeypatch.setattr(kept, "MAX_CHAINED_UPDATES", 1)
    monkeypatch.setattr(kept, "DRIVER_FILES", 0)  # the changed files read by Spark tasks, as for many classes
    open_store(layout.root).write_bytes(f"{layout.root}/Training/Banana/new_1.jpg", fresh_jpeg(1))
    assert embed(spark, layout, onnx_model, "second01", ["Banana"]).moments_updated is True  # chain: 0 -> 1
    saved, direct = kept.saved_moments(layout, current_version(layout.root))[0], Moments.of(rows_now(layout))
    assert saved.count == direct.count == 37
    np.testing.assert_allclose(saved.scatter, direct.scatter, atol=1e-9 * np.abs(direct.scatter).max())
    open_store(layout.root).write_bytes(f"{layout.root}/Training/Banana/new_2.jpg", fresh_jpeg(2))
    assert embed(spark, layout, onnx_model, "third001", ["Banana"]).moments_updated is False  # at the bound
    assert kept.saved_moments(layout, current_version(layout.root)) is None
    fit = fit_pca_reporting(spark, layout, classes, 0.9)
    assert fit.moments_from == "embeddings" and fit.model.num_samples == 38
    assert kept.saved_moments(layout, current_version(layout.root))[1] == 0  # a new chain starts
