"""Feature quality over real embeddings of the sample dataset: the review of new images, the
separability of full and reduced features, the pictures of flagged images."""

import os
import shutil

import pyarrow.parquet as pq
import pytest

from fruit_assets.layout import DataLayout
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.manifest import build_manifests
from fruit_assets.steps.pca import fit_pca
from fruit_assets.steps.review import REVIEW_SCHEMA, flagged_images, measure_separability, review_new_images
from fruit_assets.storage import open_store

CLASSES = ["Apple Red 1", "Banana", "Pepper Red"]


def embed(spark, layout, model, token):
    build_manifests(layout, CLASSES)
    return build_embeddings(spark, layout, CLASSES, model, token)


@pytest.fixture(scope="module")
def embedded(spark, sample_source, onnx_model, tmp_path_factory):
    """The sample dataset embedded once (every image new) and its PCA fit; the tests only read it,
    apart from the review tables, which each review rewrites whole."""
    root = tmp_path_factory.mktemp("review") / "data"
    shutil.copytree(os.path.join(sample_source, "Training"), root / "Training")
    layout = DataLayout.at(str(root))
    report = embed(spark, layout, onnx_model, "review01")
    assert report.embedded == 36
    return layout, report, fit_pca(spark, layout, CLASSES, 0.9)


def review_table(layout, fruit_class):
    uri = layout.review_table(fruit_class)
    return pq.read_table(uri[len("file://"):]) if open_store(uri).exists(uri) else None


def test_each_class_that_got_images_is_reviewed_into_its_own_table(spark, embedded):
    layout, embedding_report, _pca = embedded
    featurized = {c: counts.featurized for c, counts in embedding_report.per_class.items()}
    assert featurized == {"Apple Red 1": 12, "Banana": 12, "Pepper Red": 12}
    report = review_new_images(spark, layout, {**featurized, "Pepper Red": 0}, CLASSES)
    assert report.checked == {"Apple Red 1": 12, "Banana": 12} and report.num_checked == 24
    assert report.modes == {"Apple Red 1": "leave-one-out", "Banana": "leave-one-out"}  # nothing earlier
    tables = {c: review_table(layout, c) for c in ["Apple Red 1", "Banana"]}
    for fruit_class, table in tables.items():
        assert table is not None and table.schema == REVIEW_SCHEMA
        assert set(table["fruit_class"].to_pylist()) <= {fruit_class}
        assert set(table["nearest_class"].to_pylist()) <= set(CLASSES) - {fruit_class}
    assert sum(t.num_rows for t in tables.values()) == len(report.flagged)
    ratios = [row["distance"] / row["threshold"] for row in report.flagged]
    assert ratios == sorted(ratios, reverse=True) and all(r > 1 for r in ratios)
    assert review_table(layout, "Pepper Red") is None  # not checked: no table


def test_nothing_featurized_is_nothing_reviewed(spark, embedded):
    layout, _report, _pca = embedded
    report = review_new_images(spark, layout, {"Apple Red 1": 0, "Banana": 0}, CLASSES)
    assert report.checked == {} and report.num_checked == 0 and report.flagged == []


def test_an_image_of_another_class_uploaded_later_is_flagged_naming_that_class(spark, sample_root, onnx_model):
    layout = DataLayout.at(sample_root)
    embed(spark, layout, onnx_model, "review11")
    stray = os.path.join(sample_root, "Training", "Banana", "upload_100.jpg")
    shutil.copy(os.path.join(sample_root, "Training", "Pepper Red", "0_100.jpg"), stray)
    shutil.copy(os.path.join(sample_root, "Training", "Banana", "0_100.jpg"),
                os.path.join(sample_root, "Training", "Banana", "another_100.jpg"))
    second = embed(spark, layout, onnx_model, "review12")
    # Copies of existing images: found by content, not embedded again, but new to Banana all the same.
    assert second.per_class["Banana"].moved == 2 and second.featurized == 0

    report = review_new_images(spark, layout, {c: n.featurized + n.moved for c, n in second.per_class.items()}, CLASSES)
    assert report.checked == {"Banana": 2} and report.modes == {"Banana": "against earlier images"}
    assert [row["path"] for row in report.flagged] == [f"file://{stray}"]
    [row] = report.flagged
    assert row["nearest_class"] == "Pepper Red" and row["mode"] == "against earlier images"
    assert review_table(layout, "Banana").to_pylist() == report.flagged


def test_separability_on_a_bounded_sample_of_the_embeddings(spark, embedded):
    layout, _report, pca = embedded
    report = measure_separability(spark, layout, CLASSES, pca)
    result = report.result
    assert result is not None and report.why_not == ""
    assert 0 < result.sample_size <= 36 and result.held_out < result.sample_size and result.k == pca.k
    for accuracy in (result.full, result.reduced):
        assert 0.0 <= accuracy.overall <= 1.0
        assert set(accuracy.per_class) <= set(CLASSES)
    assert report.sample_per_class == 200  # max(10, min(200, 10_000 // 3))
    small = measure_separability(spark, layout, CLASSES, pca, max_sample=30)
    assert small.sample_per_class == 10 and small.result.sample_size <= 36


def test_the_sample_the_projection_takes_is_the_one_a_pass_of_its_own_would_take(spark, embedded):
    """After a new basis the projection reads every embedding: the separability sample comes with
    that pass, the same rows, vectors and accuracies as a second pass would give."""
    import numpy as np

    from fruit_assets.spark_jobs.quality import sample_embeddings
    from fruit_assets.steps.reduce import build_reduced_features
    from fruit_assets.steps.review import separability_rates
    from fruit_assets.storage.published_files import class_files

    layout, _report, pca = embedded
    rates, per_class = separability_rates(layout, CLASSES, max_sample=30)
    assert per_class == 10 and all(0 < rate < 1 for rate in rates.values())  # a real subsample
    projected, _model = build_reduced_features(spark, layout, CLASSES, "review-r1", sample_rates=rates)
    assert projected.sample.rates == rates

    paths, labels, vectors = sample_embeddings(spark, class_files(layout.embeddings, CLASSES), rates)
    taken = [(c, p, v) for c, ps, data in projected.sample.rows
             for p, v in zip(ps, np.frombuffer(data, np.float32).reshape(len(ps), -1))]
    assert [p for _c, p, _v in taken] == paths and [c for c, _p, _v in taken] == labels and len(paths) < 36
    np.testing.assert_array_equal(np.stack([v for *_rest, v in taken]), vectors)

    own = measure_separability(spark, layout, CLASSES, pca, max_sample=30)
    with_taken = measure_separability(spark, layout, CLASSES, pca, max_sample=30, taken=projected.sample)
    assert (own.sample_from, with_taken.sample_from) == ("embeddings", "projection")
    for mine, theirs in ((own.result.full, with_taken.result.full), (own.result.reduced, with_taken.result.reduced)):
        assert (mine.overall, mine.per_class) == (theirs.overall, theirs.per_class)
    # Taken at other rates (here the default sample size): not this sample, a pass of its own.
    assert measure_separability(spark, layout, CLASSES, pca, taken=projected.sample).sample_from == "embeddings"


def test_separability_needs_two_classes(spark, embedded):
    layout, _report, pca = embedded
    single = measure_separability(spark, layout, ["Banana"], pca)
    assert single.result is None and single.why_not == "needs at least two classes"
    without_manifest = measure_separability(spark, layout, ["Banana", "Kiwi"], pca)  # Kiwi: never listed
    assert without_manifest.result is None and without_manifest.why_not == "needs at least two classes"


def test_flagged_images_are_the_ones_still_readable(embedded):
    layout, _report, _pca = embedded
    existing = f"{layout.training}/Banana/3_100.jpg"
    rows = [{"path": existing, "distance": 2.0}, {"path": f"{layout.training}/Banana/deleted_100.jpg"}]
    [(row, data)] = flagged_images(rows)
    assert row is rows[0]
    assert data == open_store(existing).read_bytes(existing) and data[:2] == b"\xff\xd8"
    assert flagged_images([]) == []
