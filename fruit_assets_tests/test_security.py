"""No credentials in the repository (detect-secrets over every tracked file)."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_repository_has_no_secrets():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    files = [f for f in files if not f.endswith((".png", ".jpg"))]
    scan = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "detect-secrets"), "scan", *files],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    findings = json.loads(scan.stdout)["results"]
    assert findings == {}, json.dumps(findings, indent=1)
