"""Steps run again on unchanged data keep what is published, and the command line tells which
classes changed since the publication (real Spark, real files and the real S3 server)."""

from fruit_assets.layout import DataLayout
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.manifest import build_manifests
from fruit_assets.steps.pca import fit_pca
from fruit_assets.steps.publication import changed_since_publication
from fruit_assets.steps.reduce import build_reduced_features
from fruit_assets.storage import open_store
from fruit_assets_tests.harness.images import fresh_jpeg
from fruit_assets_tests.steps.test_ghosts import publish, root

__all__ = ["root"]  # the fixture, shared with test_ghosts


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
