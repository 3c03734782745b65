"""Writers fenced: two writers of one root, one of them slow (alive, its lease renewed) or stalled
whole past its lease (SIGSTOP), the other publishing and recovering meanwhile; a switch whose
answer is lost; a step whose base went stale; kills inside recovery and inside an undo. Whatever
the interleaving, the current version names only files that exist, holds one writer's rows, and no
stale writer overwrites a newer version. On local files and on the S3 test server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fruit_assets.storage import normalize_uri, open_store
from fruit_assets.storage.versions import ConcurrentPublicationError, current_version, publish, recover
from fruit_assets_tests.harness import REPO
from fruit_assets_tests.harness.fault_proxy import FaultProxy, Reset
from fruit_assets_tests.storage.test_versions import (
    assert_one_complete_version, plain_listing, root, stage_rows, wait_for_leases_to_run_out,
)

__all__ = ["root"]  # the fixture, shared with test_versions

WRITER = """
import sys
sys.path.insert(0, {repo!r})
from fruit_assets_tests.storage.test_versions import stage_rows
from fruit_assets.storage.versions import publish
root = {root!r}
publish(root, {name!r}, {{"embeddings": {{"Apple": stage_rows(root, {name!r}, "Apple", {name!r})}}}})
"""


def start_writer(root: str, name: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER.format(repo=REPO, root=root, name=name)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stopped(process: subprocess.Popen) -> bool:
    with open(f"/proc/{process.pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] == "T"


def wait_until(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.1)


def assert_current_version_whole(root: str, label: str) -> None:
    store = open_store(root)
    version = current_version(root)
    assert all(store.exists(uri) for uri in version.uris("embeddings")), "the current version names a missing file"
    assert_one_complete_version(root, {"Apple": label})
    assert plain_listing(root) == sorted(version.uris("embeddings"))


def test_a_slow_writer_whose_lease_is_live_keeps_its_files_and_then_loses_to_the_newer_version(root, tmp_path):
    publish(root, "first", {"embeddings": {"Apple": stage_rows(root, "first", "Apple", "first")}})
    hold = tmp_path / "hold"
    slow = start_writer(root, "slow", {"FRUIT_PUBLICATION_KILL_AT": "switch", "FRUIT_PUBLICATION_FAULT": "hold",
                                       "FRUIT_PUBLICATION_HOLD_FILE": str(hold)})
    wait_until(hold.exists, slow)
    time.sleep(float(os.environ["FRUIT_PUBLICATION_LEASE_SECONDS"]) + 1.5)  # longer than a lease: renewed
    [intent] = list(open_store(root).list_objects(f"{root}/_publications/_pending"))
    slow_files = [i.uri for i in open_store(root).list_objects(f"{root}/embeddings") if "-slow-" in i.uri]
    assert len(slow_files) == 2

    publish(root, "fast", {"embeddings": {"Apple": stage_rows(root, "fast", "Apple", "fast")}})
    # The fast writer's recovery and cleanup left the live writer's intent and copies alone.
    assert open_store(root).exists(intent.uri) and all(open_store(root).exists(uri) for uri in slow_files)

    hold.unlink()
    output = slow.communicate(timeout=120)[0]
    assert slow.returncode == 1 and "ConcurrentPublicationError" in output, output[-3000:]
    assert "another writer published version 2" in output and "while this one copied its files" in output
    assert_current_version_whole(root, "fast")
    assert not any(open_store(root).exists(uri) for uri in slow_files)
    assert list(open_store(root).list_objects(f"{root}/_publications/_pending")) == []


@pytest.mark.parametrize("stop_at", ["switch", "copy:1"])
def test_a_writer_stalled_past_its_lease_is_fenced_and_cannot_switch_when_it_wakes(root, stop_at):
    publish(root, "first", {"embeddings": {"Apple": stage_rows(root, "first", "Apple", "first")}})
    stalled = start_writer(root, "stalled", {"FRUIT_PUBLICATION_KILL_AT": stop_at, "FRUIT_PUBLICATION_FAULT": "stop"})
    try:
        wait_until(lambda: stopped(stalled), stalled)
        wait_for_leases_to_run_out()
        # The next writer's recovery takes it for dead: fences it (claims the version it would
        # create), deletes its copies and its intent, then publishes on top.
        publish(root, "next", {"embeddings": {"Apple": stage_rows(root, "next", "Apple", "next")}})
        assert current_version(root).number == 3  # 2 claimed by the fence (a copy of 1), 3 this writer's
        assert_current_version_whole(root, "next")
    finally:
        stalled.send_signal(signal.SIGCONT)
    output = stalled.communicate(timeout=120)[0]
    assert stalled.returncode == 1 and "ConcurrentPublicationError" in output, output[-3000:]
    assert "fenced off" in output
    assert current_version(root).number == 3
    assert_current_version_whole(root, "next")


def test_a_writer_fenced_before_its_base_was_superseded_still_cannot_switch(root):
    """The fence claims nothing when the stalled writer's base is already superseded: the version
    after its base exists, so its create-if-absent is refused."""
    publish(root, "first", {"embeddings": {"Apple": stage_rows(root, "first", "Apple", "first")}})
    stalled = start_writer(root, "stalled", {"FRUIT_PUBLICATION_KILL_AT": "switch", "FRUIT_PUBLICATION_FAULT": "stop"})
    try:
        wait_until(lambda: stopped(stalled), stalled)
        publish(root, "other", {"embeddings": {"Apple": stage_rows(root, "other", "Apple", "other")}})
        wait_for_leases_to_run_out()
        recover(root)
    finally:
        stalled.send_signal(signal.SIGCONT)
    output = stalled.communicate(timeout=120)[0]
    assert stalled.returncode == 1 and "ConcurrentPublicationError" in output, output[-3000:]
    assert current_version(root).number == 2
    assert_current_version_whole(root, "other")


def test_a_base_that_went_stale_is_a_conflict_never_an_overwrite(root):
    publish(root, "first", {"embeddings": {"Apple": stage_rows(root, "first", "Apple", "first")}})
    read_by_the_step = current_version(root).number
    publish(root, "meanwhile", {"embeddings": {"Apple": stage_rows(root, "meanwhile", "Apple", "meanwhile")}})
    with pytest.raises(ConcurrentPublicationError, match="since version 1, which this step read"):
        publish(root, "late", {"embeddings": {"Apple": stage_rows(root, "late", "Apple", "late")}},
                expected_base=read_by_the_step)
    assert_current_version_whole(root, "meanwhile")


@pytest.mark.parametrize("checkpoint", ["recover", "recover:2", "undo"])
def test_kills_inside_recovery_and_inside_an_undo_leave_a_whole_version(root, checkpoint):
    publish(root, "first", {"embeddings": {"Apple": stage_rows(root, "first", "Apple", "first")}})
    # Two dead writers for the recovery to work through (a kill in the second with recover:2).
    for name in ("dead1", "dead2"):
        dead = start_writer(root, name, {"FRUIT_PUBLICATION_KILL_AT": "copy:1"})
        assert dead.wait(timeout=120) == -9
    if checkpoint == "undo":
        # A writer whose base goes stale while it copies undoes its copies: killed in the middle.
        hold_then_kill = start_writer(root, "undone", {"FRUIT_PUBLICATION_KILL_AT": "switch",
                                                        "FRUIT_PUBLICATION_FAULT": "stop"})
        wait_until(lambda: stopped(hold_then_kill), hold_then_kill)
        publish(root, "winner", {"embeddings": {"Apple": stage_rows(root, "winner", "Apple", "winner")}})
        hold_then_kill.send_signal(signal.SIGCONT)
        hold_then_kill.wait(timeout=120)
        label = "winner"
        killed_env = {"FRUIT_PUBLICATION_KILL_AT": "undo"}
    else:
        label = "first"
        killed_env = {"FRUIT_PUBLICATION_KILL_AT": checkpoint}
    wait_for_leases_to_run_out()
    # The recovering (or undoing) process is killed in the middle, twice in a row.
    for _ in range(2):
        killed = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {REPO!r}); "
                                 f"from fruit_assets.storage.versions import recover; recover({root!r})"],
                                env={**os.environ, **killed_env}, capture_output=True, timeout=120)
        assert killed.returncode in (0, -9)
        assert_one_complete_version(root, {"Apple": label})
        assert all(open_store(root).exists(u) for u in current_version(root).uris("embeddings"))
    wait_for_leases_to_run_out()
    recover(root)
    assert_current_version_whole(root, label)
    assert list(open_store(root).list_objects(f"{root}/_publications/_pending")) == []


def test_a_switch_whose_answer_is_lost_is_settled_by_reading_it_back(s3_server, s3_bucket, monkeypatch):
    with FaultProxy(s3_server["endpoint"], seed=3) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no retry by boto: the answer is simply lost
        root = f"s3://{s3_bucket}/data"
        publish(root, "first", {"embeddings": {"Apple": stage_rows(root, "first", "Apple", "first")}})
        proxy.add_rule(Reset(answer_lost=True), method="PUT", key="/_publications/v0000000002.json", first=1)
        staged = stage_rows(root, "second", "Apple", "second")
        version = publish(root, "second", {"embeddings": {"Apple": staged}})
        [lost] = proxy.requests(method="PUT", key="/_publications/v0000000002.json")
        assert lost.action == "reset_answer_lost"
        assert version.number == 2 == current_version(root).number
        assert_current_version_whole(root, "second")


@pytest.mark.slow
def test_two_dagster_instances_on_one_root_the_first_held_at_its_switch(sample_root, tmp_path):
    """`fruit-assets materialize` from two Dagster instances on one root: the first is held at the
    switch of its reduced features while the second runs whole; released, the first's publication
    is refused (its base is stale), and at every point the current version names only files that
    exist and models/pca/pca.npz is the basis of the published rows."""
    from fruit_assets import read_reduced_features
    from fruit_assets.pca import load_pca

    cli = os.path.join(os.path.dirname(sys.executable), "fruit-assets")
    root = normalize_uri(sample_root)
    store = open_store(root)
    plain_basis = f"{root}/models/pca/pca.npz"

    def env(home: str, **extra: str) -> dict[str, str]:
        (tmp_path / home).mkdir(exist_ok=True)
        return {**os.environ, "FRUIT_DATA_URI": sample_root, "DAGSTER_HOME": str(tmp_path / home),
                "FRUIT_MODEL_WEIGHTS": "random", "FRUIT_PCA_VARIANCE": "0.9", **extra}

    def assert_consistent() -> None:
        version = current_version(root)
        assert all(store.exists(uri) for dataset in ("embeddings", "quarantine", "reduced_features")
                   for uri in version.uris(dataset))
        if version.pca is None:
            assert not store.exists(plain_basis)
            return
        model = load_pca(store.read_bytes(plain_basis))
        assert model.fingerprint == version.pca["fingerprint"]
        features = read_reduced_features(root)
        assert {len(row) for row in features["features"].to_pylist()} == {model.k}

    hold = tmp_path / "hold"
    first = subprocess.Popen([cli, "materialize", "-q"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env("first", FRUIT_PUBLICATION_KILL_AT="switch@reduced_features",
                                     FRUIT_PUBLICATION_FAULT="hold", FRUIT_PUBLICATION_HOLD_FILE=str(hold)))
    try:
        wait_until(hold.exists, first, timeout=600)
        assert_consistent()  # the first's fitted basis is not what a plain reader opens
        second = subprocess.run([cli, "materialize", "-q"], capture_output=True, text=True, timeout=600,
                                env=env("second"))
        assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
        assert_consistent()
    finally:
        hold.unlink(missing_ok=True)
    output = first.communicate(timeout=600)[0]
    assert first.returncode == 1, output[-3000:]
    assert "another writer published version" in output and "while this one copied its files" in output
    assert_consistent()
    assert list(store.list_objects(f"{root}/_publications/_pending")) == []
