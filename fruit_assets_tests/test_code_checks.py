"""Lint, format and types over fruit_assets/ (configured in pyproject.toml), as CI runs them."""

import os
import shutil
import subprocess
import sys

from fruit_assets_tests.harness import REPO

BIN = os.path.dirname(sys.executable)


def ruff(*args: str, cwd: str = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(BIN, "ruff"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def pyright(cwd: str = REPO) -> subprocess.CompletedProcess:
    # The interpreter running the tests is the environment the package's imports resolve in.
    # The project's own configuration, named: pyright would otherwise take the first one it finds above.
    return subprocess.run([os.path.join(BIN, "pyright"), "--project", os.path.join(cwd, "pyproject.toml"),
                           "--pythonpath", sys.executable], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing_and_the_code_is_formatted():
    lint = ruff("check", "--no-cache")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    formatted = ruff("format", "--check", "--no-cache")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_pyright_finds_no_type_error():
    result = pyright()
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr
    assert "0 errors" in result.stdout


def planted_copy(tmp_path, module: str, code: str) -> int:
    """fruit_assets/ and pyproject.toml copied, ``code`` appended to ``module``: the number of its last line."""
    shutil.copytree(os.path.join(REPO, "fruit_assets"), tmp_path / "fruit_assets",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(REPO, "pyproject.toml"), tmp_path / "pyproject.toml")
    path = tmp_path / "fruit_assets" / module
    lines = path.read_text().count("\n")
    with open(path, "a") as handle:
        handle.write(code)
    return lines + code.count("\n")


def test_the_checks_bite_on_a_planted_type_error_and_an_unused_import(tmp_path):
    line = planted_copy(tmp_path, "featurize/images.py", "\n\ndef planted() -> int:\n    return 'not an int'\n")
    result = pyright(cwd=str(tmp_path))
    assert result.returncode != 0
    assert f"images.py:{line}:" in result.stdout, result.stdout[-3000:]
    (tmp_path / "fruit_assets" / "featurize" / "images.py").write_text(
        "import os\n" + (tmp_path / "fruit_assets" / "featurize" / "images.py").read_text())
    lint = ruff("check", "--no-cache", cwd=str(tmp_path))
    assert lint.returncode != 0 and "F401" in lint.stdout and "images.py:1:8" in lint.stdout, lint.stdout
