"""Prints docker/constraints.txt, the image's hash-pinned lock: fruit_assets' run-time dependencies
(the closure of setup.py's install_requires; development and benchmark extras left out) at the
versions installed here, each with the SHA-256 of every file PyPI publishes for that version that
the image's pip may choose (wheels for its CPython on glibc Linux, x86_64 or aarch64, and the sdist).

    .venv/bin/python docker/lock_constraints.py > docker/constraints.txt

The versions come from this environment, offline; only the hashes come from PyPI, read from its
Simple API (PEP 691 JSON): the index pip itself reads, so they are the hashes pip checks downloads
against. A CA bundle for a TLS-intercepting proxy is taken from PIP_CERT or REQUESTS_CA_BUNDLE."""

import json
import os
import re
import runpy
import ssl
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name, parse_sdist_filename,
                             parse_wheel_filename)
from packaging.version import Version

PYPI_SIMPLE = "https://pypi.org/simple"
# The base image, Debian bookworm: its python3 and its glibc decide which wheels pip accepts there.
IMAGE_PYTHON = (3, 11)
IMAGE_GLIBC_MINOR = 36
IMAGE_ARCHITECTURES = ("x86_64", "aarch64")
# The image's `pip install --no-build-isolation` builds pyspark (PyPI has only its sdist) and
# fruit_assets with what the venv holds: these must be in the lock (today's dependencies bring them;
# named so they stay), never fetched unhashed into a build environment.
BUILD_TOOLS = ("setuptools", "wheel")
LOCK_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?P<hashes>( --hash=sha256:[0-9a-f]{64})+)$")


def setup_py_requirements() -> list[str]:
    """install_requires as setup.py says now (installed metadata can predate an edit)."""
    import setuptools

    captured: dict = {}
    original = setuptools.setup
    setuptools.setup = lambda **arguments: captured.update(arguments)
    try:
        runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py"))
    finally:
        setuptools.setup = original
    return captured["install_requires"]


def runtime_closure() -> dict:
    """Canonical name -> installed distribution, for setup.py's requirements, what they require,
    and the build tools."""
    found: dict = {}

    def visit(name: str, extras: tuple[str, ...] = ()) -> None:
        key = canonicalize_name(name)
        if key in found:
            return
        try:
            found[key] = distribution(name)
        except PackageNotFoundError:
            return  # a requirement whose marker excludes this platform
        for line in found[key].requires or []:
            requirement = Requirement(line)
            if requirement.marker and not any(requirement.marker.evaluate({"extra": extra}) for extra in ("", *extras)):
                continue
            visit(requirement.name, tuple(requirement.extras))

    for line in [*setup_py_requirements(), *BUILD_TOOLS]:
        requirement = Requirement(line)
        visit(requirement.name, tuple(requirement.extras))
    return found


def image_tags(architecture: str) -> frozenset:
    """The wheel tags the image's pip accepts on ``architecture``."""
    platforms = [f"manylinux_2_{minor}_{architecture}" for minor in range(IMAGE_GLIBC_MINOR, 4, -1)]
    platforms += [f"manylinux2014_{architecture}", f"linux_{architecture}"]
    if architecture == "x86_64":
        platforms += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    interpreter = f"cp{IMAGE_PYTHON[0]}{IMAGE_PYTHON[1]}"
    return frozenset([*cpython_tags(IMAGE_PYTHON, abis=[interpreter], platforms=platforms),
                      *compatible_tags(IMAGE_PYTHON, interpreter, platforms)])


def files_for_image(version: str, files: list[dict]) -> dict[str, list[dict]]:
    """Architecture -> the files of ``version``, of an index page's, that the image's pip may
    install there: the wheels its tags accept, and the sdist."""
    wanted = Version(version)
    tags = {architecture: image_tags(architecture) for architecture in IMAGE_ARCHITECTURES}
    chosen: dict[str, list[dict]] = {architecture: [] for architecture in IMAGE_ARCHITECTURES}
    for file in files:
        filename = file["filename"]
        try:
            if filename.endswith(".whl"):
                _name, file_version, _build, file_tags = parse_wheel_filename(filename)
                architectures = [a for a in IMAGE_ARCHITECTURES if file_tags & tags[a]]
            else:
                _name, file_version = parse_sdist_filename(filename)
                architectures = list(IMAGE_ARCHITECTURES)
        except (InvalidWheelFilename, InvalidSdistFilename):
            continue  # eggs, installers: nothing pip installs
        if file_version == wanted:
            for architecture in architectures:
                chosen[architecture].append(file)
    return chosen


def lock_line(name: str, version: str, sha256s) -> str:
    return f"{name}=={version} " + " ".join(f"--hash=sha256:{digest}" for digest in sorted(set(sha256s)))


def read_lock(path: str) -> dict[str, tuple[str, str, list[str]]]:
    """Canonical name -> (name, version, sha256s) of each package in a lock this script wrote."""
    pins = {}
    with open(path) as handle:
        for line in handle:
            if line.strip() and not line.startswith("#"):
                match = LOCK_LINE.match(line.rstrip("\n"))
                if match is None:
                    raise ValueError(f"{path}: not a hash-pinned lock line: {line[:120]!r}")
                key = canonicalize_name(match["name"])
                if key in pins:
                    raise ValueError(f"{path}: {match['name']} locked twice")
                pins[key] = (match["name"], match["version"], re.findall(r"sha256:([0-9a-f]{64})", match["hashes"]))
    return pins


def index_files(name: str) -> list[dict]:
    """The files PyPI lists for ``name``: [{"filename": ..., "hashes": {"sha256": ...}}, ...]."""
    cafile = os.environ.get("PIP_CERT") or os.environ.get("REQUESTS_CA_BUNDLE") or None
    request = urllib.request.Request(f"{PYPI_SIMPLE}/{canonicalize_name(name)}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=cafile), timeout=120) as response:
        return json.load(response)["files"]


def lock_entry(dist) -> tuple[str, dict[str, list[dict]]]:
    name, version = dist.metadata["Name"], dist.version
    chosen = files_for_image(version, index_files(name))
    if not any(chosen.values()):
        raise SystemExit(f"PyPI has no file of {name} {version} that the image could install")
    sha256s = [file["hashes"]["sha256"] for files in chosen.values() for file in files]
    return lock_line(name, version, sha256s), chosen


if __name__ == "__main__":
    with open(__file__.replace("lock_constraints.py", "constraints.txt")) as current:
        header = "".join(line for line in current if line.startswith("#"))
    closure = [dist for _key, dist in sorted(runtime_closure().items())]
    with ThreadPoolExecutor(8) as pool:
        entries = list(pool.map(lock_entry, closure))
    print(header, end="")
    for line, _chosen in entries:
        print(line)
    for architecture in IMAGE_ARCHITECTURES:
        missing = [line.split("==")[0] for line, chosen in entries if not chosen[architecture]]
        if missing:
            print(f"no file for {architecture} (the image cannot install these there): {', '.join(missing)}",
                  file=sys.stderr)
