"""S3's 403 AccessDenied, answered by the fault proxy in front of the real S3 server (which, with
root credentials, never refuses anything): the store raises an AccessDeniedError whose one line
names the action, the object and the identity refused, never a credential, and never takes the 403
for a missing object (on AWS a GET of a deleted key answers 403 to a caller without s3:ListBucket)."""

import pytest

from fruit_assets.errors import is_transient, user_facing_message
from fruit_assets.storage import AccessDeniedError, MissingObjectError, StorageError, open_store
from fruit_assets.storage.s3_store import S3ObjectStore
from fruit_assets_tests.harness.fault_proxy import ACCESS_DENIED, AccessDenied, FaultProxy
from fruit_assets_tests.test_errors import spark_like_trace

ROLE = "arn:aws:iam::123456789012:role/fruit-assets-executor"
GET_NEEDS = ("that role needs s3:GetObject on the key (and s3:ListBucket on the bucket so that a deleted "
             "object answers 404 not 403): see infra/iam/")


@pytest.fixture
def proxy(s3_server, monkeypatch):
    """The proxy, and this process's S3 clients pointed at it."""
    with FaultProxy(s3_server["endpoint"], seed=7) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.endpoint)
        yield running


def assert_no_credentials(message: str, s3_server) -> None:
    assert s3_server["AWS_SECRET_ACCESS_KEY"] not in message and s3_server["AWS_ACCESS_KEY_ID"] not in message


def test_a_refused_get_names_the_action_the_object_and_the_role(s3_server, s3_bucket, proxy, monkeypatch):
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)  # what IRSA sets in an EKS pod
    uri = f"s3://{s3_bucket}/fruits/Training/Apple Red 1/r_1_100.jpg"
    store = open_store(uri)
    store.write_bytes(uri, b"\xff\xd8 an image")
    proxy.add_rule(ACCESS_DENIED, key="r_1_100.jpg$")

    with pytest.raises(AccessDeniedError) as raised:
        store.read_bytes(uri)
    message = str(raised.value)
    assert message == f"access denied: s3:GetObject on {uri} as {ROLE}: {GET_NEEDS}"
    assert not isinstance(raised.value, MissingObjectError) and not is_transient(raised.value)
    assert isinstance(raised.value, StorageError)  # what callers that catch storage errors already catch
    assert_no_credentials(message, s3_server)
    assert [r.status for r in proxy.requests(method="GET", key="r_1_100.jpg$")] == [403]  # no retry: it would not pass

    # A HEAD's 403 has no body (botocore's code is "403"): the same grant, and the other possible cause.
    with pytest.raises(AccessDeniedError) as head:
        store.exists(uri)
    assert str(head.value) == (f"access denied: s3:GetObject on {uri} as {ROLE}: {GET_NEEDS} (a HEAD's 403 "
                               "names no reason: a wrong secret key answers it too)")

    # From a Spark task the driver sees the class by name in the trace, and keeps the one line.
    trace = spark_like_trace(f"fruit_assets.storage.errors.AccessDeniedError: {message}")
    assert user_facing_message(trace) == message and not is_transient(trace)


def test_refused_listings_and_writes_name_their_own_grant(s3_server, s3_bucket, proxy, monkeypatch):
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    root = f"s3://{s3_bucket}/fruits"
    store = open_store(root)
    proxy.add_rule(ACCESS_DENIED, method="GET", key=f"^{s3_bucket}/?$")  # ListObjectsV2: GET on the bucket
    proxy.add_rule(ACCESS_DENIED, method="PUT")
    with pytest.raises(AccessDeniedError) as listing:
        list(store.list_objects(f"{root}/Training"))
    assert str(listing.value) == (f"access denied: s3:ListBucket on {root}/Training as {ROLE}: that role needs "
                                  "s3:ListBucket on the bucket, its s3:prefix condition matching that prefix: "
                                  "see infra/iam/")
    with pytest.raises(AccessDeniedError, match=r"^access denied: s3:PutObject on .*_staging/x\.parquet as "
                                                 + ROLE + r": that role needs s3:PutObject on the key: see infra/iam/$"):
        store.write_bytes(f"{root}/_staging/x.parquet", b"data")


def test_the_identity_is_the_one_aws_names_else_sts_is_asked_once_and_only_of_aws(
    s3_server, s3_bucket, proxy, monkeypatch
):
    monkeypatch.delenv("AWS_ROLE_ARN", raising=False)
    uri = f"s3://{s3_bucket}/fruits/manifests/m.parquet"
    # AWS's own message for a caller of the bucket's account names it (as an STS session): the role
    # to grant to is read from it, and the rest of what S3 said is kept on the line.
    aws_says = ('User: arn:aws:sts::123456789012:assumed-role/fruit-assets-run/botocore-session-17 is not '
                'authorized to perform: s3:GetObject on resource: "arn:aws:s3:::b/fruits/manifests/m.parquet" '
                "because no identity-based policy allows the s3:GetObject action")
    rule = proxy.add_rule(AccessDenied(aws_says), method="GET", first=1)
    with pytest.raises(AccessDeniedError) as named:
        open_store(uri).read_bytes(uri)
    assert str(named.value) == (f"access denied: s3:GetObject on {uri} as arn:aws:iam::123456789012:role/"
                                f"fruit-assets-run: {GET_NEEDS} (S3: {aws_says})")
    proxy.clear_rules()
    assert rule.matched == 1

    # No name anywhere, and the endpoint is not AWS: no STS request (its keys are not AWS's business).
    proxy.add_rule(ACCESS_DENIED, method="GET")
    store = open_store(uri)
    with pytest.raises(AccessDeniedError) as unnamed:
        store.read_bytes(uri)
    assert str(unnamed.value) == (f"access denied: s3:GetObject on {uri} as the credentials configured for "
                                  f"{proxy.endpoint} (AWS_ROLE_ARN unset): that identity needs "
                                  + GET_NEEDS.removeprefix("that role needs "))
    assert {r.method for r in proxy.log} == {"GET"}

    # Against AWS, STS GetCallerIdentity is asked once per store, its failure named in its place
    # (here the STS endpoint is the proxy, which refuses it too).
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", proxy.endpoint)
    proxy.add_rule(ACCESS_DENIED, method="POST")
    on_aws = S3ObjectStore()
    on_aws.endpoint = "https://s3.us-east-1.amazonaws.com"  # only the name it judges by; requests go to the proxy
    for _ in range(2):
        with pytest.raises(AccessDeniedError, match=r" as an identity STS did not name \(AWS_ROLE_ARN unset; "
                                                    r"GetCallerIdentity: \w+\): that identity needs "):
            on_aws.read_bytes(uri)
    assert len(proxy.requests(method="POST")) == 1
    assert_no_credentials(str(unnamed.value), s3_server)
