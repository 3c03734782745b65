"""The fault-injecting proxy (harness/fault_proxy.py) itself, in front of the real S3 test server:
what it passes arrives unchanged, what it refuses is refused the way S3 or a network would."""

import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ResponseStreamingError

from fruit_assets_tests.harness.fault_proxy import RESET, SLOW_DOWN, Delay, FaultProxy, Reset


@pytest.fixture
def proxy(s3_server):
    with FaultProxy(s3_server["endpoint"], seed=7) as running:
        yield running


def client(s3_server, endpoint: str):
    """A client that never retries: every fault reaches the test."""
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=s3_server["AWS_ACCESS_KEY_ID"], aws_secret_access_key=s3_server["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def test_a_request_through_the_proxy_equals_one_made_directly(s3_server, s3_bucket, proxy):
    direct, proxied = client(s3_server, s3_server["endpoint"]), client(s3_server, proxy.endpoint)
    small, large = b"small object", bytes(range(256)) * 8192  # 2 MiB: boto sends Expect: 100-continue
    put_small = proxied.put_object(Bucket=s3_bucket, Key="a dir/small é.txt", Body=small)
    put_large = proxied.put_object(Bucket=s3_bucket, Key="a dir/large.bin", Body=large)
    for key, body, put in (("a dir/small é.txt", small, put_small), ("a dir/large.bin", large, put_large)):
        through, around = proxied.get_object(Bucket=s3_bucket, Key=key), direct.get_object(Bucket=s3_bucket, Key=key)
        assert through["ETag"] == around["ETag"] == put["ETag"]
        assert through["Body"].read() == around["Body"].read() == body
        assert proxied.head_object(Bucket=s3_bucket, Key=key)["ContentLength"] == len(body)
    listed = [o["Key"] for o in proxied.list_objects_v2(Bucket=s3_bucket, Prefix="a dir/")["Contents"]]
    assert listed == [o["Key"] for o in direct.list_objects_v2(Bucket=s3_bucket, Prefix="a dir/")["Contents"]]
    assert sorted(listed) == ["a dir/large.bin", "a dir/small é.txt"]
    # Signed for the proxy's host:port, forwarded with that Host header: SeaweedFS accepted every one.
    assert [(r.method, r.action, r.status) for r in proxy.log] == [
        ("PUT", "pass", 200), ("PUT", "pass", 200), ("GET", "pass", 200), ("HEAD", "pass", 200),
        ("GET", "pass", 200), ("HEAD", "pass", 200), ("GET", "pass", 200),
    ]
    assert proxy.requests(method="PUT", key=r"large\.bin$")[0].key == f"{s3_bucket}/a dir/large.bin"


def test_a_slow_down_rule_makes_a_client_without_retries_raise_slow_down(s3_server, s3_bucket, proxy):
    proxied = client(s3_server, proxy.endpoint)
    proxied.put_object(Bucket=s3_bucket, Key="kept", Body=b"1")
    proxied.put_object(Bucket=s3_bucket, Key="throttled", Body=b"2")
    proxy.add_rule(SLOW_DOWN, method="GET", key=r"/throttled$")
    with pytest.raises(ClientError) as raised:
        proxied.get_object(Bucket=s3_bucket, Key="throttled")
    assert raised.value.response["Error"]["Code"] == "SlowDown"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    with pytest.raises(ClientError) as raised_on_put:  # a refused upload's body is read, then refused
        proxy.add_rule(SLOW_DOWN, method="PUT")
        proxied.put_object(Bucket=s3_bucket, Key="throttled", Body=b"x" * (2 << 20))
    assert raised_on_put.value.response["Error"]["Code"] == "SlowDown"
    # Only what the rules name is refused, and a refused request never reached the server.
    assert proxied.get_object(Bucket=s3_bucket, Key="kept")["Body"].read() == b"1"
    assert client(s3_server, s3_server["endpoint"]).get_object(Bucket=s3_bucket, Key="throttled")["Body"].read() == b"2"
    assert [(r.method, r.action, r.status) for r in proxy.log[2:]] == [
        ("GET", "slow_down", 503), ("PUT", "slow_down", 503), ("GET", "pass", 200),
    ]


def test_a_reset_rule_makes_a_client_without_retries_raise_a_connection_error(s3_server, s3_bucket, proxy):
    proxied = client(s3_server, proxy.endpoint)
    proxied.put_object(Bucket=s3_bucket, Key="object", Body=b"z" * 100_000)
    proxy.add_rule(RESET, first=1)
    with pytest.raises(ConnectionClosedError, match="Connection was closed"):
        proxied.get_object(Bucket=s3_bucket, Key="object")
    proxy.add_rule(Reset(after_response_bytes=1000), first=1)
    body = proxied.get_object(Bucket=s3_bucket, Key="object")["Body"]  # the answer starts...
    with pytest.raises(ResponseStreamingError, match="reset by peer"):
        body.read()  # ...and the connection is cut 1000 bytes into its body
    assert proxied.get_object(Bucket=s3_bucket, Key="object")["Body"].read() == b"z" * 100_000
    assert [(r.action, r.status) for r in proxy.log[1:]] == [("reset", None), ("reset_mid_response", None), ("pass", 200)]


def test_rules_fire_every_kth_time_or_by_a_seeded_chance_and_can_delay(s3_server, s3_bucket):
    def actions_with(seed):
        with FaultProxy(s3_server["endpoint"], seed=seed) as proxy:
            proxied = client(s3_server, proxy.endpoint)
            proxy.add_rule(SLOW_DOWN, method="GET", every=3)
            proxy.add_rule(Delay(0.3), method="HEAD", first=1)
            proxy.add_rule(RESET, method="HEAD", probability=0.5)
            for _ in range(7):
                try:
                    proxied.list_objects_v2(Bucket=s3_bucket)
                except ClientError:
                    pass
            started = time.monotonic()
            with pytest.raises(ClientError):  # delayed, then passed: the bucket holds no such key
                proxied.head_object(Bucket=s3_bucket, Key="none")
            assert time.monotonic() - started >= 0.3
            for _ in range(12):
                try:
                    proxied.head_object(Bucket=s3_bucket, Key="none")
                except (ClientError, ConnectionClosedError):
                    pass
            return [r.action for r in proxy.log]

    first = actions_with(seed=11)
    assert first[:7] == ["pass", "pass", "slow_down"] * 2 + ["pass"]
    assert first[7] == "delay"
    coin = first[8:]
    assert set(coin) == {"pass", "reset"}  # 12 tosses of a fair coin
    assert actions_with(seed=11)[8:] == coin  # the same seed, the same faults


def test_a_lost_answer_leaves_the_write_done_although_the_client_saw_it_fail(s3_server, s3_bucket, proxy):
    proxied = client(s3_server, proxy.endpoint)
    proxy.add_rule(Reset(answer_lost=True), method="PUT", first=1)
    with pytest.raises(ConnectionClosedError):
        proxied.put_object(Bucket=s3_bucket, Key="written", Body=b"v1")
    assert client(s3_server, s3_server["endpoint"]).get_object(Bucket=s3_bucket, Key="written")["Body"].read() == b"v1"
    assert [(r.action, r.status) for r in proxy.log] == [("reset_answer_lost", 200)]
