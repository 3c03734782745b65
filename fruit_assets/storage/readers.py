"""The public readers: one complete published version of a dataset as a ``pyarrow.Table``,
whatever a writer is doing at that instant. No Dagster, no Spark.

The file set comes from the current version (storage/versions.py), never from a listing. A writer's
cleanup may delete a superseded file while it is being read; the reader then resolves the current
version again and reads it whole, so it returns one version's rows, exactly once each.
"""

from __future__ import annotations

import io
import time

import pyarrow as pa
import pyarrow.parquet as pq

from fruit_assets.storage.errors import StorageError
from fruit_assets.storage.objects import open_store
from fruit_assets.storage.schemas import EMBEDDINGS, QUARANTINE, REDUCED_FEATURES
from fruit_assets.storage.uris import normalize_uri
from fruit_assets.storage.version_record import Version
from fruit_assets.storage.versions import current_version

EMPTY = {"embeddings": EMBEDDINGS, "quarantine": QUARANTINE, "reduced_features": REDUCED_FEATURES}


class VersionChangedError(StorageError):
    """Versions were replaced faster than one could be read."""


def read_published(root_uri: str, dataset: str, attempts: int = 8) -> tuple[pa.Table, Version]:
    """(every row of ``dataset`` in the current version, that version)."""
    root = normalize_uri(root_uri)
    store = open_store(root)
    for attempt in range(attempts):
        version = current_version(root)
        try:
            tables = [pq.read_table(io.BytesIO(store.read_bytes(uri))) for uri in version.uris(dataset)]
        except (FileNotFoundError, StorageError):
            if all(store.exists(uri) for uri in version.uris(dataset)):
                raise  # not a file superseded under us: a real storage problem
            time.sleep(min(0.05 * 2**attempt, 1.0))
            continue
        if not tables:
            return EMPTY[dataset].empty_table(), version
        return pa.concat_tables(tables), version
    raise VersionChangedError(f"{root}: {attempts} versions of {dataset} were replaced while being read")


def read_reduced_features(root_uri: str) -> pa.Table:
    """The published feature table: one row per current image under Training/ that was embedded,
    every row projected on the one published PCA basis (``fruit_class``, ``path``, ``features``...)."""
    return read_published(root_uri, "reduced_features")[0]


def read_embeddings(root_uri: str) -> pa.Table:
    """The published embeddings: one row of 1280 floats per embedded image (``fruit_class``,
    ``path``, ``embedding``...), all from one version."""
    return read_published(root_uri, "embeddings")[0]
