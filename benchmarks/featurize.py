"""Embedding throughput: fruit_assets (each engine) against the in-process limits and the peers.

    python benchmarks/featurize.py [--images 2400] [--skip ray,udf,textbook,incremental]

Same images and the same calibrated random weights file for every path, one run:
(a) in-process limit per engine: one process, decode -> preprocess -> infer, all cores, the
    better of batch 8 and batch 32.
(b) fruit_assets.steps.embeddings.build_embeddings on local[*], per engine, in its own Spark application:
    cold Python workers, then warm ones (images/s as the asset's own metadata reports it; Spark
    start-up printed separately). Peak RSS of the largest Python worker per engine.
(c) Spark's own idiom: pyspark.ml.functions.predict_batch_udf (model cached per worker by Spark)
    over binaryFile, TensorFlow, decode in a pandas_udf.
(d) Ray Data: read_binary_files -> map_batches with an actor pool (one Keras model per actor).
(e) The textbook pandas_udf over binaryFile, model built inside the UDF per task.
(f) Wall time of `fruit-assets materialize --class X` after 10 new images in one class of an
    already materialized root (the small incremental run), per engine.
"""

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PeakMemory, ensure_env, timed  # noqa: E402

ensure_env()
ENGINES = ("onnxruntime", "tensorflow")


def make_images(root: str, count: int, classes: int = 10, unique: int = 2000) -> None:
    """``count`` images in ``classes`` classes; past ``unique`` renders, copies under new names
    (rendering is the slow part, and the pipeline does not care that bytes repeat)."""
    from fruit_assets.cli.sample import write_sample_dataset

    per_class = count // classes
    rendered = min(per_class, max(1, unique // classes))
    write_sample_dataset(root, classes, rendered, seed=42)
    if rendered < per_class:
        training = os.path.join(root, "Training")
        for name in os.listdir(training):
            folder = os.path.join(training, name)
            for index in range(rendered, per_class):
                shutil.copy(os.path.join(folder, f"{index % rendered}_100.jpg"), os.path.join(folder, f"{index}_100.jpg"))


def _image_paths(root: str) -> list[str]:
    training = os.path.join(root, "Training")
    return sorted(os.path.join(d, f) for d, _s, files in os.walk(training) for f in files)


def _limit(root: str, weights_file: str, engine: str) -> float:
    """(a), in a fresh child process: images/s of one plain in-process pipeline."""
    import numpy as np

    from fruit_assets.featurize import decode_image, preprocess_batch
    from fruit_assets.layout import DataLayout
    from fruit_assets.models.build import inference_model

    model = inference_model(DataLayout.at(root), engine, weights_file, 1234).model
    paths = _image_paths(root)
    best = 0.0
    for batch_size in (8, 32):  # the better of the two: the limit is the best this process can do
        if engine == "onnxruntime":
            from fruit_assets.featurize.onnx_model import OnnxEmbedder

            embedder = OnnxEmbedder(model.payload, threads=0, batch_size=batch_size)  # threads=0: every core
        else:
            from fruit_assets.featurize.model import Embedder, ModelWeights

            embedder = Embedder(ModelWeights(model.payload, model.source, model.fingerprint), batch_size=batch_size)
        embedder.embed(np.zeros((batch_size, 224, 224, 3), np.float32))  # graph trace / session warm-up

        def run():
            for start in range(0, len(paths), batch_size):
                batch = np.stack([decode_image(open(p, "rb").read()) for p in paths[start : start + batch_size]])
                embedder.embed(preprocess_batch(batch))

        _, seconds = timed(run)
        best = max(best, len(paths) / seconds)
    return best


def _save_weights(path: str) -> None:
    from fruit_assets.featurize.model import calibrated_random_model

    calibrated_random_model(seed=1).save_weights(path)


def _convert(root: str, weights_file: str) -> None:
    from fruit_assets.layout import DataLayout
    from fruit_assets.models.build import build_embedding_model

    build_embedding_model(DataLayout.at(root), weights_file, 1234)


def in_child(fn, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def ours(root: str, weights_file: str, engine: str):
    """(b): its own Spark application, so worker memory is this engine's alone."""
    from fruit_assets.layout import DataLayout
    from fruit_assets.steps.manifest import discover_classes
    from fruit_assets.models.build import inference_model
    from fruit_assets.steps.embeddings import build_embeddings
    from fruit_assets.steps.manifest import build_manifests
    from fruit_assets.spark_jobs.session import SparkSettings, build_spark_session

    layout = DataLayout.at(root)
    classes = discover_classes(layout)
    build_manifests(layout, classes)
    model = inference_model(layout, engine, weights_file, 1234).model
    with PeakMemory() as memory:
        spark, startup = timed(build_spark_session, SparkSettings(master="local[*]", app_name=f"bench-{engine}"))
        # incremental=False: both passes embed every image (the second would otherwise reuse them all).
        cold = build_embeddings(spark, layout, classes, model, uuid.uuid4().hex, incremental=False)
        warm = build_embeddings(spark, layout, classes, model, uuid.uuid4().hex, incremental=False)
        spark.stop()
    return cold, warm, startup, memory


def _decode_udf():
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("array<float>")
    def decode(content: pd.Series) -> pd.Series:
        from fruit_assets.featurize import decode_image, preprocess_batch

        return pd.Series([preprocess_batch(decode_image(c)[None])[0].reshape(-1) for c in content])

    return decode


def _binary_files(spark, root: str):
    return (spark.read.format("binaryFile").option("pathGlobFilter", "*.jpg")
            .option("recursiveFileLookup", "true").load(root + "/Training"))


def _keras_model(weights_file: str):
    import keras

    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, pooling="avg", weights=None)
    model.load_weights(weights_file)
    return model


def predict_batch(spark, root: str, weights_file: str, out: str) -> float:
    """(c) Spark ML's batch-inference helper, as its documentation shows it."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.functions import col
    from pyspark.sql.types import ArrayType, FloatType

    def make_predict_fn():
        model = _keras_model(weights_file)

        def predict(inputs):
            return model.predict(inputs, verbose=0)

        return predict

    embed = predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()), batch_size=32,
                              input_tensor_shapes=[[224, 224, 3]])
    images = _binary_files(spark, root)
    count = images.count()
    decode = _decode_udf()
    _, seconds = timed(lambda: images.repartition(spark.sparkContext.defaultParallelism * 2)
                       .select(col("path"), embed(decode("content")).alias("features"))
                       .write.mode("overwrite").parquet(out))
    return count / seconds


def ray_data(root: str, weights_file: str, out: str) -> float:
    """(d) Ray Data on this machine: an actor pool, one Keras model per actor."""
    import numpy as np
    import ray

    cores = os.cpu_count()
    # One logical CPU more than the cores: with exactly `cores`, the actors hold every CPU and the
    # read tasks wait behind them forever (measured on 2 cores).
    ray.init(num_cpus=cores + 1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        class Embed:
            def __init__(self):
                import tensorflow as tf

                tf.config.threading.set_intra_op_parallelism_threads(1)
                self.model = _keras_model(weights_file)

            def __call__(self, batch):
                from fruit_assets.featurize import decode_image, preprocess_batch

                pixels = preprocess_batch(np.stack([decode_image(b) for b in batch["bytes"]]))
                return {"path": batch["path"], "embedding": list(self.model.predict(pixels, verbose=0))}

        def run():
            dataset = ray.data.read_binary_files(os.path.join(root, "Training"), include_paths=True)
            dataset.map_batches(Embed, batch_size=32, concurrency=cores, num_cpus=1).write_parquet(out)

        _, seconds = timed(run)
    finally:
        ray.shutdown()
    return len(_image_paths(root)) / seconds


def textbook(spark, root: str, weights_file: str, out: str) -> float:
    """(e) The approach in most tutorials (e.g. Databricks' featurization example)."""
    import numpy as np
    import pandas as pd
    from pyspark.sql.functions import col, pandas_udf

    @pandas_udf("array<float>")
    def featurize_udf(content_series_iter: Iterator[pd.Series]) -> Iterator[pd.Series]:
        import io

        from PIL import Image
        from keras.applications.mobilenet_v2 import preprocess_input

        model = _keras_model(weights_file)
        for content_series in content_series_iter:
            batch = np.stack([
                preprocess_input(np.asarray(Image.open(io.BytesIO(c)).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), dtype=np.float32))
                for c in content_series
            ])
            yield pd.Series([p.flatten() for p in model.predict(batch, verbose=0)])

    images = _binary_files(spark, root)
    count = images.count()
    _, seconds = timed(lambda: images.repartition(16).select(col("path"), featurize_udf("content").alias("features"))
                       .write.mode("overwrite").parquet(out))
    return count / seconds


def incremental_run(work: str, weights_file: str, engine: str) -> float:
    """(f) Seconds of `fruit-assets materialize --class X` after 10 new images in X."""
    from fruit_assets.cli.sample import write_sample_dataset

    root = os.path.join(work, f"incremental-{engine}")
    write_sample_dataset(root, 5, 40, seed=5)
    env = dict(os.environ, FRUIT_DATA_URI=root, FRUIT_MODEL_WEIGHTS=weights_file, FRUIT_INFERENCE_ENGINE=engine,
               DAGSTER_HOME=os.path.join(work, f"home-{engine}"), SPARK_MASTER="local[*]")
    os.makedirs(env["DAGSTER_HOME"], exist_ok=True)
    cli = [os.path.join(os.path.dirname(sys.executable), "fruit-assets"), "materialize"]
    subprocess.run(cli, env=env, check=True, capture_output=True)
    folder = os.path.join(root, "Training", "Banana")
    for index, name in enumerate(sorted(os.listdir(folder))[:10]):
        shutil.copy(os.path.join(folder, name), os.path.join(folder, f"new_{index}.jpg"))
    started = time.perf_counter()
    subprocess.run(cli + ["--class", "Banana"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2400)
    parser.add_argument("--root", default=None, help="where to generate the images (default: a temp folder)")
    parser.add_argument("--skip", default="", help="comma-separated: ray, udf, textbook, incremental")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))

    work = tempfile.mkdtemp(prefix="bench-featurize-")
    root = args.root or os.path.join(work, "data")
    weights_file = os.path.join(work, "bench.weights.h5")
    make_images(root, args.images)
    print(f"{args.images} images of 100x100 JPEG under {root}; cores: {os.cpu_count()}")
    in_child(_save_weights, weights_file)
    in_child(_convert, root, weights_file)

    rows = []  # (label, images/s)
    limits = {engine: in_child(_limit, root, weights_file, engine) for engine in ENGINES}
    for engine in ENGINES:
        rows.append((f"(a) in-process limit, {engine}", limits[engine]))
    results = {}
    for engine in ENGINES:
        cold, warm, startup, memory = ours(root, weights_file, engine)
        results[engine] = (cold, warm, memory)
        rows.append((f"(b) fruit_assets {engine}, cold workers", cold.images_per_second))
        rows.append((f"(b) fruit_assets {engine}, warm workers", warm.images_per_second))
        print(f"    {engine}: Spark start-up {startup:.1f} s (excluded); peak memory: {memory.describe()}")

    from fruit_assets.spark_jobs.session import SparkSettings, build_spark_session

    peers = {}
    if not {"udf", "textbook"} <= skip:
        # Decoded images are 600 KB each as Arrow floats: Spark's default of 10,000 rows per Arrow
        # batch needs 6 GB in the JVM; 64 is what a user of predict_batch_udf ends up setting.
        spark = build_spark_session(SparkSettings(master="local[*]", app_name="bench-peers",
                                                  conf={"spark.sql.execution.arrow.maxRecordsPerBatch": "64"}))
        if "udf" not in skip:
            peers["predict_batch_udf"] = predict_batch(spark, root, weights_file, os.path.join(work, "pbu.parquet"))
            rows.append(("(c) Spark predict_batch_udf over binaryFile, TensorFlow", peers["predict_batch_udf"]))
        if "textbook" not in skip:
            peers["textbook"] = textbook(spark, root, weights_file, os.path.join(work, "textbook.parquet"))
            rows.append(("(e) textbook pandas_udf, model built per task", peers["textbook"]))
        spark.stop()
    if "ray" not in skip:
        peers["ray"] = ray_data(root, weights_file, os.path.join(work, "ray.parquet"))
        rows.append(("(d) Ray Data map_batches, actor pool, TensorFlow", peers["ray"]))

    print("\n| path | images/s |\n|---|---:|")
    for label, rate in rows:
        print(f"| {label} | {rate:.1f} |")

    ort_cold, ort_warm, ort_memory = results["onnxruntime"]
    tf_cold, tf_warm, tf_memory = results["tensorflow"]
    print("\nratios (same run)")
    print(f"  fruit_assets onnxruntime / ONNX Runtime limit: cold {ort_cold.images_per_second / limits['onnxruntime']:.2f}, "
          f"warm {ort_warm.images_per_second / limits['onnxruntime']:.2f}   (target >= 0.9)")
    print(f"  fruit_assets onnxruntime / fruit_assets tensorflow: cold {ort_cold.images_per_second / tf_cold.images_per_second:.2f}, "
          f"warm {ort_warm.images_per_second / tf_warm.images_per_second:.2f}")
    print(f"  ONNX Runtime limit / TensorFlow limit: {limits['onnxruntime'] / limits['tensorflow']:.2f}")
    for name, rate in peers.items():
        print(f"  fruit_assets onnxruntime / {name}: cold {ort_cold.images_per_second / rate:.2f}, "
              f"warm {ort_warm.images_per_second / rate:.2f}   (target >= 2 for predict_batch_udf and ray)")
    print(f"  largest Python worker: onnxruntime {ort_memory.worker_max / 2**20:.0f} MiB, tensorflow "
          f"{tf_memory.worker_max / 2**20:.0f} MiB: ratio {ort_memory.worker_max / tf_memory.worker_max:.2f}   (target <= 0.5)")

    if "incremental" not in skip:
        seconds = {engine: incremental_run(work, weights_file, engine) for engine in ENGINES}
        print(f"  small incremental run (10 new images, `fruit-assets materialize --class Banana`): "
              f"onnxruntime {seconds['onnxruntime']:.1f} s, tensorflow {seconds['tensorflow']:.1f} s: ratio "
              f"{seconds['onnxruntime'] / seconds['tensorflow']:.2f}   (target <= 0.5)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
