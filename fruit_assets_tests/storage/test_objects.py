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


def test_write_bytes_if_absent_lets_exactly_one_writer_create_a_name(tmp_path):
    import threading

    store = open_store(normalize_uri(str(tmp_path)))
    uri = join_uri(normalize_uri(str(tmp_path)), "log", "v1.json")
    results = {}

    def create(name: str) -> None:
        results[name] = store.write_bytes_if_absent(uri, name.encode())

    threads = [threading.Thread(target=create, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [winner] = [name for name, created in results.items() if created]
    assert store.read_bytes(uri) == winner.encode()
    assert sorted(os.listdir(tmp_path / "log")) == ["v1.json"]  # no temp file left behind


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_capped_read_fetches_one_byte_more_than_the_cap_at_most(backend, tmp_path, request):
    """A fetch of an image never reads more than its listed size (plus the byte that tells it
    grew): a stray multi-gigabyte object under Training/ costs a task nothing."""
    from fruit_assets.storage import open_store

    if backend == "s3":
        uri = f"s3://{request.getfixturevalue('s3_bucket')}/big.bin"
    else:
        uri = f"file://{tmp_path}/big.bin"
    store = open_store(uri)
    data = os.urandom(100_000)
    store.write_bytes(uri, data)
    assert store.read_bytes(uri, max_bytes=1000) == data[:1001]
    assert store.read_bytes(uri, max_bytes=100_000) == data
    assert store.read_bytes(uri, max_bytes=200_000) == data
    assert store.read_bytes(uri) == data
    empty = uri.replace("big.bin", "empty.bin")
    store.write_bytes(empty, b"")
    assert store.read_bytes(empty, max_bytes=10) == b""
