"""The container image: a build from a clean state, then the rebuild after a code change (the layer
order's point: dependencies are not reinstalled), the image's size by layer, and a container's
start-up against the same command on the host.

    .venv/bin/python benchmarks/image_build.py        (as root, podman + runc + debootstrap installed)

Builds a copy of the tracked files (the working tree is never touched) as fruit-assets:bench.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "fruit-assets:bench"
ENV = {**os.environ, "CONTAINERS_CONF": os.path.join(REPO, "docker", "podman", "containers.conf"), "FRUIT_IMAGE": IMAGE}


def build(context: str, *extra: str) -> tuple[float, str]:
    started = time.monotonic()
    result = subprocess.run([os.path.join(context, "docker", "build-local.sh"), "--build-arg", "MODEL_WEIGHTS=random",
                             *extra], env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"build failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return time.monotonic() - started, result.stdout + result.stderr


def steps_run(output: str) -> list[str]:
    """The RUN steps that really ran (the others say "Using cache")."""
    ran, current = [], None
    for line in output.splitlines():
        match = re.match(r"STEP \d+/\d+: (RUN .*)", line)
        if match:
            current = match.group(1)[:70]
            ran.append(current)
        elif line.startswith("--> Using cache") and current in ran:
            ran.remove(current)
    return ran


def timed(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(command, env=ENV, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    context = tempfile.mkdtemp(prefix="image-build-")
    try:
        files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
        for name in files:
            os.makedirs(os.path.join(context, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), os.path.join(context, name))

        cold, _ = build(context, "--no-cache")
        with open(os.path.join(context, "fruit_assets", "cli", "main.py"), "a") as handle:
            handle.write("\n# a code change\n")
        rebuild, output = build(context)
        ran = steps_run(output)
        size = int(subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", IMAGE], env=ENV,
                                  capture_output=True, text=True, check=True).stdout)
        layers = subprocess.run(["podman", "history", "--format", "{{.Size}}\t{{.CreatedBy}}", IMAGE], env=ENV,
                                capture_output=True, text=True, check=True).stdout.splitlines()

        # Start-up: the container's `fruit-assets --help` (Python imports only) against the host's.
        in_container = min(timed(["podman", "run", "--rm", "--network", "none", IMAGE, "fruit-assets", "--help"])
                           for _ in range(3))
        on_host = min(timed([os.path.join(REPO, ".venv", "bin", "fruit-assets"), "--help"]) for _ in range(3))
    finally:
        shutil.rmtree(context, ignore_errors=True)

    print(f"build from a clean state (local base present)   {cold:7.1f} s")
    print(f"rebuild after a code change                      {rebuild:7.1f} s   ({rebuild / cold:.2f}x)")
    print("  RUN steps that ran again:")
    for step in ran:
        print(f"    {step}")
    print(f"image size                                       {size / 1e9:7.2f} GB")
    print("  largest layers:")
    for line in sorted(layers, key=lambda l: -_bytes(l.split("\t")[0]))[:4]:
        layer_size, created_by = line.split("\t", 1)
        print(f"    {layer_size:>9}  {created_by[:80]}")
    print(f"`fruit-assets --help`: container {in_container:.2f} s, host {on_host:.2f} s "
          f"({in_container / on_host:.2f}x, container start included)")


def _bytes(text: str) -> float:
    number, unit = text.split()
    return float(number) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]


if __name__ == "__main__":
    main()
