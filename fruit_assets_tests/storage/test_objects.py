import hashlib
import os

import pytest

from fruit_assets.storage import StorageError, join_uri, normalize_uri, open_store


@pytest.mark.parametrize(
    "given, expected",
    [
        ("s3://bucket/prefix/", "s3://bucket/prefix"),
        ("s3a://bucket/p", "s3://bucket/p"),
        ("/abs/data", "file:///abs/data"),
        ("file:///abs/data/", "file:///abs/data"),
    ],
)
def test_normalize_uri(given, expected):
    assert normalize_uri(given) == expected


def test_relative_paths_become_absolute_file_uris(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert normalize_uri("./data") == f"file://{tmp_path}/data"


@pytest.mark.parametrize("bad", ["gs://bucket/x", "s3://", "hdfs://nn/x"])
def test_unsupported_locations_are_clear_errors(bad):
    with pytest.raises(StorageError):
        normalize_uri(bad)


def test_local_store_lists_writes_and_hashes(tmp_path):
    root = normalize_uri(str(tmp_path))
    store = open_store(root)
    store.write_bytes(join_uri(root, "Training", "Apple Red 1", "0_100.jpg"), b"abc")
    store.write_bytes(join_uri(root, "Training", "Pepper Red", "1_100.jpg"), b"defg")
    assert store.list_folders(join_uri(root, "Training")) == ["Apple Red 1", "Pepper Red"]
    [info] = list(store.list_objects(join_uri(root, "Training", "Apple Red 1")))
    assert info.uri == f"file://{tmp_path}/Training/Apple Red 1/0_100.jpg"
    assert info.size == 3 and info.etag == hashlib.md5(b"abc").hexdigest()  # S3's single-part ETag
    assert store.read_bytes(info.uri) == b"abc"
    assert not [n for n in os.listdir(tmp_path / "Training" / "Apple Red 1") if n.startswith(".tmp")]


def test_replace_folder_swaps_whole_versions(tmp_path):
    root = normalize_uri(str(tmp_path))
    store = open_store(root)
    final, staged = join_uri(root, "out", "c"), join_uri(root, "_staging", "r1", "c")
    store.write_bytes(join_uri(final, "old-1.parquet"), b"1")
    store.write_bytes(join_uri(final, "old-2.parquet"), b"2")
    store.write_bytes(join_uri(staged, "new-1.parquet"), b"3")
    store.replace_folder(staged, final)
    assert sorted(os.listdir(tmp_path / "out" / "c")) == ["new-1.parquet"]
    assert not (tmp_path / "_staging" / "r1" / "c").exists()
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".retired")]


def test_concurrent_commits_of_one_folder_leave_one_whole_version(tmp_path):
    """Two runs committing the same class at once: no error, no mix; the last writer wins whole."""
    import threading

    root = normalize_uri(str(tmp_path))
    store = open_store(root)
    final = join_uri(root, "out", "c")
    errors = []

    def writer(name: str) -> None:
        try:
            for round_ in range(30):
                staged = join_uri(root, "_staging", f"{name}-{round_}", "c")
                for part in range(3):
                    store.write_bytes(join_uri(staged, f"{name}-{round_}-{part}.parquet"), name.encode())
                store.replace_folder(staged, final)
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    names = sorted(os.listdir(tmp_path / "out" / "c"))
    assert len(names) == 3 and len({n.rsplit("-", 1)[0] for n in names}) == 1, names
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".retired")]
