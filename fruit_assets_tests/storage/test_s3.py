"""The S3 backend against a real S3 server (SeaweedFS), including its error messages."""

import hashlib

import pytest

from fruit_assets.storage import StorageError, open_store
from fruit_assets.storage.s3_store import S3ObjectStore


def test_s3_store_lists_reads_writes_copies_and_creates_exclusively(s3_bucket):
    root = f"s3://{s3_bucket}/prefix"
    store = open_store(root)
    store.write_bytes(f"{root}/Training/Apple Red 1/0_100.jpg", b"abc")
    store.write_bytes(f"{root}/Training/Pepper Red/1_100.jpg", b"defg")
    store.write_bytes(f"{root}/Training/Pepper Red/sub/2_100.jpg", b"h")
    assert store.list_folders(f"{root}/Training") == ["Apple Red 1", "Pepper Red"]
    listed = list(store.list_objects(f"{root}/Training/Pepper Red"))
    assert [i.uri for i in listed] == [f"{root}/Training/Pepper Red/1_100.jpg", f"{root}/Training/Pepper Red/sub/2_100.jpg"]
    [apple] = store.list_objects(f"{root}/Training/Apple Red 1")
    assert apple.size == 3 and apple.etag == hashlib.md5(b"abc").hexdigest()
    assert store.read_bytes(apple.uri) == b"abc" and store.exists(apple.uri)
    assert not store.exists(f"{root}/nope")

    store.write_bytes(f"{root}/_staging/r/c/new.parquet", b"2")
    store.copy(f"{root}/_staging/r/c/new.parquet", f"{root}/out/c/new.parquet")
    assert store.read_bytes(f"{root}/out/c/new.parquet") == b"2"
    # The version log's commit point: a conditional PUT (If-None-Match: *) that only one writer wins.
    assert store.write_bytes_if_absent(f"{root}/log/v1.json", b"first") is True
    assert store.write_bytes_if_absent(f"{root}/log/v1.json", b"second") is False
    assert store.read_bytes(f"{root}/log/v1.json") == b"first"


def test_missing_bucket_is_a_clear_error(s3_server):
    with pytest.raises(StorageError, match=r"bucket does not exist") as raised:
        list(open_store("s3://no-such-bucket-here").list_objects("s3://no-such-bucket-here/Training"))
    assert s3_server["endpoint"] in str(raised.value)


def test_wrong_credentials_are_a_clear_error_without_the_secret(s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")  # pragma: allowlist secret
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-do-not-print")
    with pytest.raises(StorageError) as raised:
        list(S3ObjectStore().list_objects(f"s3://{s3_bucket}/Training"))
    message = str(raised.value)
    assert "access key is not known" in message or "secret key does not match" in message or "not allowed" in message
    assert "wrong-secret-value-do-not-print" not in message


def test_unreachable_endpoint_fails_fast_naming_it(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(StorageError, match=r"cannot reach S3 at http://127.0.0.1:9"):
        S3ObjectStore().read_bytes("s3://bucket/key")
