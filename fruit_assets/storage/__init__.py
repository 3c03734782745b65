"""One object-storage layer for ``file://`` and ``s3://`` URIs (no Dagster, no Spark).

Spark tasks, the Dagster driver and the CLI all reach storage through :func:`open_store`, so the
code path that runs against S3 in production is the one the local tests exercise.
"""

from fruit_assets.storage.errors import AccessDeniedError, MissingObjectError, StorageError, TransientStorageError
from fruit_assets.storage.objects import ObjectInfo, ObjectStore, open_store
from fruit_assets.storage.uris import join_uri, normalize_uri

__all__ = [
    "AccessDeniedError",
    "MissingObjectError",
    "ObjectInfo",
    "ObjectStore",
    "StorageError",
    "TransientStorageError",
    "join_uri",
    "normalize_uri",
    "open_store",
]
