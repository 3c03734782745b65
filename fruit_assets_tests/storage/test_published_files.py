"""Publishing what Spark tasks staged, and the published file sets, on local files and on S3."""

import pytest

from fruit_assets.storage import normalize_uri, open_store
from fruit_assets.steps.staging import discard_staging
from fruit_assets.storage.published_files import class_files, dataset_files
from fruit_assets.storage.versions import publish
from fruit_assets.storage.class_folders import class_folder

CLASS = 'Pêche "plate" #1'


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/data"
    return normalize_uri(str(tmp_path / "data"))


def stage(root: str, run: str, fruit_class: str, names: list[str]) -> list[str]:
    """The staged file URIs, written as tasks write them."""
    staged = f"{root}/_staging/{run}/embeddings"
    uris = [f"{class_folder(staged, fruit_class)}/{name}" for name in names]
    for uri in uris:
        open_store(uri).write_bytes(uri, uri.encode())
    return uris


def test_only_the_reported_files_are_published(root):
    """A zombie attempt's file (staged, never reported to the driver) is not part of the output."""
    first, zombie, retried = stage(root, "r1", CLASS, ["part-00000-t-a0.parquet", "part-00001-t-a0.parquet",
                                                       "part-00001-t-a1.parquet"])
    publish(root, "r1", {"embeddings": {CLASS: [first, retried]}})
    discard_staging(f"{root}/_staging/r1")
    final = f"{root}/embeddings"
    folder = class_folder(final, CLASS)
    assert dataset_files(final, CLASS) == [f"{folder}/part-00000-t-a0.parquet", f"{folder}/part-00001-t-a1.parquet"]
    store = open_store(folder)
    assert store.read_bytes(f"{folder}/part-00001-t-a1.parquet") == retried.encode()
    assert sorted(i.uri for i in store.list_objects(folder)) == dataset_files(final, CLASS)  # what a plain reader sees
    assert list(store.list_objects(f"{root}/_staging/r1")) == []


def test_a_publication_replaces_the_previous_version_of_a_class_whole(root):
    final = f"{root}/embeddings"
    folder = class_folder(final, CLASS)
    publish(root, "r1", {"embeddings": {CLASS: stage(root, "r1", CLASS, ["part-00000-r1-a0.parquet",
                                                                                 "part-00001-r1-a0.parquet"])}})
    publish(root, "r2", {"embeddings": {CLASS: stage(root, "r2", CLASS, ["part-carry-r2-a0.parquet"])}})
    assert dataset_files(final, CLASS) == [f"{folder}/part-carry-r2-a0.parquet"]
    remaining = [info.uri.rsplit("/", 1)[-1] for info in open_store(folder).list_objects(folder)]
    assert remaining == ["part-carry-r2-a0.parquet"]


def test_publishing_nothing_for_a_class_empties_it(root):
    final = f"{root}/embeddings"
    publish(root, "r1", {"embeddings": {CLASS: stage(root, "r1", CLASS, ["part-00000-r1-a0.parquet"])}})
    publish(root, "r2", {"embeddings": {CLASS: []}})
    assert dataset_files(final, CLASS) == []
    assert list(open_store(final).list_objects(final)) == []


def test_class_files_pairs_every_published_file_with_its_class(root):
    final = f"{root}/embeddings"
    staged = {fruit_class: stage(root, "r1", fruit_class, names)
              for fruit_class, names in [("Banana", ["part-1.parquet", "part-0.parquet"]), (CLASS, ["part-9.parquet"])]}
    publish(root, "r1", {"embeddings": staged})
    assert class_files(final, [CLASS, "Banana", "Kiwi"]) == [
        (CLASS, f"{class_folder(final, CLASS)}/part-9.parquet"),
        ("Banana", f"{class_folder(final, 'Banana')}/part-0.parquet"),
        ("Banana", f"{class_folder(final, 'Banana')}/part-1.parquet"),
    ]
    assert class_files(final, []) == []


def test_discard_staging_removes_the_run_s_leftovers(root):
    stage(root, "r1", CLASS, ["part-00000-r1-a0.parquet"])
    stage(root, "r2", CLASS, ["part-00000-r2-a0.parquet"])
    discard_staging(f"{root}/_staging/r1")
    store = open_store(root)
    assert list(store.list_objects(f"{root}/_staging/r1")) == []
    assert len(list(store.list_objects(f"{root}/_staging/r2"))) == 1
