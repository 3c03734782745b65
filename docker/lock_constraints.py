"""Prints the installed versions of fruit_assets' run-time dependencies (the closure of setup.py's
install_requires; development and benchmark extras left out), as pip constraints for the image."""

import os
import runpy
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


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

    for line in setup_py_requirements():
        requirement = Requirement(line)
        visit(requirement.name, tuple(requirement.extras))
    return found


if __name__ == "__main__":
    with open(__file__.replace("lock_constraints.py", "constraints.txt")) as current:
        print("".join(line for line in current if line.startswith("#")), end="")
    for _key, dist in sorted(runtime_closure().items()):
        print(f"{dist.metadata['Name']}=={dist.version}")
