"""checkov 3.3 over what the product deploys: infra/, docker/ (the Dockerfile and the executor pod
template) and the run Job that dagster-k8s' own code builds from the Helm values. Zero failed
checks; every skip carries a written reason. A new finding fails CI here."""

import os
import shutil

import pytest
import yaml

from fruit_assets_tests.harness import REPO
from fruit_assets_tests.harness.checkov import failed_checks, scan, skipped_checks
from fruit_assets_tests.harness.deployment import helm_values, run_job


def deployed_manifests(into) -> str:
    """One folder with every Kubernetes manifest, so checkov's graph checks (a NetworkPolicy for
    each pod) see the policies next to the pods they select."""
    folder = into / "manifests"
    folder.mkdir()
    for name in os.listdir(os.path.join(REPO, "infra")):
        if name.endswith(".yaml") and name != "cluster.yaml":  # cluster.yaml is eksctl's, not Kubernetes'
            shutil.copy(os.path.join(REPO, "infra", name), folder / name)
    shutil.copy(os.path.join(REPO, "docker", "executor-pod-template.yaml"), folder / "executor-pod-template.yaml")
    (folder / "run-job.yaml").write_text(yaml.safe_dump(run_job(helm_values())))
    return str(folder)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    kubernetes = scan(deployed_manifests(tmp_path_factory.mktemp("checkov")), ("kubernetes",))
    dockerfile = scan(os.path.join(REPO, "docker"), ("dockerfile",))
    return kubernetes + dockerfile


def test_checkov_finds_nothing(reports):
    scanned = {r["check_type"]: r["summary"] for r in reports}
    assert set(scanned) == {"kubernetes", "dockerfile"}
    assert scanned["kubernetes"]["passed"] > 200 and scanned["dockerfile"]["passed"] > 10
    assert failed_checks(reports) == []


def test_every_skip_says_why(reports):
    skips = skipped_checks(reports)
    assert skips, "the executor template's Spark-filled fields are skipped with reasons"
    for check in skips:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.split()) >= 5, f"{check['check_id']} on {check['resource']} skipped without a reason"


def test_a_new_finding_fails_the_scan(tmp_path):
    folder = deployed_manifests(tmp_path)
    job_file = os.path.join(folder, "run-job.yaml")
    with open(job_file) as handle:
        job = yaml.safe_load(handle)
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    with open(job_file, "w") as handle:
        yaml.safe_dump(job, handle)
    found = failed_checks(scan(folder, ("kubernetes",)))
    assert any(finding.startswith("CKV_K8S_16 ") for finding in found), found  # "Container should not be privileged"
