"""docker/constraints.txt, the image's hash-pinned lock, and docker/lock_constraints.py that writes
it: offline (the hashes come from PyPI only when the lock is regenerated)."""

import hashlib
import os
import subprocess
import sys
import zipfile

import pytest

from fruit_assets_tests.harness import REPO

LOCK = os.path.join(REPO, "docker", "constraints.txt")

sys.path.insert(0, os.path.join(REPO, "docker"))
try:
    import lock_constraints
finally:
    sys.path.pop(0)


def test_every_locked_package_is_pinned_with_sha256_hashes_as_the_lock_script_writes_them():
    pins = lock_constraints.read_lock(LOCK)  # raises on any line that is not name==version --hash=sha256:...
    assert len(pins) >= 100 and all(sha256s for _name, _version, sha256s in pins.values())
    with open(LOCK) as handle:
        lines = handle.read().splitlines()
    header = [line for line in lines if line.startswith("#")]
    assert lines[:len(header)] == header and "--require-hashes" in " ".join(header)
    assert lines[len(header):] == [lock_constraints.lock_line(*pins[key]) for key in sorted(pins)]
    # The Dockerfile builds with --no-build-isolation: what builds sdists comes from the lock too.
    assert set(lock_constraints.BUILD_TOOLS) <= set(pins)
    assert set(lock_constraints.BUILD_TOOLS) <= set(lock_constraints.runtime_closure())


NUMPY_FILES = [
    "numpy-2.4.6.tar.gz",
    "numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    "numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
    "numpy-2.4.6-cp311-cp311-musllinux_1_2_x86_64.whl",
    "numpy-2.4.6-cp311-cp311-macosx_14_0_arm64.whl",
    "numpy-2.4.6-cp311-cp311-win_amd64.whl",
    "numpy-2.4.6-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    "numpy-2.4.6-cp311-cp311-manylinux_2_39_x86_64.whl",  # newer than bookworm's glibc 2.36
    "numpy-2.4.5-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    "numpy-2.4.5.tar.gz",
]


def chosen(version: str, filenames: list[str]) -> dict[str, list[str]]:
    """What files_for_image keeps of an index page listing ``filenames``, by architecture."""
    page = [{"filename": name, "hashes": {"sha256": hashlib.sha256(name.encode()).hexdigest()}} for name in filenames]
    return {architecture: sorted(file["filename"] for file in files)
            for architecture, files in lock_constraints.files_for_image(version, page).items()}


def test_the_lock_hashes_the_files_pip_in_the_image_may_install_on_either_architecture():
    assert chosen("2.4.6", NUMPY_FILES) == {
        "x86_64": ["numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", "numpy-2.4.6.tar.gz"],
        "aarch64": ["numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl", "numpy-2.4.6.tar.gz"],
    }
    abi3 = "grpcio_tools-1.0-cp39-abi3-manylinux2014_aarch64.whl"
    assert chosen("1.0", [abi3]) == {"x86_64": [], "aarch64": [abi3]}
    for pure in ("six-1.17.0-py2.py3-none-any.whl", "pyspark-4.3.0.tar.gz"):
        assert chosen(pure.split("-")[1].removesuffix(".tar.gz"), [pure]) == {"x86_64": [pure], "aarch64": [pure]}
    # PyPI has tensorflow-cpu for x86_64 only: nothing to hash for aarch64 (the lock script says so).
    tensorflow = "tensorflow_cpu-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl"
    assert chosen("2.21.0", [tensorflow]) == {"x86_64": [tensorflow], "aarch64": []}


def write_wheel(folder, name: str, version: str) -> str:
    """A real (tiny) wheel pip can install."""
    dist_info = f"{name}-{version}.dist-info"
    path = os.path.join(folder, f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        wheel.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{dist_info}/RECORD", "")
    return path


@pytest.mark.parametrize("listed", ["its own hash", "another file's hash"])
def test_pip_installs_a_lock_line_only_with_the_file_it_hashes(tmp_path, listed):
    """The lock script's line, read the way the Dockerfile reads it (no index: a local folder)."""
    wheel = write_wheel(str(tmp_path), "locked_example", "1.0")
    with open(wheel, "rb") as handle:
        own = hashlib.sha256(handle.read()).hexdigest()
    sha256 = own if listed == "its own hash" else hashlib.sha256(b"another file").hexdigest()
    lock = tmp_path / "lock.txt"
    lock.write_text(lock_constraints.lock_line("locked_example", "1.0", [sha256]) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--require-hashes", "--no-deps",
         "--no-index", "--find-links", str(tmp_path), "-r", str(lock)],
        capture_output=True, text=True, timeout=120,
    )
    if listed == "its own hash":
        assert result.returncode == 0 and "Would install locked_example-1.0" in result.stdout, result.stderr
    else:
        assert result.returncode != 0 and "THESE PACKAGES DO NOT MATCH THE HASHES" in result.stderr, result.stdout
        assert f"Got        {own}" in result.stderr
