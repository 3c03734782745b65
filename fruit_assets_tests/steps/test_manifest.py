"""raw_images: the classes found, every object of a class listed, the manifests written and read."""

import hashlib
import os

import pytest

from fruit_assets.layout import DataLayout
from fruit_assets.steps.manifest import (
    build_manifests,
    discover_classes,
    list_class_images,
    read_manifest,
    read_manifest_if_any,
    thumbnail_images,
    write_manifest,
)
from fruit_assets.storage import StorageError, open_store, schemas

CLASSES = ["Apple Red 1", "Banana", "Pepper Red"]


@pytest.fixture(params=["local", "s3"])
def root(request) -> str:
    return request.getfixturevalue("s3_sample_root" if request.param == "s3" else "sample_root")


def test_discover_classes_lists_the_class_folders(root):
    assert discover_classes(DataLayout.at(root)) == CLASSES


def test_a_root_without_class_folders_names_the_layout_it_expects(tmp_path):
    (tmp_path / "Training").mkdir()
    layout = DataLayout.at(str(tmp_path))
    with pytest.raises(StorageError, match=r"no class folders under .*/Training/: .*Training/<Class>/"):
        discover_classes(layout)
    with pytest.raises(StorageError, match=r"Training/<Class>/"):
        list_class_images(layout, "Banana")


def test_an_empty_class_folder_is_an_error_naming_it(sample_root):
    os.mkdir(os.path.join(sample_root, "Training", "Kiwi"))
    with pytest.raises(StorageError, match=r"no objects under file://.*/Training/Kiwi/: .*'Kiwi'"):
        list_class_images(DataLayout.at(sample_root), "Kiwi")


def test_every_object_of_the_class_is_listed_but_not_an_in_flight_write(sample_root):
    banana = os.path.join(sample_root, "Training", "Banana")
    for name, data in [(".DS_Store", b"\x00\x00\x00\x01Bud1"), ("notes.txt", b"notes"), (".tmp-xyz", b"half")]:
        with open(os.path.join(banana, name), "wb") as handle:
            handle.write(data)
    os.mkdir(os.path.join(banana, "more"))
    with open(os.path.join(banana, "more", "extra_100.jpg"), "wb") as handle:
        handle.write(b"\xff\xd8 nested")
    manifest = list_class_images(DataLayout.at(sample_root), "Banana")
    assert manifest.schema == schemas.MANIFEST
    names = [path[len(f"file://{banana}/"):] for path in manifest["path"].to_pylist()]
    assert len(names) == 12 + 3
    assert {".DS_Store", "notes.txt", "more/extra_100.jpg"} <= set(names) and ".tmp-xyz" not in names
    assert set(manifest["fruit_class"].to_pylist()) == {"Banana"}
    for path, size, etag in zip(manifest["path"].to_pylist(), manifest["size"].to_pylist(), manifest["etag"].to_pylist()):
        with open(path[len("file://"):], "rb") as handle:
            data = handle.read()
        assert (size, etag) == (len(data), hashlib.md5(data).hexdigest())


def test_manifest_round_trip(root):
    layout = DataLayout.at(root)
    manifest = list_class_images(layout, "Apple Red 1")
    assert manifest.num_rows == 12 and manifest.schema == schemas.MANIFEST
    assert write_manifest(layout, "Apple Red 1", manifest) == layout.manifest("Apple Red 1")
    assert open_store(root).exists(layout.manifest("Apple Red 1"))
    read = read_manifest(layout, "Apple Red 1")
    assert read.schema == schemas.MANIFEST and read.equals(manifest)


def test_reading_a_manifest_never_written_says_to_materialize_raw_images(sample_root):
    layout = DataLayout.at(sample_root)
    assert read_manifest_if_any(layout, "Banana") is None
    with pytest.raises(StorageError, match=r"no manifest for class 'Banana' at .*: materialize raw_images first"):
        read_manifest(layout, "Banana")


def test_build_manifests_writes_one_per_class_and_counts_the_images(root):
    layout = DataLayout.at(root)
    open_store(root).write_bytes(f"{layout.training}/Banana/extra.jpg", b"x")
    report = build_manifests(layout, CLASSES)
    assert {c: counts.images for c, counts in report.per_class.items()} == {
        "Apple Red 1": 12, "Banana": 13, "Pepper Red": 12}
    assert report.images == 37 and report.output == f"{layout.root}/manifests" and report.seconds > 0
    assert [read_manifest(layout, c).num_rows for c in CLASSES] == [12, 13, 12]


def test_thumbnails_are_the_first_small_enough_objects(sample_root):
    layout = DataLayout.at(sample_root)
    banana = os.path.join(sample_root, "Training", "Banana")
    with open(os.path.join(banana, "0_000_big.jpg"), "wb") as handle:  # first in key order
        handle.write(b"\xff" * 60_000)
    build_manifests(layout, ["Banana"])
    paths = read_manifest(layout, "Banana")["path"].to_pylist()
    assert paths[0].endswith("/0_000_big.jpg")

    def content(path):
        with open(path[len("file://"):], "rb") as handle:
            return handle.read()

    assert thumbnail_images(layout, "Banana", count=3, max_bytes=50_000) == [content(p) for p in paths[1:4]]
    assert thumbnail_images(layout, "Banana", count=2, max_bytes=60_000) == [content(p) for p in paths[:2]]
    assert len(thumbnail_images(layout, "Banana", count=50, max_bytes=50_000)) == 12
    with pytest.raises(StorageError, match="materialize raw_images first"):
        thumbnail_images(layout, "Apple Red 1")
