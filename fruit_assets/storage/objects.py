from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator
from urllib.parse import urlsplit

from fruit_assets.errors import UserFacingError


class StorageError(UserFacingError):
    """A storage problem with a message a user can act on."""


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    etag: str  # MD5 hex of the content for local files and single-part S3 uploads
    mtime: float  # seconds since the epoch


def normalize_uri(location: str) -> str:
    """``./data`` -> ``file:///abs/data``; ``s3://b/p/`` -> ``s3://b/p``. No percent-encoding:
    object keys keep their spaces so a URI reads the same as the key it names."""
    location = location.strip()
    if location.startswith("s3a://"):
        location = "s3://" + location[len("s3a://") :]
    if location.startswith("s3://"):
        bucket_and_key = location[len("s3://") :].strip("/")
        if not bucket_and_key:
            raise StorageError(f"{location!r} names no bucket")
        return "s3://" + bucket_and_key
    if location.startswith("file://"):
        location = location[len("file://") :]
    elif "://" in location:
        raise StorageError(f"unsupported storage scheme in {location!r}: use a path, file:// or s3://")
    path = os.path.abspath(os.path.expanduser(location))
    return "file://" + path.rstrip("/") if path != "/" else "file:///"


def join_uri(base: str, *parts: str) -> str:
    uri = base.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            uri = f"{uri}/{part}"
    return uri


def open_store(uri: str) -> "ObjectStore":
    """The store that serves ``uri``; one per process, scheme and AWS configuration (clients are
    thread-safe; a process whose AWS variables change gets a client that uses the new ones)."""
    if uri.startswith("s3://"):
        key = ("s3",) + tuple(os.environ.get(name, "") for name in _AWS_CLIENT_VARIABLES)
        key += (hashlib.sha256(os.environ.get("AWS_SECRET_ACCESS_KEY", "").encode()).hexdigest(),)
    else:
        key = ("file",)
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = S3ObjectStore() if key[0] == "s3" else LocalObjectStore()
            _STORES[key] = store
        return store


_AWS_CLIENT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN",
                         "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
_STORES: dict[tuple, "ObjectStore"] = {}
_STORES_LOCK = threading.Lock()


class ObjectStore:
    """Flat object semantics over both backends: a "folder" is a key prefix ending in ``/``."""

    def list_objects(self, prefix_uri: str, recursive: bool = True, content_hash: bool = True) -> Iterator[ObjectInfo]:
        """Objects under the prefix, in key order. ``content_hash=False`` lets the local backend
        skip reading every file (etag becomes ``mtime:<ns>``); S3's ETag is free either way."""
        raise NotImplementedError

    def list_folders(self, prefix_uri: str) -> list[str]:
        """Names of the immediate sub-folders of ``prefix_uri``."""
        raise NotImplementedError

    def holds_objects(self, prefix_uri: str) -> bool:
        """Whether anything is under the prefix (an emptied folder can linger as a directory, or as
        a prefix on filer-backed S3: no objects, nothing there)."""
        return next(iter(self.list_objects(prefix_uri, content_hash=False)), None) is not None

    def read_bytes(self, uri: str) -> bytes:
        raise NotImplementedError

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Readers see the whole object or nothing (never a prefix of it)."""
        raise NotImplementedError

    def exists(self, uri: str) -> bool:
        raise NotImplementedError

    def delete(self, uris: Iterable[str]) -> None:
        raise NotImplementedError

    def delete_prefix(self, prefix_uri: str) -> None:
        self.delete([info.uri for info in self.list_objects(prefix_uri)])

    def replace_folder(self, staged_uri: str, final_uri: str) -> None:
        """Make ``final_uri`` hold exactly the objects staged under ``staged_uri``."""
        raise NotImplementedError

    def list_committed(self, folder_uri: str) -> list[ObjectInfo]:
        """The objects of the version of ``folder_uri`` that the last finished replace_folder
        committed (all of them where replace_folder is atomic)."""
        return list(self.list_objects(folder_uri))


# Names the objects of the committed version of a folder on S3 (where a commit is not one rename).
# "_"-prefixed, so Spark and pyarrow.dataset skip it when reading the folder as a dataset.
COMMIT_INDEX = "_committed.json"


def _local_path(uri: str) -> str:
    if not uri.startswith("file://"):
        raise StorageError(f"not a file:// URI: {uri!r}")
    return uri[len("file://") :]


def _md5_file(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LocalObjectStore(ObjectStore):
    def list_objects(self, prefix_uri: str, recursive: bool = True, content_hash: bool = True) -> Iterator[ObjectInfo]:
        root = _local_path(prefix_uri)
        if not os.path.isdir(root):
            return
        if recursive:
            walker = ((d, sorted(f)) for d, _dirs, f in sorted(os.walk(root)))
        else:
            walker = iter([(root, sorted(e.name for e in os.scandir(root) if e.is_file()))])
        for directory, files in walker:
            for name in files:
                path = os.path.join(directory, name)
                stat = os.stat(path)
                etag = _md5_file(path) if content_hash else f"mtime:{stat.st_mtime_ns}"
                yield ObjectInfo("file://" + path, stat.st_size, etag, stat.st_mtime)

    def list_folders(self, prefix_uri: str) -> list[str]:
        root = _local_path(prefix_uri)
        if not os.path.isdir(root):
            return []
        return sorted(entry.name for entry in os.scandir(root) if entry.is_dir())

    def read_bytes(self, uri: str) -> bytes:
        with open(_local_path(uri), "rb") as handle:
            return handle.read()

    def write_bytes(self, uri: str, data: bytes) -> None:
        path = _local_path(uri)
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        # Dot-prefixed temp name: Spark and pyarrow.dataset skip hidden files while it exists.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def exists(self, uri: str) -> bool:
        return os.path.exists(_local_path(uri))

    def delete(self, uris: Iterable[str]) -> None:
        for uri in uris:
            try:
                os.unlink(_local_path(uri))
            except FileNotFoundError:
                pass

    def delete_prefix(self, prefix_uri: str) -> None:
        shutil.rmtree(_local_path(prefix_uri), ignore_errors=True)

    def replace_folder(self, staged_uri: str, final_uri: str) -> None:
        # Two renames: a reader sees the old folder, then (for microseconds) none, then the new one;
        # never a mix of the two.
        staged, final = _local_path(staged_uri), _local_path(final_uri)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        if not os.path.isdir(staged):
            os.makedirs(staged)
        # Another writer committing the same folder at the same time can slip its version in
        # between our two renames; retire that one too and retry: the last writer wins whole.
        retired = []
        for attempt in range(10):
            if os.path.exists(final):
                retiring = os.path.join(os.path.dirname(final), f".retired-{uuid.uuid4().hex}")
                try:
                    os.rename(final, retiring)
                    retired.append(retiring)
                except FileNotFoundError:
                    pass  # the other writer retired it first
            try:
                os.rename(staged, final)
                break
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == 9:
                    raise
        for folder in retired:
            shutil.rmtree(folder, ignore_errors=True)


def _explain_s3_errors(method):
    """botocore errors -> StorageError naming the endpoint and what to check (never a secret)."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

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
            target = args[0] if args and isinstance(args[0], str) else ""
            hints = {
                "NoSuchBucket": "the bucket does not exist",
                "InvalidAccessKeyId": "the access key is not known to this endpoint",
                "SignatureDoesNotMatch": "the secret key does not match the access key",
                "AccessDenied": "the credentials are not allowed to do this",
                "403": "the credentials are not allowed to do this",
            }
            hint = hints.get(code, code or "request failed")
            raise StorageError(f"S3 error at {self.endpoint} for {target}: {hint} ({code})") from error
        except BotoCoreError as error:
            raise StorageError(
                f"cannot reach S3 at {self.endpoint} after retries: {type(error).__name__}. Check "
                "AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 and that the server is up."
            ) from error

    return wrapper


class S3ObjectStore(ObjectStore):
    """boto3 with the standard credential chain (env, profile, IRSA) and endpoint variables
    (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3): any S3 API (AWS, MinIO, SeaweedFS) without code changes."""

    def __init__(self) -> None:
        import boto3
        from botocore.config import Config

        # Bounded: 5 attempts with exponential backoff and jitter ("standard" mode), short connect
        # timeout, so a vanished endpoint fails a task in well under a minute instead of hanging.
        self._client = boto3.session.Session().client(
            "s3",
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=32,
            ),
        )
        self.endpoint = self._client.meta.endpoint_url

    @staticmethod
    def split(uri: str) -> tuple[str, str]:
        parts = urlsplit(uri)
        return parts.netloc, uri[len("s3://") + len(parts.netloc) + 1 :]

    @_explain_s3_errors
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

    @_explain_s3_errors
    def list_folders(self, prefix_uri: str) -> list[str]:
        bucket, prefix = self.split(prefix_uri.rstrip("/") + "/")
        paginator = self._client.get_paginator("list_objects_v2")
        names = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                names.append(common["Prefix"][len(prefix) :].rstrip("/"))
        return sorted(names)

    @_explain_s3_errors
    def read_bytes(self, uri: str) -> bytes:
        bucket, key = self.split(uri)
        return self._client.get_object(Bucket=bucket, Key=key)["Body"].read()

    @_explain_s3_errors
    def write_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = self.split(uri)
        self._client.put_object(Bucket=bucket, Key=key, Body=data)

    @_explain_s3_errors
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

    @_explain_s3_errors
    def delete(self, uris: Iterable[str]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for uri in uris:
            bucket, key = self.split(uri)
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            for start in range(0, len(keys), 1000):
                chunk = [{"Key": key} for key in keys[start : start + 1000]]
                self._client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})

    @_explain_s3_errors
    def replace_folder(self, staged_uri: str, final_uri: str) -> None:
        # S3 has no rename. Copy the new objects in under names no earlier version used, then
        # switch the folder's commit index (one PUT, atomic), then delete the old objects. A reader
        # going through list_committed sees the old version or the new one, whenever this stops; a
        # plain listing sees both until the deletes finish (or the next commit, if this one died).
        old = [info.uri for info in self.list_objects(final_uri)]
        staged_bucket, staged_prefix = self.split(staged_uri.rstrip("/") + "/")
        final_bucket, final_prefix = self.split(final_uri.rstrip("/") + "/")
        copied = []
        for info in self.list_objects(staged_uri):
            _, key = self.split(info.uri)
            copied.append(key[len(staged_prefix) :])
            self._client.copy_object(
                Bucket=final_bucket, Key=final_prefix + copied[-1], CopySource={"Bucket": staged_bucket, "Key": key}
            )
        index = json.dumps({"files": sorted(copied)}).encode()
        self._client.put_object(Bucket=final_bucket, Key=final_prefix + COMMIT_INDEX, Body=index)
        keep = {final_prefix + name for name in [*copied, COMMIT_INDEX]}
        self.delete(uri for uri in old if self.split(uri)[1] not in keep)
        self.delete_prefix(staged_uri)

    @_explain_s3_errors
    def list_committed(self, folder_uri: str) -> list[ObjectInfo]:
        objects = list(self.list_objects(folder_uri))
        prefix = folder_uri.rstrip("/") + "/"
        index_uri = prefix + COMMIT_INDEX
        if not any(info.uri == index_uri for info in objects):
            return objects  # written before commit indexes, or never committed
        committed = set(json.loads(self.read_bytes(index_uri))["files"])
        return [info for info in objects if info.uri[len(prefix) :] in committed]
