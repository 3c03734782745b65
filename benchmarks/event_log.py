"""Bytes a run leaves in Dagster's event log at Fruits-360's width (210 classes), per asset.

    python benchmarks/event_log.py [--classes 210] [--images 3]

One real `fruit-assets materialize` process on local files (the embedded default, random weights
converted beforehand) over ``--classes`` classes: one ranged run for the partitioned assets, as a
backfill of every class is. Then, from the Dagster instance it used, every event of every run is
serialized as the event log stores it (``serialize_value``) and summed: the run's total, and the
materialization events of each asset with the largest single event. The pictures and per-class
tables are what grows with the number of classes; the images per class barely matter.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import materialize_env  # noqa: E402

BIN = os.path.dirname(sys.executable)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=210)
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args(argv)

    from fruit_assets.cli.sample import write_sample_dataset

    work = tempfile.mkdtemp(prefix="bench-event-log-")
    root, home = os.path.join(work, "data"), os.path.join(work, "home")
    os.makedirs(home)
    write_sample_dataset(root, args.classes, args.images, seed=1)
    env = materialize_env(work, root, home, "0.9")
    subprocess.run([f"{BIN}/fruit-assets", "materialize", "-q"], env=env, check=True, capture_output=True)

    from dagster import DagsterInstance
    from dagster._serdes import serialize_value  # how the event log stores an event

    os.environ["DAGSTER_HOME"] = home
    instance = DagsterInstance.get()
    total = 0
    per_asset: dict[str, list[int]] = defaultdict(list)
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            size = len(serialize_value(entry))
            total += size
            materialization = entry.asset_materialization
            if materialization is not None:
                per_asset[materialization.asset_key.to_user_string()].append(size)
    print(f"{args.classes} classes x {args.images} images: {total / 1e6:.2f} MB of events in "
          f"{len(instance.get_runs())} runs")
    print(f"{'asset':20s} {'events':>6s} {'bytes':>12s} {'largest event':>14s}")
    for asset, sizes in sorted(per_asset.items()):
        print(f"{asset:20s} {len(sizes):6d} {sum(sizes):12,d} {max(sizes):14,d}")


if __name__ == "__main__":
    main()
