"""Storage locations as URIs: ``file://`` paths and ``s3://`` keys, normalized and joined."""

from __future__ import annotations

import os

from fruit_assets.storage.errors import StorageError


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
