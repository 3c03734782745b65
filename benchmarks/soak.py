"""Soak: a full materialization, then rounds of uploads, overwrites and deletes picked up by the sensors.

    python benchmarks/soak.py [--classes 50] [--images 400] [--rounds 3] [--changes 300] [--local]

On a local S3 server (SeaweedFS; --local uses a folder instead), against a real Dagster instance
and one Spark session (local[*]):
  1. writes classes x images synthetic fruit images under s3://soak/fruits/Training/;
  2. ticks new_uploads_sensor and executes the runs it requests, then the runs the assets'
     automation conditions request (pca_model, then reduced_features), as the daemon would;
  3. per round: uploads new images, overwrites some, deletes some (at random across classes),
     then 2. again;
  4. runs the pipeline from scratch (no carry-forward) over the final images in a fresh root,
     and compares: same rows, embeddings and reduced features equal to float32 round-off.
Prints per-phase time and peak memory (driver Python, driver JVM, Spark Python workers): memory is
bounded when the rounds' peaks stay at the first materialization's. The baseline is 4., measured
in the same run: an incremental round costs a fraction of a from-scratch run.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import PeakMemory, ensure_env  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--changes", type=int, default=300, help="uploads + overwrites + deletes per round")
    parser.add_argument("--local", action="store_true", help="a local folder instead of the S3 server")
    parser.add_argument("--distinct", type=int, default=0,
                        help="render this many images per class and write the rest as copies made unique by a JPEG "
                        "comment (other bytes, so nothing is reused by content; the same pixels): 150,000 rendered "
                        "images take ~45 min here, copies seconds. 0: render every image")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the from-scratch run over the final images (and the comparison)")
    args = parser.parse_args(argv)
    ensure_env()
    work = tempfile.mkdtemp(prefix="bench-soak-")
    if args.local:
        return soak(args, work, os.path.join(work, "data"))
    from fruit_assets_tests.harness.s3server import SeaweedFS

    with SeaweedFS(os.path.join(work, "s3")) as server:
        os.environ.update(server.env)
        server.client().create_bucket(Bucket="soak")
        return soak(args, work, "s3://soak/fruits")


def soak(args, work: str, root: str) -> int:
    import numpy as np

    # Before anything imports fruit_assets: its Definitions read these when the package loads.
    weights = os.path.join(work, "soak.weights.h5")
    os.environ.update({"FRUIT_DATA_URI": root, "FRUIT_MODEL_WEIGHTS": weights, "SPARK_MASTER": "local[*]",
                       "FRUIT_PCA_VARIANCE": "0.95"})
    import subprocess

    # In a child process: building the calibrated model would otherwise sit in the driver's memory.
    subprocess.run([sys.executable, "-c", "import sys; from fruit_assets.featurize.model import calibrated_random_model; "
                    "calibrated_random_model(seed=5).save_weights(sys.argv[1])", weights], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    import dagster as dg

    from fruit_assets.definitions import defs
    from fruit_assets.layout import DataLayout
    from fruit_assets.resources import FruitStorage
    from fruit_assets.cli.sample import write_sample_dataset
    from fruit_assets.featurize.synthetic import class_styles, jpeg_bytes, render_fruit
    from fruit_assets.storage import open_store
    from fruit_assets.spark_jobs.session import SparkSettings, build_spark_session

    layout = DataLayout.at(root)
    store = open_store(layout.root)
    started = time.perf_counter()
    if args.distinct:
        count = write_unique_copies(layout.root, args.classes, args.images, args.distinct)
    else:
        count = write_sample_dataset(layout.root, args.classes, args.images, seed=11, threads=16)
    print(f"{count} images in {args.classes} classes written to {layout.training} in {time.perf_counter() - started:.0f} s")

    # One Spark application for the whole soak, as the CLI keeps one: the runs below reuse it.
    spark = build_spark_session(SparkSettings(master="local[*]", app_name="soak"))
    home = os.path.join(work, "dagster_home")
    os.makedirs(home)
    instance = dg.DagsterInstance.local_temp(home)
    state = {"sensor_cursor": None, "automation_cursor": None, "embed_runs": []}

    def execute(job_name: str, tags: dict) -> None:
        result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        if not result.success:
            raise SystemExit(f"run of {job_name} {tags} failed")
        return result.run_id

    def react() -> tuple[int, int]:
        """One sensor tick and what it requests, then the automation conditions, until quiet."""
        sensor = defs.resolve_sensor_def("new_uploads_sensor")
        context = dg.build_sensor_context(instance=instance, cursor=state["sensor_cursor"],
                                          resources={"storage": FruitStorage(data_uri=layout.root)})
        result = sensor(context)
        state["sensor_cursor"] = result.cursor
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        for request in result.run_requests or []:
            state["embed_runs"].append(execute("embed_classes", request.tags))
        downstream = 0
        for _ in range(3):
            evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=state["automation_cursor"])
            state["automation_cursor"] = evaluation.cursor
            refit = bool(evaluation.get_requested_partitions(dg.AssetKey("pca_model")))
            keys = sorted(evaluation.get_requested_partitions(dg.AssetKey("reduced_features")) or [])
            ordered = instance.get_dynamic_partitions("fruit_class")
            # A refit is published only with every class projected on it: one run of both.
            keys = ordered if refit and not keys else keys
            if keys:
                execute("fit_and_reduce" if refit else "reduce_classes",
                        {"dagster/asset_partition_range_start": min(keys, key=ordered.index),
                         "dagster/asset_partition_range_end": max(keys, key=ordered.index)})
                downstream += 1
            if evaluation.total_requested == 0:
                break
        return len(result.run_requests or []), downstream

    phases = []

    def phase(name: str, fn):
        with PeakMemory() as memory:
            t0 = time.perf_counter()
            outcome = fn()
            seconds = time.perf_counter() - t0
        phases.append((name, seconds, memory))
        print(f"{name}: {seconds:.0f} s, {outcome}; peak {memory.describe()}", flush=True)

    # The daemon evaluates automation conditions all along; its first evaluation sees no change.
    state["automation_cursor"] = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
    phase("full materialization (sensor + automation)", react)
    # What a backfill of every class in one run (BackfillPolicy.single_run) writes to the event log.
    for run_id in state["embed_runs"]:
        events = instance.all_logs(run_id)
        materializations = sum(1 for e in events if e.dagster_event and e.dagster_event.is_step_materialization)
        print(f"event log of the embedding run {run_id[:8]}: {len(events)} rows, {materializations} materializations "
              f"({len(instance.get_dynamic_partitions('fruit_class'))} partitions x 2 assets)", flush=True)

    rng = random.Random(7)
    styles = class_styles(args.classes)
    image_rng = np.random.default_rng(99)
    for round_number in range(1, args.rounds + 1):
        existing = [info.uri for info in store.list_objects(layout.training)]
        uploads = overwrites = deletes = args.changes // 3
        for index in range(uploads):
            name, colour, aspect = rng.choice(styles)
            store.write_bytes(f"{layout.training}/{name}/r{round_number}_{index}_100.jpg",
                              jpeg_bytes(render_fruit(image_rng, colour, aspect)))
        chosen = rng.sample(existing, overwrites + deletes)
        for uri in chosen[:overwrites]:
            name = uri.split("/Training/", 1)[1].split("/", 1)[0]
            colour, aspect = next((c, a) for n, c, a in styles if n == name)
            store.write_bytes(uri, jpeg_bytes(render_fruit(image_rng, colour, aspect)))
        store.delete(chosen[overwrites:])
        phase(f"round {round_number}: +{uploads} new, {overwrites} overwritten, -{deletes} deleted", react)

    if args.no_baseline:
        print("\nsummary (no from-scratch baseline)")
        for name, seconds, memory in phases:
            print(f"  {seconds:7.0f} s  {memory.describe()}  {name}")
        spark.stop()
        instance.dispose()
        return 0

    # The baseline: the same final images, from scratch, no carry-forward, in a fresh root.
    from fruit_assets.steps.embeddings import build_embeddings
    from fruit_assets.steps.manifest import build_manifests
    from fruit_assets.steps.pca import fit_pca
    from fruit_assets.steps.reduce import build_reduced_features
    from fruit_assets.models.build import inference_model

    fresh = DataLayout.at(os.path.join(work, "from_scratch"))
    local = open_store(fresh.root)
    for info in store.list_objects(layout.training):
        local.write_bytes(fresh.root + "/Training/" + info.uri.split("/Training/", 1)[1], store.read_bytes(info.uri))
    classes = instance.get_dynamic_partitions("fruit_class")

    def from_scratch():
        build_manifests(fresh, classes)
        build_embeddings(spark, fresh, classes, inference_model(fresh, "onnxruntime", weights, 1234).model,
                         "from-scratch", incremental=False)
        fit_pca(spark, fresh, classes, 0.95)
        build_reduced_features(spark, fresh, classes, "from-scratch-2")
        return "done"

    phase("from scratch over the final images (baseline)", from_scratch)

    from fruit_assets.pca import load_pca
    from fruit_assets.storage.published_files import dataset_files
    from fruit_assets.storage.parquet_io import column_matrix, read_tables

    def rows(dataset_of, column):
        table = read_tables([u for c in classes for u in dataset_files(dataset_of, c)])
        keys = [p.split("/Training/", 1)[1] for p in table["path"].to_pylist()]
        order = np.argsort(keys)
        return [keys[i] for i in order], column_matrix(table[column])[order]

    ok = True
    for label, dataset, column, tolerance in (("embeddings", "embeddings", "embedding", 1e-5),
                                              ("reduced features", "reduced_features", "features", 1e-4)):
        keys, values = rows(getattr(layout, dataset), column)
        fresh_keys, fresh_values = rows(getattr(fresh, dataset), column)
        same_rows = keys == fresh_keys and len(set(keys)) == len(keys)
        close = same_rows and values.shape == fresh_values.shape and np.allclose(values, fresh_values, rtol=tolerance, atol=tolerance)
        diff = float(np.max(np.abs(values - fresh_values))) if same_rows and values.shape == fresh_values.shape else float("nan")
        print(f"{label}: {len(keys)} rows after the rounds, {len(fresh_keys)} from scratch; "
              f"same rows: {same_rows}; max |difference| {diff:.2e}: {'EQUAL' if close else 'DIFFERENT'}")
        ok &= close
    k_soak = load_pca(store.read_bytes(layout.pca_model)).k
    k_fresh = load_pca(local.read_bytes(fresh.pca_model)).k
    print(f"PCA k: {k_soak} after the rounds, {k_fresh} from scratch")
    ok &= k_soak == k_fresh

    first, baseline = phases[0], phases[-1]
    rounds = phases[1:-1]
    print(f"\nsummary (driver JVM heap limit spark.driver.memory={spark.conf.get('spark.driver.memory', '1g')})")
    for name, seconds, memory in phases:
        print(f"  {seconds:7.0f} s  {memory.describe()}  {name}")
    if rounds:
        mean_round = sum(s for _, s, _ in rounds) / len(rounds)
        print(f"  a round costs {mean_round / baseline[1]:.2f}x a from-scratch run ({mean_round:.0f} s vs {baseline[1]:.0f} s)")
        worst = max(rounds, key=lambda p: p[2].driver + p[2].jvm)
        print(f"  peak driver memory in the rounds vs the first materialization: python "
              f"{worst[2].driver / first[2].driver:.2f}x, JVM {worst[2].jvm / max(first[2].jvm, 1):.2f}x")
    print("RESULT: outputs after the rounds equal a from-scratch run" if ok else "RESULT: MISMATCH")
    spark.stop()
    instance.dispose()
    return 0 if ok else 1


def write_unique_copies(root: str, classes: int, images: int, distinct: int) -> int:
    """``distinct`` rendered images per class, written ``images`` times over with a JPEG comment
    segment (COM) after the start-of-image marker naming the copy: every object has other bytes
    (another ETag, another content hash), every decoder sees the same pixels."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from fruit_assets.featurize.synthetic import class_styles, jpeg_bytes, render_fruit
    from fruit_assets.storage import open_store

    store = open_store(root)

    def write_class(item):
        class_index, (name, colour, aspect) = item
        rng = np.random.default_rng([11, class_index])
        bases = [jpeg_bytes(render_fruit(rng, colour, aspect)) for _ in range(distinct)]
        for index in range(images):
            note = f"soak copy {class_index}/{index}".encode()
            data = bases[index % distinct]
            store.write_bytes(f"{root}/Training/{name}/{index}_100.jpg",
                              data[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + data[2:])
        return images

    with ThreadPoolExecutor(max_workers=8) as pool:
        return sum(pool.map(write_class, enumerate(class_styles(classes))))


if __name__ == "__main__":
    sys.exit(main())
