"""What a run costs when little or nothing changed, against the full run, in the same session.

    python benchmarks/lifecycle.py [--classes 6] [--images 200] [--new 10]

Each step is a real `fruit-assets materialize` process on local files (the embedded default,
local[*], random weights converted once beforehand so no step pays the conversion):
(a) the full run from scratch (the baseline);
(b) the same command again with nothing changed (target: at most 0.15x of (a), no run launched);
(c) `--new` new images in one class (target for a large root: 0.10x of (a));
(d) one class renamed (target: 0 images featurized).
Prints wall times, ratios to (a), and the featurized / reused counts from each summary.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

# The test harness's image helpers (fresh_jpeg) live beside the package, not in it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import materialize_env  # noqa: E402

BIN = os.path.dirname(sys.executable)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--new", type=int, default=10)
    parser.add_argument("--sample", default="", help="a folder keeping the generated Training/ across runs "
                        "(30,000 images take ~9 min to render here): made on first use, copied from then on")
    args = parser.parse_args(argv)

    from fruit_assets.cli.sample import write_sample_dataset
    from fruit_assets.featurize.synthetic import class_styles
    from fruit_assets_tests.harness.images import fresh_jpeg

    work = tempfile.mkdtemp(prefix="bench-lifecycle-")
    root, home = os.path.join(work, "data"), os.path.join(work, "home")
    if args.sample:
        if not os.path.isdir(os.path.join(args.sample, "Training")):
            write_sample_dataset(args.sample, args.classes, args.images, seed=1)
        shutil.copytree(os.path.join(args.sample, "Training"), os.path.join(root, "Training"))
    else:
        write_sample_dataset(root, args.classes, args.images, seed=1)
    env = materialize_env(work, root, home, "0.95")

    def materialize(label, *extra):
        started = time.perf_counter()
        result = subprocess.run([f"{BIN}/fruit-assets", "materialize", "-q", *extra], env=env,
                                capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - started
        counts = re.search(r"embedding\s+(\d+) featurized now, (\d+) reused", result.stdout)
        what = (f"{counts.group(1)} featurized, {counts.group(2)} reused" if counts
                else result.stdout.strip().splitlines()[0])
        return label, seconds, what

    classes = [name for name, _c, _a in class_styles(args.classes)]
    rows = [materialize(f"(a) full run, {args.classes} x {args.images} images")]
    rows.append(materialize("(b) nothing changed"))
    for index in range(args.new):
        with open(os.path.join(root, "Training", classes[0], f"new_{index}.jpg"), "wb") as handle:
            handle.write(fresh_jpeg(index))
    rows.append(materialize(f"(c) {args.new} new images in {classes[0]}"))
    os.rename(os.path.join(root, "Training", classes[1]), os.path.join(root, "Training", classes[1] + " Renamed"))
    rows.append(materialize(f"(d) {classes[1]} renamed"))
    full = rows[0][1]
    for label, seconds, what in rows:
        print(f"{label:45s} {seconds:7.1f} s  {seconds / full:5.2f}x  {what}")


if __name__ == "__main__":
    main()
