"""checkov 3.3, the infrastructure-as-code scanner, in a virtual environment of its own: it pins
boto3 and packaging below what the product needs, so it never shares the test environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fruit_assets_tests.harness import REPO

CHECKOV_VERSION = "3.3.30"
VENV = os.path.join(REPO, ".venv-checkov")


def checkov_executable() -> str:
    executable = os.path.join(VENV, "bin", "checkov")
    marker = os.path.join(VENV, f"checkov-{CHECKOV_VERSION}")
    if not os.path.exists(marker):
        base_python = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base_python, "-m", "venv", "--clear", VENV], check=True)
        install = subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", f"checkov=={CHECKOV_VERSION}"],
                                 capture_output=True, text=True)
        if install.returncode:
            raise RuntimeError(f"pip install checkov=={CHECKOV_VERSION} failed: {install.stderr[-2000:]}")
        open(marker, "w").close()
    return executable


def scan(directory: str, frameworks: tuple[str, ...]) -> list[dict]:
    """checkov's JSON reports for ``directory``, one per framework, offline (no platform mappings)."""
    result = subprocess.run(
        [checkov_executable(), "-d", directory, "--framework", *frameworks, "--output", "json",
         "--skip-download", "--compact"],
        capture_output=True, text=True, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"}, timeout=600,
    )
    if result.returncode not in (0, 1):  # 1: findings; anything else: checkov itself failed
        raise RuntimeError(f"checkov exited {result.returncode}: {result.stderr[-2000:]}")
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def failed_checks(reports: list[dict]) -> list[str]:
    return [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
            for report in reports for c in report.get("results", {}).get("failed_checks", [])]


def skipped_checks(reports: list[dict]) -> list[dict]:
    return [c for report in reports for c in report.get("results", {}).get("skipped_checks", [])]
