"""What the published feature table was made from. No Dagster.

Each published version (storage/versions.py) holds, per class, the digest of the manifest its rows
were embedded from, the (engine, weights) that embedded them and the PCA basis that projected them;
the reduced_features step publishes them with the rows, in the same atomic write. They let
``fruit-assets materialize`` tell, from listings and small files alone (no Spark, no Dagster run),
that nothing changed since the table was published.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

from fruit_assets.layout import DataLayout
from fruit_assets.storage import open_store
from fruit_assets.storage.versions import Version, current_version


def manifest_digest(manifest: pa.Table) -> str:
    """Of the (path, etag, size) triples, in path order: what raw_images saw of the class."""
    digest = hashlib.sha256()
    for path, etag, size in sorted(
        zip(manifest["path"].to_pylist(), manifest["etag"].to_pylist(), manifest["size"].to_pylist())
    ):
        digest.update(f"{path}\0{etag}\0{size}\n".encode())
    return digest.hexdigest()[:20]


def read_json(uri: str) -> dict | None:
    store = open_store(uri)
    return json.loads(store.read_bytes(uri)) if store.exists(uri) else None


def write_json(uri: str, record: dict) -> None:
    open_store(uri).write_bytes(uri, json.dumps(record, indent=1, sort_keys=True).encode())


def published_entries(layout: DataLayout) -> dict[str, dict]:
    return current_version(layout.root).made_from


def embeddings_digest(version: Version, classes) -> str:
    """Of the published embeddings files of ``classes`` in ``version``. Files are immutable and
    every new one gets a new name, so an equal digest means the very same embeddings."""
    digest = hashlib.sha256()
    for fruit_class in sorted(classes):
        digest.update(
            f"{fruit_class}\0{chr(31).join(version.files.get('embeddings', {}).get(fruit_class, ()))}\n".encode()
        )
    return digest.hexdigest()[:20]


def current_made_from(version: Version, fruit_class: str) -> dict | None:
    """What the class's published rows were made from (images, model, basis), if its published
    embeddings are still the very files that record names; None otherwise."""
    entry = version.made_from.get(fruit_class)
    return entry if entry is not None and entry.get("embeddings") == embeddings_digest(version, [fruit_class]) else None


def made_with(entry: dict, model_tag: str) -> bool:
    # A class whose every image was quarantined has no embeddings, hence no model tag.
    return entry.get("model") in (model_tag, "")


def published_embeddings_version(layout: DataLayout, classes) -> str:
    """The data version of image_embeddings for ``classes``: which files are published for them now."""
    return embeddings_digest(current_version(layout.root), classes)
