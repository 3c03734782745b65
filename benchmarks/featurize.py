"""Embedding throughput: the project's Spark path against the in-process limit and the textbook UDF.

    python benchmarks/featurize.py [--images 2000] [--root DIR|s3://bucket/prefix] [--memory-images 20000]

(a) limit: one TensorFlow process, sequential decode -> resize -> preprocess -> MobileNetV2, batched.
(b) ours: fruit_assets.pipeline.build_embeddings on local[*] (Spark start-up reported separately;
    first run with cold Python workers, then a second run with warm ones).
(c) textbook: pandas_udf over binaryFile, model built inside the UDF for each task, Spark writes Parquet.
All three use the same weights file and the same images. Prints images/s, the ratios b/a and b/c,
and peak memory of driver and workers.
"""

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import uuid
from typing import Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PeakMemory, ensure_env, timed  # noqa: E402

ensure_env()


def make_images(root: str, count: int, classes: int = 10, unique: int = 2000) -> None:
    """``count`` images in ``classes`` classes; past ``unique`` renders, copies under new names
    (rendering is the slow part, and the pipeline does not care that bytes repeat)."""
    import shutil

    from fruit_assets.sample import write_sample_dataset

    per_class = count // classes
    rendered = min(per_class, max(1, unique // classes))
    write_sample_dataset(root, classes, rendered, seed=42)
    if rendered < per_class:
        training = os.path.join(root, "Training")
        for name in os.listdir(training):
            folder = os.path.join(training, name)
            for index in range(rendered, per_class):
                shutil.copy(os.path.join(folder, f"{index % rendered}_100.jpg"), os.path.join(folder, f"{index}_100.jpg"))


def limit(root: str, weights) -> float:
    """(a) images/s of one plain in-process pipeline."""
    import numpy as np

    from fruit_assets.featurize import decode_image, preprocess_batch
    from fruit_assets.featurize.model import Embedder
    from fruit_assets.layout import DataLayout
    from fruit_assets.storage import open_store

    layout = DataLayout.at(root)
    store = open_store(layout.root)
    uris = [info.uri for info in store.list_objects(layout.training)]
    embedder = Embedder(weights, batch_size=32)
    embedder.embed(np.zeros((32, 224, 224, 3), np.float32))  # graph trace, not throughput

    def run():
        for start in range(0, len(uris), 32):
            batch = np.stack([decode_image(store.read_bytes(u)) for u in uris[start : start + 32]])
            embedder.embed(preprocess_batch(batch))

    _, seconds = timed(run)
    return len(uris) / seconds


def _save_weights(path: str) -> None:
    from fruit_assets.featurize.model import calibrated_random_model

    calibrated_random_model(seed=1).save_weights(path)


def _limit_from_file(root: str, weights_file: str) -> float:
    from fruit_assets.featurize.model import resolve_weights

    return limit(root, resolve_weights(weights_file))


def ours(spark, root: str, weights):
    from fruit_assets.layout import DataLayout
    from fruit_assets.manifest import discover_classes
    from fruit_assets.pipeline import build_embeddings, build_manifests

    layout = DataLayout.at(root)
    classes = discover_classes(layout)
    build_manifests(layout, classes)
    # incremental=False: both passes embed every image (the second would otherwise reuse them all).
    cold = build_embeddings(spark, layout, classes, weights, uuid.uuid4().hex, incremental=False)
    warm = build_embeddings(spark, layout, classes, weights, uuid.uuid4().hex, incremental=False)
    return cold, warm


def textbook(spark, root: str, weights_file: str, out: str) -> float:
    """(c) The approach in most tutorials (e.g. Databricks' featurization example)."""
    import numpy as np
    import pandas as pd
    from pyspark.sql.functions import col, pandas_udf

    bc_weights = spark.sparkContext.broadcast(open(weights_file, "rb").read())

    def model_fn():
        import tempfile as tf_tmp

        import tensorflow as tf

        model = tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, pooling="avg", weights=None)
        with tf_tmp.NamedTemporaryFile(suffix=".weights.h5") as handle:
            handle.write(bc_weights.value)
            handle.flush()
            model.load_weights(handle.name)
        return model

    def preprocess(content):
        import io

        from PIL import Image
        from tensorflow.keras.applications.mobilenet_v2 import preprocess_input

        img = Image.open(io.BytesIO(content)).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
        return preprocess_input(np.asarray(img, dtype=np.float32))

    def featurize_series(model, content_series):
        batch = np.stack(content_series.map(preprocess))
        preds = model.predict(batch, verbose=0)
        return pd.Series([p.flatten() for p in preds])

    @pandas_udf("array<float>")
    def featurize_udf(content_series_iter: Iterator[pd.Series]) -> Iterator[pd.Series]:
        model = model_fn()
        for content_series in content_series_iter:
            yield featurize_series(model, content_series)

    images = spark.read.format("binaryFile").option("pathGlobFilter", "*.jpg").option("recursiveFileLookup", "true").load(
        root + "/Training"
    )
    count = images.count()
    _, seconds = timed(
        lambda: images.repartition(16).select(col("path"), featurize_udf("content").alias("features")).write.mode("overwrite").parquet(out)
    )
    return count / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--root", default=None, help="where to generate the images (default: a temp folder)")
    parser.add_argument("--skip-textbook", action="store_true")
    parser.add_argument("--memory-images", type=int, default=0,
                        help="also run (b) alone at this many images and print driver peak memory")
    args = parser.parse_args(argv)

    from fruit_assets.featurize.model import resolve_weights
    from fruit_assets.spark_jobs.session import SparkSettings, build_spark_session

    work = tempfile.mkdtemp(prefix="bench-featurize-")
    root = args.root or os.path.join(work, "data")
    weights_file = os.path.join(work, "bench.weights.h5")
    make_images(root, args.images)
    print(f"{args.images} images of 100x100 JPEG under {root}; cores: {os.cpu_count()}")

    # In a child process, so the driver's memory below is that of (b) alone.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(_save_weights, (weights_file,))
        rate_limit = pool.apply(_limit_from_file, (root, weights_file))
    weights = resolve_weights(weights_file)
    print(f"(a) in-process limit           {rate_limit:7.1f} images/s")

    with PeakMemory() as memory:
        spark, startup = timed(build_spark_session, SparkSettings(master="local[*]", app_name="bench"))
        cold, warm = ours(spark, root, weights)
    print(f"    Spark session start-up      {startup:7.1f} s (excluded below)")
    print(f"(b) fruit_assets, cold workers {cold.images_per_second:7.1f} images/s "
          f"({cold.seconds:.1f} s, includes TensorFlow import and model build per worker)")
    print(f"(b) fruit_assets, warm workers {warm.images_per_second:7.1f} images/s ({warm.seconds:.1f} s)")
    print(f"    peak memory (b): {memory.describe()}")
    print(f"    ratio b/a: cold {cold.images_per_second / rate_limit:.2f}, warm {warm.images_per_second / rate_limit:.2f}")

    if not args.skip_textbook:
        with PeakMemory() as memory_c:
            rate_textbook = textbook(spark, root, weights_file, os.path.join(work, "textbook.parquet"))
        print(f"(c) textbook pandas_udf        {rate_textbook:7.1f} images/s")
        print(f"    peak memory (c): {memory_c.describe()}")
        print(f"    ratio b/c: cold {cold.images_per_second / rate_textbook:.2f}, warm {warm.images_per_second / rate_textbook:.2f}")
    spark.stop()

    if args.memory_images:
        big_root = os.path.join(work, "big")
        make_images(big_root, args.memory_images)
        with PeakMemory() as memory_big:
            spark = build_spark_session(SparkSettings(master="local[*]", app_name="bench-memory"))
            small_cold, _ = ours(spark, root, weights)
        spark.stop()
        with PeakMemory() as memory_huge:
            spark = build_spark_session(SparkSettings(master="local[*]", app_name="bench-memory"))
            big_cold, _ = ours(spark, big_root, weights)
        spark.stop()
        print(f"memory at {small_cold.images} images: {memory_big.describe()}")
        print(f"memory at {big_cold.images} images: {memory_huge.describe()}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
