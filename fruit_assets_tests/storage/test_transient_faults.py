"""The S3 store through faults injected in front of the real S3 server: throttling and dropped
connections are ridden out; what outlasts the retries is a TransientStorageError (worth a step
retry), what never passes (credentials, a missing object) is not."""

import os

import pytest

from fruit_assets.errors import is_transient
from fruit_assets.storage import MissingObjectError, StorageError, TransientStorageError, open_store
from fruit_assets.storage.s3_store import S3ObjectStore
from fruit_assets_tests.harness.fault_proxy import RESET, SLOW_DOWN, FaultProxy, Reset


@pytest.fixture
def proxy(s3_server, monkeypatch):
    """The proxy, and this process's S3 clients pointed at it."""
    with FaultProxy(s3_server["endpoint"], seed=5) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.endpoint)
        yield running


def test_every_third_request_throttled_and_some_connections_reset_are_ridden_out(s3_bucket, proxy):
    proxy.add_rule(SLOW_DOWN, every=3)
    proxy.add_rule(RESET, probability=0.1)
    proxy.add_rule(Reset(after_response_bytes=100), method="GET", key="/objects/", probability=0.2)
    store = S3ObjectStore()
    assert store.endpoint == proxy.endpoint
    root = f"s3://{s3_bucket}/objects"
    contents = {f"{root}/{i:02d}.bin": os.urandom(1000 + i) for i in range(12)}
    for uri, data in contents.items():
        store.write_bytes(uri, data)
    assert {info.uri: info.size for info in store.list_objects(root)} == {u: len(d) for u, d in contents.items()}
    assert {uri: store.read_bytes(uri) for uri in contents} == contents
    actions = [r.action for r in proxy.log]
    # The faults happened (a third of the requests throttled), and every one was retried through.
    assert actions.count("slow_down") == len(actions) // 3
    assert actions.count("reset") >= 1 and actions.count("reset_mid_response") >= 1


def test_throttling_that_outlasts_the_retries_is_transient(s3_server, s3_bucket, proxy, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    proxy.add_rule(SLOW_DOWN, method="GET")
    uri = f"s3://{s3_bucket}/busy.jpg"
    with pytest.raises(TransientStorageError) as raised:
        open_store(uri).read_bytes(uri)
    message = str(raised.value)
    assert proxy.endpoint in message and uri in message and "throttled" in message and "3 attempts" in message
    assert is_transient(raised.value)
    assert [r.status for r in proxy.requests(method="GET")] == [503, 503, 503]  # AWS_MAX_ATTEMPTS, honoured


def test_connections_reset_through_every_retry_are_transient(s3_bucket, proxy, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    proxy.add_rule(RESET)
    uri = f"s3://{s3_bucket}/Training"
    with pytest.raises(TransientStorageError, match=rf"cannot reach S3 at {proxy.endpoint} after retries: "
                                                    r"ConnectionClosedError") as raised:
        list(open_store(uri).list_objects(uri))
    assert is_transient(raised.value) and len(proxy.log) == 2


def test_a_download_cut_off_mid_body_is_fetched_again(s3_bucket, proxy):
    uri = f"s3://{s3_bucket}/photo.jpg"
    data = os.urandom(300_000)
    open_store(uri).write_bytes(uri, data)
    proxy.add_rule(Reset(after_response_bytes=50_000), method="GET", first=2)
    assert open_store(uri).read_bytes(uri) == data
    assert [r.action for r in proxy.requests(method="GET")] == ["reset_mid_response", "reset_mid_response", "pass"]


def test_configuration_errors_are_not_transient(s3_server, s3_bucket, proxy, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StorageError, match="secret key does not match") as raised:
        list(open_store(f"s3://{s3_bucket}").list_objects(f"s3://{s3_bucket}/Training"))
    assert not is_transient(raised.value) and not isinstance(raised.value, TransientStorageError)
    assert len(proxy.log) == 1  # refused once, not retried: it would fail the same way every time
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["AWS_SECRET_ACCESS_KEY"])
    with pytest.raises(StorageError, match="bucket does not exist") as missing_bucket:
        list(open_store("s3://no-such-bucket-here").list_objects("s3://no-such-bucket-here/Training"))
    assert not is_transient(missing_bucket.value)


@pytest.mark.parametrize("backend", ["s3", "local"])
def test_a_missing_object_is_a_missing_object_error_on_both_backends(backend, s3_bucket, tmp_path):
    root = f"s3://{s3_bucket}" if backend == "s3" else f"file://{tmp_path}"
    uri = f"{root}/Training/Banana/gone.jpg"
    store = open_store(uri)
    store.write_bytes(uri, b"bytes")
    store.delete([uri])
    with pytest.raises(MissingObjectError, match="deleted since it was listed") as raised:
        store.read_bytes(uri)
    assert uri in str(raised.value)
    # Still what callers of either backend caught before: a StorageError, a FileNotFoundError.
    assert isinstance(raised.value, StorageError) and isinstance(raised.value, FileNotFoundError)
    assert not is_transient(raised.value)
