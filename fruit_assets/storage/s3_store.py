"""The object store over S3 (``s3://``, any S3 API), its errors explained in one line each."""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

from fruit_assets.storage.errors import AccessDeniedError, MissingObjectError, StorageError, TransientStorageError
from fruit_assets.storage.objects import ObjectInfo, ObjectStore

# Answers that say "not now" rather than "not like this": throttling, the server failing inside.
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "BandwidthLimitExceeded",
    "TooManyRequestsException",
    "InternalError",
    "ServiceUnavailable",
}


def _is_transient(error) -> bool:
    """``error`` (a botocore ClientError) is throttling or a server-side failure (HTTP 429 or 5xx)."""
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return code in _TRANSIENT_CODES or status == 429 or status >= 500


# What the identity needs for each operation the store makes, as infra/iam/ grants it.
_NEEDS = {
    "s3:GetObject": "s3:GetObject on the key (and s3:ListBucket on the bucket so that a deleted object "
    "answers 404 not 403)",
    "s3:PutObject": "s3:PutObject on the key",
    "s3:ListBucket": "s3:ListBucket on the bucket, its s3:prefix condition matching that prefix",
    "s3:DeleteObject": "s3:DeleteObject on the keys",
    "s3:GetObject, s3:PutObject": "s3:GetObject on the source key and s3:PutObject on the destination key",
}
# AWS's AccessDenied message names the caller for requests within the bucket owner's account or
# organization ("User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: ...").
_DENIED_PRINCIPAL = re.compile(r"User: (arn:aws[\w-]*:(?:sts|iam)::\d{12}:\S+) is not authorized")
_AWS_ENDPOINT = re.compile(r"^https?://([^/]*\.)?(amazonaws\.com(\.cn)?|api\.aws)(:\d+)?(/|$)")


def _as_role_arn(arn: str) -> str:
    """``arn:aws:sts::1:assumed-role/r/session`` -> ``arn:aws:iam::1:role/r`` (the role to grant to)."""
    match = re.fullmatch(r"arn:(aws[\w-]*):sts::(\d{12}):assumed-role/([^/]+)/.*", arn)
    return f"arn:{match[1]}:iam::{match[2]}:role/{match[3]}" if match else arn


def _one_line(text: str, limit: int = 300) -> str:
    """Server text fit for a one-line message: whitespace collapsed, bounded, and any credential of
    this process's environment blanked (an AccessDenied message carries none; this keeps it so)."""
    text = " ".join(text.split())
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        value = os.environ.get(name)
        if value:
            text = text.replace(value, "***")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _explain_s3_errors(action: str):
    """botocore errors -> StorageError naming the endpoint and what to check (never a secret).
    ``action``: the IAM action(s) the operation needs, named when S3 refuses it.

    What went wrong decides the class: a TransientStorageError (throttling, a server error, a
    connection dropped mid-request, each still failing after the client's retries) is worth running
    the step again; an AccessDeniedError names the identity and the grant it lacks; anything else
    (unknown bucket or key, wrong credentials, an endpoint that does not answer at all) fails the
    same way every time."""
    import functools

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            from botocore.exceptions import (
                BotoCoreError,
                ClientError,
                HTTPClientError,
                IncompleteReadError,
                NoCredentialsError,
            )

            target = args[0] if args and isinstance(args[0], str) else ""
            try:
                result = method(self, *args, **kwargs)
                return list(result) if isinstance(result, Iterator) else result
            except NoCredentialsError as error:
                raise StorageError(
                    "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, "
                    "or run with an IAM role (IRSA on EKS)"
                ) from error
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code in ("NoSuchKey", "404", "NotFound"):
                    raise MissingObjectError(
                        f"no object at {target} on S3 at {self.endpoint}: deleted since it was "
                        f"listed, or never written ({code})"
                    ) from error
                if code in ("AccessDenied", "403"):  # "403": a HEAD's answer, which has no body to name a code
                    message = error.response.get("Error", {}).get("Message") or ""
                    raise self._access_denied(action, target, message, headless=code == "403") from error
                if _is_transient(error):
                    why = "throttled: more requests than the bucket takes now" if code == "SlowDown" else "server error"
                    raise TransientStorageError(
                        f"S3 at {self.endpoint} kept failing for {target} through {self.max_attempts} attempts: "
                        f"{why} ({code or 'HTTP error'})"
                    ) from error
                hints = {
                    "NoSuchBucket": "the bucket does not exist",
                    "InvalidAccessKeyId": "the access key is not known to this endpoint",
                    "SignatureDoesNotMatch": "the secret key does not match the access key",
                }
                hint = hints.get(code, code or "request failed")
                raise StorageError(f"S3 error at {self.endpoint} for {target}: {hint} ({code})") from error
            except (HTTPClientError, IncompleteReadError) as error:
                # Connected, then the connection was reset, timed out or cut short mid-answer.
                raise TransientStorageError(
                    f"cannot reach S3 at {self.endpoint} after retries: {type(error).__name__} for {target}, "
                    f"the connection broke mid-request through {self.max_attempts} attempts"
                ) from error
            except BotoCoreError as error:
                raise StorageError(
                    f"cannot reach S3 at {self.endpoint} after retries: {type(error).__name__}. Check "
                    "AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 and that the server is up."
                ) from error

        return wrapper

    return decorate


class S3ObjectStore(ObjectStore):
    """boto3 with the standard credential chain (env, profile, IRSA) and endpoint variables
    (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3): any S3 API (AWS, MinIO, SeaweedFS) without code changes."""

    def __init__(self) -> None:
        import boto3.session
        from botocore.config import Config

        # S3 answers a burst with 503 SlowDown and drops the odd connection; both pass. "standard"
        # mode retries throttling, 5xx, timeouts and broken connections with exponential backoff
        # and full jitter (from 1 s for throttling, 50 ms otherwise, 20 s a try at most); each
        # thread waits out its own throttled request, so a throttled process sends less by itself.
        # 10 attempts (boto's default is 3): about a minute of throttling before a request gives up
        # and the step fails for its RetryPolicy to run again; an endpoint that does not answer at
        # all still fails within half a minute. Not "adaptive": its client-side limiter slows every
        # request of the process (all prefixes, reads and writes) after any SlowDown, down to 0.5
        # requests/s; with one request in three throttled, a whole materialization took 325 s in
        # adaptive mode and 127 s in standard mode (AWS recommends standard). AWS_MAX_ATTEMPTS and
        # AWS_RETRY_MODE=adaptive override, as for any AWS SDK.
        self.max_attempts = int(os.environ.get("AWS_MAX_ATTEMPTS") or 10)
        self._client = boto3.session.Session().client(
            "s3",
            config=Config(
                retries={
                    "total_max_attempts": self.max_attempts,
                    "mode": os.environ.get("AWS_RETRY_MODE") or "standard",
                },
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=32,
            ),
        )
        self.endpoint = self._client.meta.endpoint_url
        self._identity: str | None = None
        self._identity_lock = threading.Lock()

    def _access_denied(self, action: str, target: str, server_message: str, headless: bool) -> AccessDeniedError:
        who = self._caller(server_message)
        noun = "role" if ":role/" in who else "identity"
        if headless:
            said = " (a HEAD's 403 names no reason: a wrong secret key answers it too)"
        elif server_message.strip().rstrip(".").lower() in ("", "access denied", "forbidden"):
            said = ""
        else:
            said = f" (S3: {_one_line(server_message)})"
        return AccessDeniedError(
            f"access denied: {action} on {target or 'the objects'} as {who}: that {noun} "
            f"needs {_NEEDS[action]}: see infra/iam/{said}"
        )

    def _caller(self, server_message: str) -> str:
        """The identity S3 refused, for the message only (never on a request's way). Whom AWS names
        in its answer; else AWS_ROLE_ARN, the role IRSA has the SDK assume on EKS; else, against
        AWS only, one STS GetCallerIdentity per store (it needs no permission, and other endpoints'
        keys are no business of AWS's), bounded to a few seconds, its failure named instead."""
        named = _DENIED_PRINCIPAL.search(server_message)
        if named:
            return _as_role_arn(named[1])
        if os.environ.get("AWS_ROLE_ARN"):
            return os.environ["AWS_ROLE_ARN"]
        with self._identity_lock:
            if self._identity is None:
                self._identity = self._ask_sts()
            return self._identity

    def _ask_sts(self) -> str:
        if not _AWS_ENDPOINT.match(self.endpoint or ""):
            return f"the credentials configured for {self.endpoint} (AWS_ROLE_ARN unset)"
        import boto3.session
        from botocore.config import Config

        try:
            # The S3 client's region: STS refuses to sign without one, and the S3 client has always one.
            sts = boto3.session.Session().client(
                "sts",
                region_name=self._client.meta.region_name,
                config=Config(connect_timeout=2, read_timeout=3, retries={"total_max_attempts": 1}),
            )
            return _as_role_arn(sts.get_caller_identity()["Arn"])
        except Exception as error:  # noqa: BLE001 - the message must still be made, naming why
            return f"an identity STS did not name (AWS_ROLE_ARN unset; GetCallerIdentity: {type(error).__name__})"

    @staticmethod
    def split(uri: str) -> tuple[str, str]:
        parts = urlsplit(uri)
        return parts.netloc, uri[len("s3://") + len(parts.netloc) + 1 :]

    @_explain_s3_errors("s3:ListBucket")
    def list_objects(self, prefix_uri: str, recursive: bool = True, content_hash: bool = True) -> Iterator[ObjectInfo]:
        bucket, prefix = self.split(prefix_uri.rstrip("/") + "/")
        paginator = self._client.get_paginator("list_objects_v2")
        kwargs = {"Bucket": bucket, "Prefix": prefix}
        if not recursive:
            kwargs["Delimiter"] = "/"
        for page in paginator.paginate(**kwargs):
            for obj in page.get("Contents", []):
                yield ObjectInfo(
                    f"s3://{bucket}/{obj['Key']}",
                    int(obj["Size"]),
                    obj["ETag"].strip('"'),
                    obj["LastModified"].timestamp(),
                )

    @_explain_s3_errors("s3:ListBucket")
    def clock(self, uri: str) -> float:
        # The Date header of a one-key listing: the server's time, not this machine's.
        from email.utils import parsedate_to_datetime

        bucket, prefix = self.split(uri.rstrip("/") + "/")
        answer = self._client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        return parsedate_to_datetime(answer["ResponseMetadata"]["HTTPHeaders"]["date"]).timestamp()

    @_explain_s3_errors("s3:ListBucket")
    def list_folders(self, prefix_uri: str) -> list[str]:
        bucket, prefix = self.split(prefix_uri.rstrip("/") + "/")
        paginator = self._client.get_paginator("list_objects_v2")
        names = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                names.append(common["Prefix"][len(prefix) :].rstrip("/"))
        return sorted(names)

    @_explain_s3_errors("s3:GetObject")
    def read_bytes(self, uri: str, max_bytes: int | None = None) -> bytes:
        from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError

        bucket, key = self.split(uri)
        # boto retries a request until its answer starts; a connection lost while the body streams
        # in is ours to retry (same backoff as boto's for non-throttling errors).
        for attempt in range(1, self.max_attempts + 1):
            body = self._client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                if max_bytes is None:
                    return body.read()
                data = body.read(max_bytes + 1)
                if len(data) <= max_bytes:
                    # The end of the body: boto checks its length against Content-Length only
                    # there, so a body cut short raises here instead of passing for a small object.
                    data += body.read()
                return data
            except (ResponseStreamingError, IncompleteReadError, ReadTimeoutError):
                if attempt == self.max_attempts:
                    raise
                time.sleep(random.random() * min(0.05 * 2 ** (attempt - 1), 20))
            finally:
                body.close()
        raise AssertionError("unreachable: botocore's Config refuses total_max_attempts < 1, so max_attempts >= 1")

    @_explain_s3_errors("s3:PutObject")
    def write_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = self.split(uri)
        self._client.put_object(Bucket=bucket, Key=key, Body=data)

    @_explain_s3_errors("s3:GetObject")
    def exists(self, uri: str) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = self.split(uri)
        try:
            self._client.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    @_explain_s3_errors("s3:DeleteObject")
    def delete(self, uris: Iterable[str]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for uri in uris:
            bucket, key = self.split(uri)
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            for start in range(0, len(keys), 1000):
                chunk = [{"Key": key} for key in keys[start : start + 1000]]
                self._client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})

    @_explain_s3_errors("s3:GetObject, s3:PutObject")
    def copy(self, source_uri: str, destination_uri: str) -> None:
        source_bucket, source_key = self.split(source_uri)
        bucket, key = self.split(destination_uri)
        self._client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": source_key})

    @_explain_s3_errors("s3:PutObject")
    def write_bytes_if_absent(self, uri: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = self.split(uri)
        try:
            self._client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            return True
        except ClientError as error:
            # 412: the name exists. 409: a concurrent conditional write of it is in flight, and
            # only one of the two can win.
            if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
