"""What the feature-quality figures cost against the materialization they ride on.

    python benchmarks/quality.py [--images 20000] [--classes 50]

One Spark application (local[*]), ONNX Runtime, calibrated random weights. Baseline in the same run:
the materialization's own steps (embed every image, fit the PCA, project every class). Then the two
quality steps as the assets run them: the review of new images (first materialization: every class
leave-one-out, then the nearest-class pass) and the separability measurement (bounded sample, 5-NN
on full and reduced vectors, variance targets tried). Then an upload of 100 images into one class:
the incremental embedding against its review. Prints seconds and ratios (target: under 10%).
"""

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ensure_env, timed  # noqa: E402
from featurize import make_images  # noqa: E402

ensure_env()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--classes", type=int, default=50)
    args = parser.parse_args(argv)

    from fruit_assets.layout import DataLayout
    from fruit_assets.steps.manifest import discover_classes
    from fruit_assets.models.build import inference_model
    from fruit_assets.steps.embeddings import build_embeddings
    from fruit_assets.steps.manifest import build_manifests
    from fruit_assets.steps.pca import fit_pca
    from fruit_assets.steps.reduce import build_reduced_features
    from fruit_assets.steps.review import measure_separability, review_new_images
    from fruit_assets.spark_jobs.session import SparkSettings, build_spark_session

    work = tempfile.mkdtemp(prefix="bench-quality-")
    root = os.path.join(work, "data")
    make_images(root, args.images, classes=args.classes)
    weights = os.path.join(work, "bench.weights.h5")
    from fruit_assets.featurize.model import calibrated_random_model

    calibrated_random_model(seed=1).save_weights(weights)
    layout = DataLayout.at(root)
    classes = discover_classes(layout)
    model = inference_model(layout, "onnxruntime", weights, 1234).model
    spark = build_spark_session(SparkSettings(master="local[*]", app_name="bench-quality"))
    print(f"{args.images} images in {len(classes)} classes; cores: {os.cpu_count()}")

    def materialize(token):
        build_manifests(layout, classes)
        report = build_embeddings(spark, layout, classes, model, token)
        pca = fit_pca(spark, layout, classes, 0.95)
        build_reduced_features(spark, layout, classes, token + "-r")
        return report, pca

    (report, pca), materialize_s = timed(materialize, "full")
    featurized = {c: n.featurized for c, n in report.per_class.items()}
    review, review_s = timed(review_new_images, spark, layout, featurized, classes)
    separability, separability_s = timed(measure_separability, spark, layout, classes, pca)
    result = separability.result
    print(f"materialization (embed + PCA + project)   {materialize_s:7.1f} s")
    print(f"review of {review.num_checked} new images            {review_s:7.1f} s  ({review_s / materialize_s:.1%}), "
          f"{len(review.flagged)} flagged")
    print(f"separability on {result.sample_size} sampled images  {separability_s:7.1f} s  ({separability_s / materialize_s:.1%}); "
          f"accuracy full {result.full.overall:.3f}, reduced {result.reduced.overall:.3f} (k={result.k})")
    print(f"both                                      {review_s + separability_s:7.1f} s  "
          f"({(review_s + separability_s) / materialize_s:.1%} of the materialization; target < 10%)")

    # An upload of 100 images into one class: incremental embedding, then its review.
    folder = os.path.join(root, "Training", classes[0])
    names = sorted(os.listdir(folder))[:100]
    for index, name in enumerate(names):
        shutil.copy(os.path.join(folder, name), os.path.join(folder, f"upload_{index}.jpg"))
    build_manifests(layout, [classes[0]])
    small, small_s = timed(build_embeddings, spark, layout, [classes[0]], model, "upload")
    small_review, small_review_s = timed(review_new_images, spark, layout, {classes[0]: small.featurized}, classes)
    print(f"upload of 100 images into one class: embedding {small_s:.1f} s, review {small_review_s:.1f} s "
          f"({small_review_s / small_s:.1%}), {len(small_review.flagged)} flagged "
          f"({small_review.modes.get(classes[0])})")
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
