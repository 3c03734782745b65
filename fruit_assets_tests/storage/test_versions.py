"""Published versions survive anything: a SIGKILL between any two storage operations of a
publication, a concurrent writer, a reader in flight. On local files and on the S3 test server."""

import os
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest

from fruit_assets.storage import normalize_uri, open_store
from fruit_assets.storage.parquet_io import write_table
from fruit_assets.storage.class_folders import class_folder
from fruit_assets.storage.readers import read_published
from fruit_assets.storage.versions import (
    ConcurrentPublicationError, cleanup, current_version, publish, recover,
)


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/data"
    return normalize_uri(str(tmp_path / "data"))


def stage_rows(root: str, run: str, fruit_class: str, label: str, files: int = 2, rows: int = 3) -> list[str]:
    """Real Parquet files as tasks stage them; every row says which run wrote it."""
    uris = []
    for index in range(files):
        uri = f"{class_folder(f'{root}/_staging/{run}/embeddings', fruit_class)}/part-{index:05d}-{run}-a0.parquet"
        paths = [f"{root}/Training/{fruit_class}/{index}_{row}.jpg" for row in range(rows)]
        write_table(uri, pa.table({"path": paths, "fruit_class": [fruit_class] * rows, "etag": [label] * rows,
                                   "embedding": [[0.0]] * rows}))
        uris.append(uri)
    return uris


def plain_listing(root: str) -> list[str]:
    """What a plain Parquet reader of the folder reads."""
    return sorted(i.uri for i in open_store(root).list_objects(f"{root}/embeddings") if i.uri.endswith(".parquet"))


def assert_one_complete_version(root: str, expected: dict[str, str]):
    """The public reader returns exactly one version: every class with the rows of one writer,
    each path once."""
    table, version = read_published(root, "embeddings")
    paths = table["path"].to_pylist()
    assert len(paths) == len(set(paths))
    by_class = {}
    for fruit_class, label in zip(table["fruit_class"].to_pylist(), table["etag"].to_pylist()):
        by_class.setdefault(fruit_class, set()).add(label)
    assert by_class == {c: {label} for c, label in expected.items()}
    assert table.num_rows == 6 * len(expected)
    return version


def wait_for_leases_to_run_out() -> None:
    # Storage timestamps are whole seconds on S3.
    time.sleep(float(os.environ["FRUIT_PUBLICATION_LEASE_SECONDS"]) + 1.5)


PUBLISH_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from fruit_assets_tests.storage.test_versions import stage_rows
from fruit_assets.storage.versions import publish
root = {root!r}
staged = {{c: stage_rows(root, "run2", c, "new") for c in ("Apple", "Banana")}}
publish(root, "run2", {{"embeddings": staged}}, removed_classes=["Cherry"])
"""

# (checkpoint, version the readers must see right after the kill)
KILL_POINTS = [("intent", "old"), ("copy:1", "old"), ("copy:3", "old"), ("switch", "old"),
               ("switched", "new"), ("delete@cleanup:1", "new"), ("cleaned", "new")]


@pytest.mark.parametrize("checkpoint, visible", KILL_POINTS, ids=[k for k, _ in KILL_POINTS])
def test_a_kill_at_any_step_of_a_publication_leaves_a_complete_version_and_the_next_run_restores_it(
        root, checkpoint, visible):
    from fruit_assets_tests.harness import REPO

    publish(root, "run1", {"embeddings": {c: stage_rows(root, "run1", c, "old") for c in ("Apple", "Banana", "Cherry")}})
    old = {"Apple": "old", "Banana": "old", "Cherry": "old"}
    new = {"Apple": "new", "Banana": "new"}

    env = {**os.environ, "FRUIT_PUBLICATION_KILL_AT": checkpoint}
    killed = subprocess.run([sys.executable, "-c", PUBLISH_SCRIPT.format(repo=REPO, root=root)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr[-2000:]

    # Right after the crash, whoever reads gets one whole version: the old one or the new one.
    assert_one_complete_version(root, old if visible == "old" else new)

    # Until the dead writer's lease runs out its files are left alone; then the next run fences it
    # and cleans what it left.
    wait_for_leases_to_run_out()
    recover(root)
    assert_one_complete_version(root, old if visible == "old" else new)
    assert plain_listing(root) == sorted(current_version(root).uris("embeddings"))
    assert list(open_store(root).list_objects(f"{root}/_publications/_pending")) == []
    # ... and carries on: publishing the change again gives the state a clean run gives.
    publish(root, "run3", {"embeddings": {c: stage_rows(root, "run3", c, "new") for c in ("Apple", "Banana")}},
            removed_classes=["Cherry"])
    final = assert_one_complete_version(root, new)
    assert plain_listing(root) == sorted(final.uris("embeddings"))


def test_concurrent_writers_never_mix_and_a_loser_fails_loudly_without_deleting_the_winners_files(root):
    outcomes = {}

    def writer(name: str) -> None:
        staged = {name: stage_rows(root, name, name, name)}
        try:
            publish(root, name, {"embeddings": staged})
            outcomes[name] = "published"
        except ConcurrentPublicationError:
            outcomes[name] = "refused"

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    published = {name for name, outcome in outcomes.items() if outcome == "published"}
    assert len(outcomes) == 6 and published
    # Every writer that was told "published" is in the current version; none that was refused is.
    assert_one_complete_version(root, {name: name for name in published})
    cleanup(root)
    assert plain_listing(root) == sorted(current_version(root).uris("embeddings"))


def test_a_reader_in_flight_gets_a_whole_version_while_a_writer_replaces_and_deletes_it(root):
    publish(root, "v0", {"embeddings": {"Apple": stage_rows(root, "v0", "Apple", "v0")}})
    stop = threading.Event()
    errors = []

    def keep_publishing() -> None:
        try:
            for round_ in range(1, 8):
                publish(root, f"v{round_}", {"embeddings": {"Apple": stage_rows(root, f"v{round_}", "Apple", f"v{round_}")}})
        except Exception as error:  # noqa: BLE001 - asserted below
            errors.append(error)
        finally:
            stop.set()

    thread = threading.Thread(target=keep_publishing)
    thread.start()
    reads = 0
    while not stop.is_set() or reads == 0:
        table, version = read_published(root, "embeddings")
        labels = set(table["etag"].to_pylist())
        assert len(labels) == 1 and table.num_rows == 6, labels  # one version, whole
        reads += 1
    thread.join()
    assert errors == [] and reads > 0
    assert current_version(root).number == 8


def test_a_grace_period_keeps_superseded_files_for_readers_of_older_versions(root):
    publish(root, "r1", {"embeddings": {"Apple": stage_rows(root, "r1", "Apple", "r1")}})
    first = current_version(root)
    publish(root, "r2", {"embeddings": {"Apple": stage_rows(root, "r2", "Apple", "r2")}}, grace=3600)
    store = open_store(root)
    assert all(store.exists(uri) for uri in first.uris("embeddings"))  # kept: a reader of v1 can finish
    cleanup(root, grace=0)
    assert not any(store.exists(uri) for uri in first.uris("embeddings"))

