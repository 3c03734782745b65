"""``fruit-assets``: sample data, and the whole graph materialized through Dagster."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import time


def cmd_sample(args) -> int:
    from fruit_assets.cli.sample import write_sample_dataset

    started = time.perf_counter()
    count = write_sample_dataset(args.dest, args.classes, args.images, args.seed)
    print(
        f"wrote {count} images in {args.classes} classes under {args.dest}/Training "
        f"({time.perf_counter() - started:.1f} s)"
    )
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
    print(
        f"{report.files} files: {report.uploaded} uploaded ({report.bytes_uploaded / 1e6:.1f} MB), "
        f"{report.skipped} already there; {time.perf_counter() - started:.1f} s"
    )
    return 0


def cmd_bake_model(args) -> int:
    """Image builds: the model for FRUIT_MODEL_WEIGHTS converted into the image (models/baked.py)."""
    from fruit_assets.errors import UserFacingError
    from fruit_assets.models.build import bake

    started = time.perf_counter()
    try:
        record = bake(args.weights, args.seed, args.into, args.weights_sha256)
    except UserFacingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    checked = "weights file SHA-256 as expected" if args.weights_sha256.strip() else "weights SHA-256 not checked"
    print(
        f"baked {record.source} ({record.fingerprint}, sha256 {record.sha256[:12]}) into {args.into}: {checked}; "
        f"parity with TensorFlow {record.parity_max_rel:.1e} relative; {time.perf_counter() - started:.1f} s"
    )
    return 0


def cmd_recover(args) -> int:
    """Between publications: settles what dead ones left, deletes superseded files past the grace
    period (storage/versions.tidy; the hourly schedule tidy_publications does the same)."""
    from fruit_assets.errors import UserFacingError
    from fruit_assets.layout import DataLayout
    from fruit_assets.storage.versions import grace_seconds, tidy

    root = DataLayout.at(args.root or os.environ.get("FRUIT_DATA_URI", "./data")).root
    try:
        dead = tidy(root)
    except UserFacingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{root}: {len(dead)} dead publication(s) recovered; files superseded more than "
        f"{grace_seconds():.0f} s ago deleted"
    )
    return 0


def cmd_ui(args) -> int:
    """``dagster dev`` on the instance ``fruit-assets materialize`` uses, set up the same way."""
    from fruit_assets.cli.console import prepare_dagster_home

    home = prepare_dagster_home()
    # The repository's workspace.yaml, written where an installed package can point at it: the
    # location keeps its name, fruit_assets (`dagster dev -m` would name it after the module).
    workspace = os.path.join(home, "workspace.yaml")
    with open(workspace, "w") as handle:
        handle.write(
            "load_from:\n  - python_module:\n      module_name: fruit_assets.definitions\n"
            "      location_name: fruit_assets\n"
        )
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    command = [
        dagster if os.path.exists(dagster) else "dagster",
        "dev",
        "-w",
        workspace,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    print(f"starting the Dagster UI at http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    os.execvp(command[0], command)
    return 0  # not reached


def cmd_spark_history(args) -> int:
    from fruit_assets.cli.history import run
    from fruit_assets.cli.materialize import command_settings
    from fruit_assets.layout import DataLayout

    root = DataLayout.at(command_settings().data_uri).root
    return run(root, args.port, args.host, args.cache, args.interval, args.sync_only)


def cmd_materialize(args) -> int:
    from fruit_assets.cli.materialize import materialize

    return materialize(
        args.fruit_class, verbose=args.verbose, quiet=args.quiet, allow_mass_deletion=args.allow_mass_deletion
    )


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
    materialize.add_argument(
        "--class",
        dest="fruit_class",
        action="append",
        metavar="NAME",
        help="a class to materialize (repeatable); default all",
    )
    materialize.add_argument(
        "--allow-mass-deletion",
        action="store_true",
        help="remove the outputs of the classes gone from Training/ even if Training/ is "
        "empty or lost more than half of its classes (refused otherwise)",
    )
    loudness = materialize.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show Dagster's run log (INFO) and Spark/TensorFlow output on the terminal",
    )
    loudness.add_argument("-q", "--quiet", action="store_true", help="print only errors and the summary")
    materialize.set_defaults(func=cmd_materialize)

    recover = commands.add_parser(
        "recover",
        help="clean what dead publications left and superseded files past "
        "the grace period, without waiting for the next publication",
    )
    recover.add_argument("root", nargs="?", help="the data root (default: FRUIT_DATA_URI, else ./data)")
    recover.set_defaults(func=cmd_recover)

    ui = commands.add_parser("ui", help="start the Dagster UI (dagster dev) on the same DAGSTER_HOME")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--host", default="127.0.0.1")
    ui.set_defaults(func=cmd_ui)

    history = commands.add_parser(
        "spark-history", help="Spark's History Server over <FRUIT_DATA_URI>/spark-events (every run's Spark jobs)"
    )
    history.add_argument("--port", type=int, default=18080)
    history.add_argument("--host", default="127.0.0.1")
    history.add_argument("--cache", help="local folder the event logs are copied into (default: a temporary one)")
    history.add_argument("--interval", type=float, default=10.0, help="seconds between two copies of new logs")
    history.add_argument(
        "--sync-only",
        action="store_true",
        help="only keep the cache in sync (a sidecar beside a History Server container)",
    )
    history.set_defaults(func=cmd_spark_history)

    bake_model = commands.add_parser("bake-model", help="convert the model into a container image at build time")
    bake_model.add_argument(
        "--into", required=True, help="folder of the image's own model registry (FRUIT_BAKED_MODELS)"
    )
    bake_model.add_argument(
        "--weights",
        default=os.environ.get("FRUIT_MODEL_WEIGHTS", "imagenet"),
        help="imagenet | random | a weights file (default: FRUIT_MODEL_WEIGHTS)",
    )
    bake_model.add_argument("--seed", type=int, default=DEFAULT_RANDOM_SEED, help="for random weights")
    bake_model.add_argument(
        "--weights-sha256",
        default="",
        help="refuse a weights file (for imagenet, Keras' download) with another SHA-256; "
        "production builds set it (docker build-arg MODEL_WEIGHTS_SHA256); empty: not checked",
    )
    bake_model.set_defaults(func=cmd_bake_model)

    args = parser.parse_args(argv)
    return args.func(args)


def console() -> None:
    """The ``fruit-assets`` command: ``main`` with the process ended once the command and every
    exit handler are done (logs flushed, Spark stopped, files closed), without the interpreter's
    own teardown. Finalizing what a materialization imports (Dagster, pyarrow, ONNX Runtime, py4j)
    took 0.8 s of a 15-s small update and leaves nothing a later reader could see."""
    code = [1]  # an exception out of main: Python prints it, then the handler below ends with 1

    def end() -> None:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code[0])

    atexit.register(end)  # registered first, so run last
    try:
        code[0] = main() or 0
    except SystemExit as exit_request:  # argparse's --help and usage errors
        code[0] = exit_request.code if isinstance(exit_request.code, int) else int(exit_request.code is not None)
        raise
    except KeyboardInterrupt:
        code[0] = 130
        raise
    sys.exit(code[0])


if __name__ == "__main__":
    console()
