"""``fruit-assets``: sample data, and the whole graph materialized through Dagster."""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor


def cmd_sample(args) -> int:
    from fruit_assets.sample import write_sample_dataset

    started = time.perf_counter()
    count = write_sample_dataset(args.dest, args.classes, args.images, args.seed)
    print(f"wrote {count} images in {args.classes} classes under {args.dest}/Training "
          f"({time.perf_counter() - started:.1f} s)")
    return 0


def cmd_upload(args) -> int:
    from tqdm import tqdm

    from fruit_assets.storage import StorageError
    from fruit_assets.storage.sync import sync_folder

    total = sum(len(files) for _d, _s, files in os.walk(args.src))
    started = time.perf_counter()
    with tqdm(total=total, unit="file", desc="upload", disable=args.quiet) as bar:
        bytes_done = [0]

        def progress(files, size):
            bytes_done[0] += size
            bar.update(files)
            bar.set_postfix_str(f"{bytes_done[0] / 1e6:.1f} MB sent")

        try:
            report = sync_folder(args.src, args.dest, threads=args.threads, progress=progress)
        except (StorageError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    print(f"{report.files} files: {report.uploaded} uploaded ({report.bytes_uploaded / 1e6:.1f} MB), "
          f"{report.skipped} already there; {time.perf_counter() - started:.1f} s")
    return 0


def cmd_bake_model(args) -> int:
    """Image builds: the model for FRUIT_MODEL_WEIGHTS converted into the image (baked_model.py)."""
    from fruit_assets.baked_model import bake
    from fruit_assets.errors import UserFacingError

    started = time.perf_counter()
    try:
        record = bake(args.weights, args.seed, args.into)
    except UserFacingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"baked {record.source} ({record.fingerprint}, sha256 {record.sha256[:12]}) into {args.into}: parity "
          f"with TensorFlow {record.parity_max_rel:.1e} relative; {time.perf_counter() - started:.1f} s")
    return 0


def _materializations(result) -> dict[str, dict]:
    out = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        out[materialization.asset_key.to_user_string()] = {
            key: getattr(value, "value", value) for key, value in materialization.metadata.items()
        }
    return out


def _failure_message(result) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            return f"{data.error.cls_name}: {data.error.message.strip()} (stack trace in the run log)"
    return "see the run log"


def cmd_ui(args) -> int:
    """``dagster dev`` on the instance ``fruit-assets materialize`` uses, set up the same way."""
    from fruit_assets.console import prepare_dagster_home

    prepare_dagster_home()
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    command = [dagster if os.path.exists(dagster) else "dagster", "dev", "-m", "fruit_assets",
               "--host", args.host, "--port", str(args.port)]
    print(f"starting the Dagster UI at http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    os.execvp(command[0], command)
    return 0  # not reached


def _model_needs_converting(layout) -> bool:
    """embedding_model runs when the configured weights have no converted model yet (first run,
    new weights): the asset records the conversion and its parity check. Otherwise it is skipped,
    so an incremental run never imports TensorFlow."""
    from fruit_assets import model_registry
    from fruit_assets.definitions import defs
    from fruit_assets.featurize.engines import ONNXRUNTIME, check_engine
    from fruit_assets.resources.env import resolved

    model = defs.resources["embedding_model"]
    if check_engine(resolved(model.engine)) != ONNXRUNTIME:
        return False
    record = model_registry.find(layout, model_registry.weights_key(resolved(model.weights), model.random_seed))
    return record is None or model_registry.read_model(layout, record) is None


def cmd_materialize(args) -> int:
    from fruit_assets.console import NORMAL, QUIET, VERBOSE, ProgressDisplay, Terminal, prepare_dagster_home, run_log_path

    verbosity = VERBOSE if args.verbose else QUIET if args.quiet else NORMAL
    home = prepare_dagster_home(say=lambda text: print(text) if verbosity >= NORMAL else None)
    with Terminal(verbosity, run_log_path(home)) as terminal:
        return _materialize(args, terminal, ProgressDisplay(terminal))


def _stop(spark_starting) -> None:
    try:
        spark_starting.result().stop()
    except Exception:  # noqa: BLE001 - we are already reporting the error that matters
        pass


def _start_spark(master: str):
    """The session, and, in the background, its Python workers (they overlap the first run's
    start-up and manifest step; the first Spark job of the run then finds them ready)."""
    import threading

    from fruit_assets.resources.spark import SparkResource
    from fruit_assets.spark_jobs.session import warm_up_workers

    session = SparkResource(master=master).get_session()

    def warm():
        try:
            warm_up_workers(session)
        except Exception:  # noqa: BLE001 - only a head start; the real jobs start workers anyway
            pass

    threading.Thread(target=warm, name="spark-warm-up", daemon=True).start()
    return session


def _materialize(args, terminal, progress_display) -> int:
    # Imported here, after stderr is routed: Dagster, Spark and TensorFlow print as they load.
    from dagster import DagsterInstance

    from fruit_assets.changes import contiguous_ranges
    from fruit_assets.console import VERBOSE
    from fruit_assets.definitions import defs
    from fruit_assets.layout import DataLayout
    from fruit_assets.manifest import discover_classes
    from fruit_assets.partitions import fruit_class_partitions
    from fruit_assets.resources.env import resolved
    from fruit_assets.spark_jobs import progress
    from fruit_assets.storage import StorageError

    started = time.perf_counter()
    # The JVM and the Python workers take seconds to start: do it while the instance, the classes
    # and the model are being looked up (an incremental run is mostly such fixed costs).
    spark_starting = ThreadPoolExecutor(1, thread_name_prefix="spark-start").submit(
        _start_spark, resolved(defs.resources["spark"].master))
    try:
        layout = DataLayout.at(resolved(defs.resources["storage"].data_uri))
        classes = discover_classes(layout)
    except (StorageError, OSError) as error:
        terminal.error(str(error))
        _stop(spark_starting)
        return 2
    selected = args.fruit_class or classes
    unknown = sorted(set(selected) - set(classes))
    if unknown:
        terminal.error(f"no such class under {layout.training}: {', '.join(unknown)}")
        _stop(spark_starting)
        return 2

    instance = DagsterInstance.get()
    known = set(instance.get_dynamic_partitions(fruit_class_partitions.name))
    new = [c for c in classes if c not in known]
    if new:
        instance.add_dynamic_partitions(fruit_class_partitions.name, new)
    ordered = instance.get_dynamic_partitions(fruit_class_partitions.name)
    terminal.say(f"{len(classes)} classes under {layout.training} ({len(new)} newly registered); "
                 f"materializing {len(selected)}")
    # Dagster's event stream: at INFO on the terminal with --verbose, else all of it to the log file.
    log_level = "INFO" if terminal.verbosity >= VERBOSE else "DEBUG"
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}

    # One Spark application for the whole command: every run below reuses it (and the model
    # each Python worker already built). Started while the instance is being read.
    session = spark_starting.result()
    summary: dict[str, dict] = {}
    progress.add_listener(progress_display)
    try:
        steps = [("convert_model", None)] if _model_needs_converting(layout) else []
        steps += [("embed_classes", r) for r in contiguous_ranges(selected, ordered)]
        steps.append(("fit_pca", None))
        steps += [("reduce_classes", r) for r in contiguous_ranges(selected, ordered)]
        for number, (job_name, key_range) in enumerate(steps, 1):
            tags = {}
            label = job_name
            if key_range:
                tags = {"dagster/asset_partition_range_start": key_range[0],
                        "dagster/asset_partition_range_end": key_range[1]}
                label += f" [{key_range[0]} .. {key_range[1]}]" if key_range[0] != key_range[1] else f" [{key_range[0]}]"
            run_id = str(uuid.uuid4())
            terminal.say(f"[{number}/{len(steps)}] {label}  (run {run_id[:8]})")
            result = defs.resolve_job_def(job_name).execute_in_process(
                instance=instance, tags=tags, run_config=run_config, run_id=run_id, raise_on_error=False
            )
            progress_display.close()
            if not result.success:
                terminal.error(f"run {result.run_id} of {job_name} failed: {_failure_message(result)}")
                terminal.error(f"run log: {terminal.log_path}")
                return 1
            for asset, metadata in _materializations(result).items():
                summary[asset] = metadata
    finally:
        progress.remove_listener(progress_display)
        session.stop()

    embeddings = summary.get("image_embeddings", {})
    pca = summary.get("pca_model", {})
    reduced = summary.get("reduced_features", {})
    say = terminal.always
    say("\nsummary")
    say(f"  classes              {len(selected)}")
    say(f"  images               {embeddings.get('num_images')} "
        f"({embeddings.get('num_embedded')} embedded, {embeddings.get('num_quarantined')} quarantined)")
    say(f"  embedding            {embeddings.get('num_featurized')} featurized now, {embeddings.get('num_reused')} reused, "
        f"{embeddings.get('images_per_second')} images/s ({embeddings.get('inference_engine')})")
    say(f"  PCA k                {pca.get('k')} (explained variance {pca.get('explained_variance')}, "
        f"target {pca.get('variance_target')})")
    say(f"  reduced features     {reduced.get('output_path')}")
    say(f"  total time           {time.perf_counter() - started:.1f} s")
    if terminal.verbosity < VERBOSE:
        say(f"  run log              {terminal.log_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from fruit_assets.featurize.model import DEFAULT_RANDOM_SEED

    parser = argparse.ArgumentParser(prog="fruit-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample", help="write a synthetic Fruits-360-style dataset")
    sample.add_argument("dest", help="root to write Training/<Class>/ under (path, file:// or s3://)")
    sample.add_argument("--classes", type=int, default=5)
    sample.add_argument("--images", type=int, default=40)
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=cmd_sample)

    upload = commands.add_parser("upload", help="copy a local folder to s3:// like `aws s3 sync`")
    upload.add_argument("src", help="local folder, e.g. fruits-360/Training")
    upload.add_argument("dest", help="destination, e.g. s3://bucket/prefix/Training")
    upload.add_argument("--threads", type=int, default=16)
    upload.add_argument("--quiet", action="store_true", help="no progress bar")
    upload.set_defaults(func=cmd_upload)

    materialize = commands.add_parser("materialize", help="materialize every asset for all (or some) classes")
    materialize.add_argument("--class", dest="fruit_class", action="append", metavar="NAME",
                             help="a class to materialize (repeatable); default all")
    loudness = materialize.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="show Dagster's run log (INFO) and Spark/TensorFlow output on the terminal")
    loudness.add_argument("-q", "--quiet", action="store_true", help="print only errors and the summary")
    materialize.set_defaults(func=cmd_materialize)

    ui = commands.add_parser("ui", help="start the Dagster UI (dagster dev) on the same DAGSTER_HOME")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--host", default="127.0.0.1")
    ui.set_defaults(func=cmd_ui)

    bake_model = commands.add_parser("bake-model", help="convert the model into a container image at build time")
    bake_model.add_argument("--into", required=True, help="folder of the image's own model registry (FRUIT_BAKED_MODELS)")
    bake_model.add_argument("--weights", default=os.environ.get("FRUIT_MODEL_WEIGHTS", "imagenet"),
                            help="imagenet | random | a weights file (default: FRUIT_MODEL_WEIGHTS)")
    bake_model.add_argument("--seed", type=int, default=DEFAULT_RANDOM_SEED, help="for random weights")
    bake_model.set_defaults(func=cmd_bake_model)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
