"""A backfill over many classes as one run against one run per class.

    python benchmarks/backfill.py [--classes 20] [--images 10]

Each run is a real `dagster asset materialize -m fruit_assets.definitions` process (as a run pod would be):
(a) one run over the partition range of all classes (BackfillPolicy.single_run), against
(b) one run per class, the baseline, each paying its own Spark and TensorFlow start-up.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

BIN = os.path.dirname(sys.executable)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--images", type=int, default=10)
    args = parser.parse_args(argv)

    from dagster import DagsterInstance

    from fruit_assets.featurize.model import calibrated_random_model
    from fruit_assets.cli.sample import write_sample_dataset
    from fruit_assets.featurize.synthetic import class_styles

    work = tempfile.mkdtemp(prefix="bench-backfill-")
    root, home = os.path.join(work, "data"), os.path.join(work, "home")
    os.makedirs(home)
    write_sample_dataset(root, args.classes, args.images, seed=1)
    weights = os.path.join(work, "w.weights.h5")
    calibrated_random_model(seed=1).save_weights(weights)
    classes = sorted(name for name, _c, _a in class_styles(args.classes))
    with DagsterInstance.from_config(home) as instance:
        instance.add_dynamic_partitions("fruit_class", classes)
    env = {**os.environ, "FRUIT_DATA_URI": root, "FRUIT_MODEL_WEIGHTS": weights, "DAGSTER_HOME": home,
           "SPARK_MASTER": "local[*]", "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}

    def materialize(*partition_args):
        started = time.perf_counter()
        subprocess.run([f"{BIN}/dagster", "asset", "materialize", "-m", "fruit_assets.definitions",
                        "--select", "raw_images,image_embeddings", *partition_args],
                       env=env, check=True, capture_output=True)
        return time.perf_counter() - started

    single = materialize("--partition-range", f"{classes[0]}...{classes[-1]}")
    print(f"(a) one run, {args.classes} classes x {args.images} images: {single:6.1f} s")
    per_class = sum(materialize("--partition", name) for name in classes)
    print(f"(b) one run per class ({args.classes} runs):         {per_class:6.1f} s")
    print(f"    speed-up of (a) over (b): x{per_class / single:.1f}")


if __name__ == "__main__":
    main()
