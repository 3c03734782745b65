"""Superseded files stay for a grace period counted from when their version stopped being current
(by the storage's clock), so readers of an older version finish; the basis a plain reader opens
(models/pca/pca.npz) changes only after the version whose rows use it. On local files and S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from fruit_assets.storage import open_store
from fruit_assets.storage.readers import read_published
from fruit_assets.storage.versions import (
    DEFAULT_GRACE_SECONDS, KEEP_VERSIONS, cleanup, current_version, grace_seconds, publish, recover, tidy,
)
from fruit_assets_tests.harness import REPO
from fruit_assets_tests.storage.test_versions import (
    assert_one_complete_version, plain_listing, root, stage_rows, wait_for_leases_to_run_out,
)

__all__ = ["root"]  # the fixture, shared with test_versions


def version_objects(root: str) -> list[str]:
    return [i.uri for i in open_store(root).list_objects(f"{root}/_publications", recursive=False)]


def test_the_default_grace_is_an_hour_and_keeps_what_a_reader_of_the_last_versions_needs(root, monkeypatch):
    monkeypatch.delenv("FRUIT_PUBLICATION_GRACE_SECONDS")
    assert grace_seconds() == DEFAULT_GRACE_SECONDS == 3600
    versions = []
    for round_ in range(KEEP_VERSIONS + 3):
        publish(root, f"r{round_}", {"embeddings": {"Apple": stage_rows(root, f"r{round_}", "Apple", f"r{round_}")}})
        versions.append(current_version(root))
    store = open_store(root)
    # Every version of the last hour, and the files each names, is still there for its readers.
    assert len(version_objects(root)) == KEEP_VERSIONS + 3
    assert all(store.exists(uri) for version in versions for uri in version.uris("embeddings"))
    # A plain reader meanwhile reads them all; the public reader reads the current version only.
    assert len(plain_listing(root)) == 2 * (KEEP_VERSIONS + 3)
    assert_one_complete_version(root, {"Apple": f"r{KEEP_VERSIONS + 2}"})
    # With no grace, the files of superseded versions go, and the log keeps its last KEEP_VERSIONS.
    cleanup(root, grace=0)
    assert plain_listing(root) == sorted(versions[-1].uris("embeddings"))
    assert len(version_objects(root)) == KEEP_VERSIONS


def test_the_grace_period_counts_from_when_a_version_was_superseded_not_from_its_creation(root):
    publish(root, "old", {"embeddings": {"Apple": stage_rows(root, "old", "Apple", "old")}})
    old = current_version(root)
    time.sleep(3.5)  # the old version is older than the grace period below, but current until now
    publish(root, "new", {"embeddings": {"Apple": stage_rows(root, "new", "Apple", "new")}}, grace=3)
    store = open_store(root)
    assert all(store.exists(uri) for uri in old.uris("embeddings"))
    time.sleep(4)
    cleanup(root, grace=3)
    assert not any(store.exists(uri) for uri in old.uris("embeddings"))


def test_a_reader_through_100_publications_with_the_default_retention_always_gets_a_whole_version(root, monkeypatch):
    monkeypatch.delenv("FRUIT_PUBLICATION_GRACE_SECONDS")
    publish(root, "v0", {"embeddings": {"Apple": stage_rows(root, "v0", "Apple", "v0")}})
    done, errors, reads = threading.Event(), [], []

    def keep_reading() -> None:
        try:
            while not done.is_set():
                table, version = read_published(root, "embeddings")
                labels = set(table["etag"].to_pylist())
                assert len(labels) == 1 and table.num_rows == 6, labels
                reads.append(version.number)
        except Exception as error:  # noqa: BLE001 - asserted below
            errors.append(error)

    reader = threading.Thread(target=keep_reading)
    reader.start()
    try:
        for round_ in range(1, 101):
            publish(root, f"v{round_}", {"embeddings": {"Apple": stage_rows(root, f"v{round_}", "Apple", f"v{round_}")}})
    finally:
        done.set()
        reader.join()
    assert errors == [] and len(reads) > 10
    assert current_version(root).number == 101 and reads == sorted(reads)


def test_a_fitted_basis_reaches_pca_npz_only_with_the_version_that_publishes_it(root, tmp_path):
    store = open_store(root)

    def basis(name: str, data: bytes) -> str:
        uri = f"{root}/_staging/{name}/pca/{name}.npz"
        store.write_bytes(uri, data)
        return uri

    publish(root, "r1", {"reduced_features": {"Apple": stage_rows(root, "r1", "Apple", "r1")}},
            pca={"fingerprint": "basis-one", "k": 3}, pca_model_uri=basis("one", b"basis one"))
    assert store.read_bytes(f"{root}/models/pca/pca.npz") == b"basis one"
    assert json.loads(store.read_bytes(f"{root}/models/pca/pca.json")) == {"fingerprint": "basis-one", "k": 3,
                                                                            "version": 1}
    # A writer dies after its switch, before it copied the new basis for plain readers: the next
    # recovery copies it, so pca.npz follows the current version.
    script = (f"import sys; sys.path.insert(0, {REPO!r}); "
              "from fruit_assets_tests.storage.test_versions import stage_rows; "
              "from fruit_assets.storage.versions import publish; from fruit_assets.storage import open_store; "
              f"root = {root!r}; uri = root + '/_staging/two/pca/two.npz'; open_store(uri).write_bytes(uri, b'basis two'); "
              "publish(root, 'r2', {'reduced_features': {'Apple': stage_rows(root, 'r2', 'Apple', 'r2')}}, "
              "pca={'fingerprint': 'basis-two', 'k': 4}, pca_model_uri=uri)")
    killed = subprocess.run([sys.executable, "-c", script], env={**os.environ, "FRUIT_PUBLICATION_KILL_AT": "switched"},
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert current_version(root).pca["fingerprint"] == "basis-two"
    assert store.read_bytes(f"{root}/models/pca/pca.npz") == b"basis one"  # not yet: the repair follows
    recover(root)
    assert store.read_bytes(f"{root}/models/pca/pca.npz") == b"basis two"
    assert json.loads(store.read_bytes(f"{root}/models/pca/pca.json"))["fingerprint"] == "basis-two"
    wait_for_leases_to_run_out()
    assert tidy(root)  # the dead writer's intent
    assert list(store.list_objects(f"{root}/_publications/_pending")) == []
