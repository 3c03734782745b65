"""Feature quality end to end: separability on reduced_features, odd uploads flagged by image_embeddings.

On a trained network (the trained_weights_file fixture: ImageNet MobileNetV2, fine-tuned), where
the figures say something about fruit. The calibrated random network separates image statistics,
not fruit: on the same data its 5-NN accuracy was 0.667, not one held-out red apple or red
pepper classified right, and 4 of the 42 bananas flagged as unlike bananas. The "photographs" are
high-detail noise pictures among smooth synthetic fruit, which both networks tell apart.
"""

import io
import os

import numpy as np
import pyarrow.parquet as pq
from dagster import AssetCheckSeverity, materialize
from PIL import Image, ImageFilter

from fruit_assets.assets import image_embeddings, raw_images
from fruit_assets.steps.review import SeparabilityReport
from fruit_assets_tests.assets.test_assets import (
    ALL_ASSETS,
    CLASSES,
    metadata_by_partition,
    metadata_of,
    read,
    resources,
    run_graph,
)
from fruit_assets_tests.harness.markdown import markdown_table


def photograph(seed: int) -> bytes:
    """A high-detail picture: fine texture and edges everywhere, unlike the smooth sample fruit."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).filter(ImageFilter.EDGE_ENHANCE_MORE)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def new_fruit(colour, aspect, seed: int) -> bytes:
    from fruit_assets.featurize.synthetic import jpeg_bytes, render_fruit

    return jpeg_bytes(render_fruit(np.random.default_rng(seed), colour, aspect))


def test_photographs_dropped_into_a_fruit_folder_are_flagged_with_their_class(spark, sample_root, trained_weights_file, dagster_instance):
    training = os.path.join(sample_root, "Training")
    os.makedirs(os.path.join(training, "Photos"))
    for index in range(12):
        with open(os.path.join(training, "Photos", f"photo_{index}.jpg"), "wb") as handle:
            handle.write(photograph(index))
    banana = os.path.join(training, "Banana")
    for index in range(30):  # a class with some history: 42 earlier images to judge new ones by
        with open(os.path.join(banana, f"earlier_{index}.jpg"), "wb") as handle:
            handle.write(new_fruit((235, 205, 60), 2.6, 300 + index))
    classes = CLASSES + ["Photos"]
    embed_run, _pca_run, reduce_run = run_graph(dagster_instance, sample_root, trained_weights_file, classes)

    # First materialization: every class is its own reference (leave-one-out); all 78 reviewed.
    first = metadata_of(embed_run, "image_embeddings")
    assert first["num_new_images_reviewed"] == 78
    # What it flags is borderline red fruit (measured: 3 apples and peppers at 1.02-1.16 times their
    # class limit, each looking more like the other red class), never a banana: 42 of one kind make
    # a tight class (the random network flagged 4 of them, at up to 1.42).
    flagged_first = markdown_table(first["flagged_for_review"]) if first["num_flagged_for_review"] else []
    assert not [row for row in flagged_first if row["class"] in ("Banana", "Photos")], flagged_first
    # Separability figures on reduced_features, with the confusion picture and its check.
    reduced = metadata_of(reduce_run, "reduced_features")
    assert 0 <= reduced["knn_accuracy_full_embeddings"] <= 1 and 0 <= reduced["knn_accuracy_reduced_features"] <= 1
    assert abs(reduced["knn_accuracy_lost_by_pca"] - (reduced["knn_accuracy_full_embeddings"] - reduced["knn_accuracy_reduced_features"])) < 1e-3
    accuracy = {row["class"]: row for row in markdown_table(reduced["knn_accuracy_per_class"])}
    assert set(accuracy) == set(classes)
    # Each partition carries its own class's figures: the table's row.
    own = {c: (round(m["class_knn_accuracy_full_embeddings"], 2), m["class_knn_held_out"])
           for c, m in metadata_by_partition(reduce_run, "reduced_features").items()}
    assert own == {c: (float(accuracy[c]["full"]), int(accuracy[c]["held out"])) for c in classes}
    assert all(0 <= float(row[column]) <= 1 for row in accuracy.values() for column in ("full", "reduced"))
    # 18 images held out by path hash. Measured 0.944 (one of the 4 held-out peppers missed); random
    # weights 0.667. At least 0.85 leaves room for one more miss.
    assert reduced["knn_accuracy_full_embeddings"] >= 0.85, accuracy
    # The two red classes (round apple, slightly taller pepper) are what only a trained network
    # tells apart: 4 of their 5 held-out images right (random weights: none).
    red = [accuracy[c] for c in ("Apple Red 1", "Pepper Red")]
    red_right = sum(float(row["full"]) * int(row["held out"]) for row in red) / sum(int(row["held out"]) for row in red)
    assert red_right >= 0.6, accuracy
    # At target 0.9 the PCA keeps 6 components and loses 11 points on these (peppers again): the
    # check's verdict follows the figures, whichever it is.
    [check] = [e for e in reduce_run.get_asset_check_evaluations() if e.check_name == "pca_keeps_class_separability"]
    assert check.severity == AssetCheckSeverity.WARN and "5-NN accuracy" in check.description
    assert check.passed == (reduced["knn_accuracy_lost_by_pca"] <= 0.02), check.description

    # An upload into Banana: three photographs by mistake, six ordinary new bananas.
    mistakes = [f"file://{banana}/upload_photo_{i}.jpg" for i in range(3)]
    for i, uri in enumerate(mistakes):
        with open(uri[len("file://"):], "wb") as handle:
            handle.write(photograph(100 + i))
    ordinary = [f"file://{banana}/upload_banana_{i}.jpg" for i in range(6)]
    for i, uri in enumerate(ordinary):
        with open(uri[len("file://"):], "wb") as handle:
            handle.write(new_fruit((235, 205, 60), 2.6, 500 + i))
    result = materialize(ALL_ASSETS, selection=[raw_images, image_embeddings], instance=dagster_instance,
                         resources=resources(sample_root, trained_weights_file), partition_key="Banana")
    assert result.success
    meta = metadata_of(result, "image_embeddings")
    assert meta["num_new_images_reviewed"] == 9
    review = pq.read_table(os.path.join(sample_root, "review", "fruit_class=Banana", "flagged.parquet")).to_pylist()
    flagged = {row["path"]: row for row in review}
    ratios = {p: round(r["distance"] / r["threshold"], 2) for p, r in flagged.items()}
    assert set(mistakes) <= set(flagged), review
    assert all(flagged[m]["nearest_class"] == "Photos" and flagged[m]["mode"] == "against earlier images" for m in mistakes)
    assert all(flagged[m]["distance"] > flagged[m]["threshold"] for m in mistakes)
    # Clear cases, not borderline ones: measured 2.48-2.55 times the class limit, and 5.7-8.4 times
    # nearer the photographs' centroid than the bananas' one.
    assert all(ratios[m] >= 1.8 for m in mistakes), ratios
    assert all(flagged[m]["nearest_class_distance"] * 3 <= flagged[m]["distance"] for m in mistakes), review
    # Ordinary new bananas are never flagged, and not by a hair: at most 0.67 of the class limit
    # from the earlier bananas' centroid (random weights: up to 0.99, hence "nearly never" there).
    assert set(flagged) == set(mistakes), ratios
    embeddings = read(sample_root, "embeddings").to_pylist()
    vectors = {row["path"]: np.asarray(row["embedding"], dtype=np.float64) for row in embeddings if row["fruit_class"] == "Banana"}
    centroid = np.mean([v for path, v in vectors.items() if "/upload_" not in path], axis=0)
    limit = flagged[mistakes[0]]["threshold"]
    ordinary_ratios = [float(np.linalg.norm(vectors[uri] - centroid)) / limit for uri in ordinary]
    assert max(ordinary_ratios) <= 0.85, ordinary_ratios
    assert meta["num_flagged_for_review"] == len(review)
    shown = {row["image"]: row for row in markdown_table(meta["flagged_for_review"])}
    assert {uri.rsplit("/", 1)[-1] for uri in flagged} == set(shown)
    assert all(shown[m.rsplit("/", 1)[-1]]["looks more like"] == "Photos" for m in mistakes)
    assert meta["flagged_thumbnails"].startswith("![flagged images](data:image/png;base64,")
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "new_images_look_like_their_class"]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN and check.description.startswith(f"{len(review)} of 9")


def test_the_check_warns_and_names_a_variance_target_that_keeps_separability():
    """The check's wording on a result where the PCA lost the separating direction (geometry as in
    quality/test_separability.py)."""
    from fruit_assets.assets.quality import separability_check
    from fruit_assets.pca.fit import Moments, fit_from_moments
    from fruit_assets.quality.separability import separability

    rng = np.random.default_rng(1)
    vectors = rng.normal(0, 0.05, (400, 6))
    vectors[:, 0] = rng.uniform(0, 100, 400)
    vectors[200:, 1] += 2.0
    model = fit_from_moments(Moments.of(vectors), 0.9)
    result = separability(vectors, ["a"] * 200 + ["b"] * 200, [f"/{i}" for i in range(400)],
                          model.mean, model.basis, model.spectrum, model.k)
    check = separability_check(SeparabilityReport(result, 200, 0.1), 0.9)
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert f"FRUIT_PCA_VARIANCE={result.keeping_target:g} (k={result.keeping_k}) keeps it within 2 points" in check.description
