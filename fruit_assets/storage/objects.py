"""One object-storage interface over ``file://`` and ``s3://`` URIs, and the store that serves each
URI: one per process, scheme and AWS configuration (storage/local_store.py, storage/s3_store.py)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    etag: str  # MD5 hex of the content for local files and single-part S3 uploads
    mtime: float  # seconds since the epoch


def open_store(uri: str) -> ObjectStore:
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
            # The backends subclass ObjectStore, hence imported here, once the base is defined.
            from fruit_assets.storage.local_store import LocalObjectStore
            from fruit_assets.storage.s3_store import S3ObjectStore

            store = S3ObjectStore() if key[0] == "s3" else LocalObjectStore()
            _STORES[key] = store
        return store


_AWS_CLIENT_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
)
_STORES: dict[tuple, ObjectStore] = {}
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

    def read_bytes(self, uri: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes; with ``max_bytes``, at most one byte more than that (more means the
        object is larger, and the rest is never fetched)."""
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

    def copy(self, source_uri: str, destination_uri: str) -> None:
        """A new object with the source's bytes (S3: server-side, nothing downloaded)."""
        self.write_bytes(destination_uri, self.read_bytes(source_uri))

    def write_bytes_if_absent(self, uri: str, data: bytes) -> bool:
        """Writes ``uri`` only if nothing has that name yet, atomically; False if something has."""
        raise NotImplementedError

    def clock(self, uri: str) -> float:
        """The storage's own time now (seconds since the epoch), on the clock that stamps the
        ``mtime`` of what it lists: the one clock every writer of a root shares. Locally, this
        machine's."""
        return time.time()
