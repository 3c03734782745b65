"""No credentials in the repository (detect-secrets over every tracked file), nor in anything a run leaves."""

import json
import os
import subprocess
import sys

import pytest

from fruit_assets_tests.harness import REPO



def test_repository_has_no_secrets():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    files = [f for f in files if not f.endswith((".png", ".jpg"))]
    scan = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "detect-secrets"), "scan", *files],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    findings = json.loads(scan.stdout)["results"]
    assert findings == {}, json.dumps(findings, indent=1)


@pytest.mark.slow
def test_no_credential_in_any_log_metadata_or_output(s3_server, s3_sample_root, weights_file, tmp_path):
    """The whole graph on S3 through the CLI, then a grep for the credentials in everything it left:
    its stdout and stderr (Dagster's and Spark's logs), every file of the Dagster instance (event log
    with all asset metadata, compute logs, run storage) and every object it wrote to the bucket."""
    from fruit_assets.storage import open_store

    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ, "FRUIT_DATA_URI": s3_sample_root, "FRUIT_MODEL_WEIGHTS": weights_file,
        "SPARK_MASTER": "local[2]", "FRUIT_PCA_VARIANCE": "0.9", "DAGSTER_HOME": str(home),
    }
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "fruit-assets"), "materialize"],
                            env=env, capture_output=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert b"36 embedded" in result.stdout

    secrets = [s3_server["AWS_SECRET_ACCESS_KEY"].encode()]
    haystacks = {"stdout": result.stdout, "stderr": result.stderr}
    for directory, _dirs, files in os.walk(home):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                haystacks[os.path.join(directory, name)] = handle.read()
    store = open_store(s3_sample_root)
    written = [info.uri for info in store.list_objects(s3_sample_root) if "/Training/" not in info.uri]
    assert any("resultats_features_parquet" in uri for uri in written)
    for uri in written:
        haystacks[uri] = store.read_bytes(uri)
    assert any(name.endswith(".db") for name in haystacks)  # the event log was searched
    for name, content in haystacks.items():
        for secret in secrets:
            assert secret not in content, f"credential found in {name}"
