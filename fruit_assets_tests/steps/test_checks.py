"""What the asset checks find, on real committed outputs (real Spark, real files)."""

import pyarrow.parquet as pq

from fruit_assets.layout import DataLayout
from fruit_assets.steps.checks import reduced_checks
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.manifest import build_manifests
from fruit_assets.steps.pca import fit_pca
from fruit_assets.steps.reduce import build_reduced_features
from fruit_assets.storage.published_files import dataset_files
from fruit_assets.storage.schemas import pca_fingerprint_of

CLASSES = ["Apple Red 1", "Banana", "Pepper Red"]


def one_basis(spark, layout, model, projected=CLASSES):
    """The one-basis check over the whole table, after a run that projected ``projected``."""
    outcomes = {o.name: o for o in reduced_checks(spark, layout, projected, model, CLASSES)}
    assert outcomes["reduced_rows_match_embeddings"].passed  # what this run wrote is right
    return outcomes["reduced_features_share_one_basis"]


def test_a_refit_materialized_for_one_class_publishes_every_class_on_the_new_basis(spark, sample_root, onnx_model):
    from fruit_assets.storage import open_store
    from fruit_assets.storage.versions import publish
    from fruit_assets.storage.versions import current_version

    layout = DataLayout.at(sample_root)
    build_manifests(layout, CLASSES)
    build_embeddings(spark, layout, CLASSES, onnx_model, "run-embed")
    first = fit_pca(spark, layout, CLASSES, 0.9)
    build_reduced_features(spark, layout, CLASSES, "run-reduce-1")
    for fruit_class in CLASSES:
        for uri in dataset_files(layout.reduced_features, fruit_class):
            assert pca_fingerprint_of(pq.read_schema(uri[len("file://"):])) == first.fingerprint
    check = one_basis(spark, layout, first)
    assert check.passed and check.metadata == {"pca_fingerprint": first.fingerprint, "classes_checked": 3}
    [old_pepper] = dataset_files(layout.reduced_features, "Pepper Red")
    old_pepper_bytes = open_store(old_pepper).read_bytes(old_pepper)

    # A refit (another target, another k), then a materialization of one partition only, as the UI,
    # GraphQL or a partial backfill would launch it: every published class is projected again.
    refit = fit_pca(spark, layout, CLASSES, 0.5)
    assert refit.k != first.k and refit.fingerprint != first.fingerprint
    report, _ = build_reduced_features(spark, layout, ["Banana"], "run-reduce-2")
    assert set(report.per_class) == set(CLASSES)
    assert current_version(layout.root).pca["fingerprint"] == refit.fingerprint
    for fruit_class in CLASSES:
        for uri in dataset_files(layout.reduced_features, fruit_class):
            assert pca_fingerprint_of(pq.read_schema(uri[len("file://"):])) == refit.fingerprint
    assert one_basis(spark, layout, refit, ["Banana"]).passed

    # A writer that bypasses the step (an older release, a hand-made file) publishes a class on the
    # old basis: the check names it.
    staged = f"{layout.root}/_staging/rogue/reduced/part-00000-rogue.parquet"
    open_store(staged).write_bytes(staged, old_pepper_bytes)
    publish(layout.root, "rogue", {"reduced_features": {"Pepper Red": [staged]}})
    check = one_basis(spark, layout, refit, ["Banana"])
    assert not check.passed
    assert check.metadata["stale_classes"].rows == {"Pepper Red": {"bases": f"{first.fingerprint} (k={first.k})"}}
    assert check.description.startswith("1 of 3 published classes are not projected with the current basis")


def test_the_same_basis_loaded_again_has_the_same_fingerprint(spark, sample_root, onnx_model):
    from fruit_assets.steps.pca import read_pca

    layout = DataLayout.at(sample_root)
    build_manifests(layout, CLASSES)
    build_embeddings(spark, layout, CLASSES, onnx_model, "run-embed")
    fitted = fit_pca(spark, layout, CLASSES, 0.9)
    assert read_pca(layout).fingerprint == fitted.fingerprint


def test_a_projection_that_lost_a_row_fails_the_rows_check(spark, sample_root, onnx_model):
    from fruit_assets.storage.parquet_io import read_table, write_table
    from fruit_assets.storage.versions import publish

    layout = DataLayout.at(sample_root)
    build_manifests(layout, CLASSES)
    build_embeddings(spark, layout, CLASSES, onnx_model, "run-embed")
    model = fit_pca(spark, layout, CLASSES, 0.9)
    build_reduced_features(spark, layout, CLASSES, "run-reduce")
    tables = [read_table(uri) for uri in dataset_files(layout.reduced_features, "Banana")]
    rows_before = sum(len(t) for t in tables)
    tables[0] = tables[0].slice(0, len(tables[0]) - 1)
    staged = [f"{layout.root}/_staging/rogue/reduced/part-{i:05d}-rogue.parquet" for i in range(len(tables))]
    for uri, table in zip(staged, tables):
        write_table(uri, table)
    publish(layout.root, "rogue", {"reduced_features": {"Banana": staged}})
    outcomes = {o.name: o for o in reduced_checks(spark, layout, ["Banana"], model, CLASSES)}
    rows = outcomes["reduced_rows_match_embeddings"]
    assert not rows.passed
    assert rows.metadata["problems"].rows == {"Banana": {
        "reduced_rows": rows_before - 1, "embedding_rows": rows_before, "bad_rows": 0, "same_images": False}}
    assert outcomes["reduced_features_share_one_basis"].passed  # the rows it kept are of the current basis


def test_the_pc_plot_sample_taken_by_the_projection_is_what_a_read_of_the_table_gives(spark, sample_root, onnx_model):
    from fruit_assets.steps.reduce import first_components

    layout = DataLayout.at(sample_root)
    build_manifests(layout, CLASSES)
    build_embeddings(spark, layout, CLASSES, onnx_model, "run-embed")
    fit_pca(spark, layout, CLASSES, 0.9)
    report, _ = build_reduced_features(spark, layout, CLASSES, "run-reduce")
    assert set(report.first_components) == set(CLASSES)
    taken = first_components(spark, layout, CLASSES, report)
    read = first_components(spark, layout, CLASSES)
    assert sorted(zip(*taken)) == sorted(zip(*read)) and len(taken[0]) == 36
    # A class the run did not project (left as published) is read back.
    partial = type(report)(first_components={"Banana": report.first_components["Banana"]})
    assert sorted(zip(*first_components(spark, layout, CLASSES, partial))) == sorted(zip(*read))
