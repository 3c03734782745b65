"""The package's layers (.importlinter), checked with import-linter as CI runs it."""

import os
import shutil
import subprocess
import sys

from fruit_assets_tests.harness import REPO

LINT_IMPORTS = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def lint_imports(cwd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": cwd}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_every_import_contract_is_kept():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout


def test_a_pure_module_importing_the_command_line_breaks_the_contracts_and_is_named(tmp_path):
    """The contracts bite: the image decoder importing the CLI (a layer above it) is reported,
    with the offending import, by two contracts (the layers and the plain-layers ban)."""
    shutil.copytree(os.path.join(REPO, "fruit_assets"), tmp_path / "fruit_assets",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(REPO, ".importlinter"), tmp_path / ".importlinter")
    images = tmp_path / "fruit_assets" / "featurize" / "images.py"
    images.write_text(images.read_text() + "\n\ndef _demo():\n    from fruit_assets.cli.sample import write_sample_dataset\n")
    result = lint_imports(str(tmp_path))
    assert result.returncode != 0
    assert "Contracts: 2 kept, 2 broken." in result.stdout
    assert "fruit_assets.featurize.images -> fruit_assets.cli.sample" in result.stdout
