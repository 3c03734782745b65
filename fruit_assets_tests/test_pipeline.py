"""Incremental featurization: pay only for new or changed images (real Spark, real files)."""

import os
import shutil

import numpy as np
import pyarrow.dataset as ds

from fruit_assets.layout import DataLayout
from fruit_assets.manifest import discover_classes
from fruit_assets.pipeline import build_embeddings, build_manifests, build_reduced_features, fit_pca


def embed(spark, layout, weights, token):
    classes = discover_classes(layout)
    build_manifests(layout, classes)
    return build_embeddings(spark, layout, classes, weights, token)


def table(root, folder):
    return ds.dataset(os.path.join(root, folder), format="parquet").to_table().sort_by("path")


def test_only_new_or_changed_images_are_featurized(spark, sample_root, model_weights, weights_file):
    layout = DataLayout.at(sample_root)
    training = os.path.join(sample_root, "Training")
    banana = os.path.join(training, "Banana")

    first = embed(spark, layout, model_weights, "run00001")
    assert (first.featurized, first.reused, first.embedded) == (36, 0, 36)
    before = table(sample_root, "embeddings")

    unchanged = embed(spark, layout, model_weights, "run00002")
    assert (unchanged.featurized, unchanged.reused, unchanged.embedded) == (0, 36, 36)
    after = table(sample_root, "embeddings")
    assert after["path"].to_pylist() == before["path"].to_pylist()
    np.testing.assert_array_equal(np.stack(after["embedding"].to_numpy(zero_copy_only=False)),
                                  np.stack(before["embedding"].to_numpy(zero_copy_only=False)))

    shutil.copy(os.path.join(training, "Pepper Red", "0_100.jpg"), os.path.join(banana, "added_100.jpg"))
    added = embed(spark, layout, model_weights, "run00003")
    assert (added.featurized, added.reused, added.embedded) == (1, 36, 37)
    assert added.per_class["Banana"].featurized == 1 and added.per_class["Apple Red 1"].featurized == 0

    shutil.copy(os.path.join(training, "Apple Red 1", "0_100.jpg"), os.path.join(banana, "3_100.jpg"))  # same name, new content
    modified = embed(spark, layout, model_weights, "run00004")
    assert (modified.featurized, modified.reused, modified.embedded) == (1, 36, 37)
    rows = table(sample_root, "embeddings")
    assert rows.num_rows == 37 and len(set(rows["path"].to_pylist())) == 37  # replaced, not duplicated
    by_path = dict(zip(rows["path"].to_pylist(), rows["embedding"].to_numpy(zero_copy_only=False)))
    apple = by_path[f"file://{training}/Apple Red 1/0_100.jpg"]
    np.testing.assert_allclose(by_path[f"file://{banana}/3_100.jpg"], apple, rtol=1e-5, atol=1e-6)

    os.remove(os.path.join(banana, "5_100.jpg"))
    deleted = embed(spark, layout, model_weights, "run00005")
    assert (deleted.featurized, deleted.reused, deleted.embedded) == (0, 36, 36)
    assert f"file://{banana}/5_100.jpg" not in table(sample_root, "embeddings")["path"].to_pylist()
    classes = discover_classes(layout)
    fit_pca(spark, layout, classes, 0.9)
    build_reduced_features(spark, layout, classes, "run00006")
    reduced_paths = table(sample_root, "output/resultats_features_parquet")["path"].to_pylist()
    assert len(reduced_paths) == 36 and f"file://{banana}/5_100.jpg" not in reduced_paths

    # Files per class stay bounded: one carried-forward file plus this run's new ones.
    assert len(os.listdir(os.path.join(sample_root, "embeddings", "fruit_class=Banana"))) <= 3


def test_other_weights_mean_everything_is_featurized_again(spark, sample_root, model_weights):
    from fruit_assets.featurize.model import resolve_weights

    layout = DataLayout.at(sample_root)
    embed(spark, layout, model_weights, "run00011")
    other = embed(spark, layout, resolve_weights("random", random_seed=99), "run00012")
    assert (other.featurized, other.reused) == (36, 0)
