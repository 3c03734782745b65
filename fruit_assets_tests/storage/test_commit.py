"""Committing what Spark tasks staged, and the committed file sets, on local files and on S3."""

import pytest

from fruit_assets.storage import normalize_uri, open_store
from fruit_assets.storage.commit import class_files, commit_class_folder, dataset_files, discard_staging
from fruit_assets.storage.partitions import class_folder

CLASS = 'Pêche "plate" #1'


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/data"
    return normalize_uri(str(tmp_path / "data"))


def stage(root: str, run: str, fruit_class: str, names: list[str]) -> tuple[str, list[str]]:
    """(staged dataset, staged file URIs), written as tasks write them."""
    staged = f"{root}/_staging/{run}/embeddings"
    uris = [f"{class_folder(staged, fruit_class)}/{name}" for name in names]
    for uri in uris:
        open_store(uri).write_bytes(uri, uri.encode())
    return staged, uris


def test_only_the_reported_files_are_committed(root):
    """A zombie attempt's file (staged, never reported to the driver) is not part of the output."""
    staged, [first, zombie, retried] = stage(
        root, "r1", CLASS, ["part-00000-t-a0.parquet", "part-00001-t-a0.parquet", "part-00001-t-a1.parquet"])
    final = f"{root}/embeddings"
    commit_class_folder(staged, final, CLASS, [first, retried])
    folder = class_folder(final, CLASS)
    assert dataset_files(final, CLASS) == [f"{folder}/part-00000-t-a0.parquet", f"{folder}/part-00001-t-a1.parquet"]
    store = open_store(folder)
    assert store.read_bytes(f"{folder}/part-00001-t-a1.parquet") == retried.encode()
    assert list(store.list_objects(class_folder(staged, CLASS))) == []
    assert not [info for info in store.list_objects(folder) if "part-00001-t-a0" in info.uri]


def test_a_commit_replaces_the_previous_version_whole(root):
    final = f"{root}/embeddings"
    folder = class_folder(final, CLASS)
    staged, reported = stage(root, "r1", CLASS, ["part-00000-r1-a0.parquet", "part-00001-r1-a0.parquet"])
    commit_class_folder(staged, final, CLASS, reported)
    staged, reported = stage(root, "r2", CLASS, ["part-carry-r2-a0.parquet"])
    commit_class_folder(staged, final, CLASS, reported)
    assert dataset_files(final, CLASS) == [f"{folder}/part-carry-r2-a0.parquet"]
    remaining = [info.uri.rsplit("/", 1)[-1] for info in open_store(folder).list_objects(folder)]
    assert [name for name in remaining if not name.startswith("_")] == ["part-carry-r2-a0.parquet"]


def test_committing_nothing_empties_the_class(root):
    final = f"{root}/embeddings"
    staged, reported = stage(root, "r1", CLASS, ["part-00000-r1-a0.parquet"])
    commit_class_folder(staged, final, CLASS, reported)
    commit_class_folder(f"{root}/_staging/r2/embeddings", final, CLASS, [])
    assert dataset_files(final, CLASS) == []


def test_dataset_files_are_the_parquet_files_in_name_order_hidden_ones_skipped(root):
    names = ["part-b.parquet", "_SUCCESS", ".part-c.parquet", "_tmp.parquet", "notes.txt", "part-a.parquet",
             "part-a.parquet.crc"]
    staged, reported = stage(root, "r1", CLASS, names)
    final = f"{root}/embeddings"
    commit_class_folder(staged, final, CLASS, reported)
    folder = class_folder(final, CLASS)
    assert dataset_files(final, CLASS) == [f"{folder}/part-a.parquet", f"{folder}/part-b.parquet"]
    assert dataset_files(final, "never committed") == []


def test_class_files_pairs_every_committed_file_with_its_class(root):
    final = f"{root}/embeddings"
    for fruit_class, names in [("Banana", ["part-1.parquet", "part-0.parquet"]), (CLASS, ["part-9.parquet"])]:
        staged, reported = stage(root, "r1", fruit_class, names)
        commit_class_folder(staged, final, fruit_class, reported)
    assert class_files(final, [CLASS, "Banana", "Kiwi"]) == [
        (CLASS, f"{class_folder(final, CLASS)}/part-9.parquet"),
        ("Banana", f"{class_folder(final, 'Banana')}/part-0.parquet"),
        ("Banana", f"{class_folder(final, 'Banana')}/part-1.parquet"),
    ]
    assert class_files(final, []) == []


def test_discard_staging_removes_the_run_s_leftovers(root):
    staged, _ = stage(root, "r1", CLASS, ["part-00000-r1-a0.parquet"])
    stage(root, "r2", CLASS, ["part-00000-r2-a0.parquet"])
    discard_staging(f"{root}/_staging/r1")
    store = open_store(root)
    assert list(store.list_objects(f"{root}/_staging/r1")) == []
    assert len(list(store.list_objects(f"{root}/_staging/r2"))) == 1
