"""Each class's mean embedding, kept with the digest of the embeddings files it was computed from,
so that naming the class a flagged image looks more like, after a small change, reads only the
classes whose files changed: without it, every embedding of the collection. No Dagster.

``<root>/models/centroids.npz``: per class, the digest of its published embeddings files (files are
immutable and never renamed, so a digest names one set of rows for ever) and their mean. Speed
depends on this file, correctness never does: a missing, unreadable or outdated entry is computed
again from the files.
"""

from __future__ import annotations

import io

import numpy as np

from fruit_assets.layout import DataLayout
from fruit_assets.spark_jobs.quality import class_centroids as computed_centroids
from fruit_assets.steps.publication import embeddings_digest
from fruit_assets.storage import StorageError, open_store
from fruit_assets.storage.uris import join_uri
from fruit_assets.storage.versions import current_version


def centroids_uri(layout: DataLayout) -> str:
    return join_uri(layout.root, "models", "centroids.npz")


def class_centroids(spark, layout: DataLayout, classes) -> dict[str, np.ndarray]:
    """{class: mean embedding} of the ``classes`` that have embeddings, as published now."""
    version = current_version(layout.root)
    digests = {c: embeddings_digest(version, [c]) for c in classes if version.class_uris("embeddings", c)}
    kept = _read(layout)
    stale = sorted(c for c, digest in digests.items() if c not in kept or kept[c][0] != digest)
    centroids = {c: kept[c][1] for c in digests if c not in stale}
    if stale:
        centroids.update(
            computed_centroids(spark, [(c, uri) for c in stale for uri in version.class_uris("embeddings", c)])
        )
        _write(layout, {c: (digests[c], centroids[c]) for c in sorted(centroids)})
    return centroids


def _read(layout: DataLayout) -> dict[str, tuple[str, np.ndarray]]:
    uri = centroids_uri(layout)
    try:
        store = open_store(uri)
        if not store.exists(uri):
            return {}
        arrays = np.load(io.BytesIO(store.read_bytes(uri)))
        return {
            str(c): (str(d), m) for c, d, m in zip(arrays["classes"], arrays["digests"], arrays["means"], strict=True)
        }
    except (StorageError, OSError, ValueError, KeyError):
        return {}  # computed again: see the module's docstring


def _write(layout: DataLayout, entries: dict[str, tuple[str, np.ndarray]]) -> None:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        classes=np.array(list(entries), dtype=str),
        digests=np.array([d for d, _m in entries.values()], dtype=str),
        means=np.array([m for _d, m in entries.values()], dtype=np.float64).reshape(len(entries), -1),
    )
    uri = centroids_uri(layout)
    try:
        open_store(uri).write_bytes(uri, buffer.getvalue())
    except StorageError:
        pass  # the next review computes them again
