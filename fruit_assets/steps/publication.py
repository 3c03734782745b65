"""What the published feature table was made from, in one small record beside it. No Dagster.

``output/publication.json`` holds, per class, the digest of the manifest its rows were embedded
from, the (engine, weights) that embedded them and the PCA basis that projected them; the
reduced_features step writes it after each commit. It lets ``fruit-assets materialize`` tell, from
listings and small files alone (no Spark, no Dagster run), that nothing changed since the table
was published.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

from fruit_assets.layout import DataLayout
from fruit_assets.storage import open_store

RECORD_VERSION = 1


def manifest_digest(manifest: pa.Table) -> str:
    """Of the (path, etag, size) triples, in path order: what raw_images saw of the class."""
    digest = hashlib.sha256()
    for path, etag, size in sorted(zip(manifest["path"].to_pylist(), manifest["etag"].to_pylist(),
                                       manifest["size"].to_pylist())):
        digest.update(f"{path}\0{etag}\0{size}\n".encode())
    return digest.hexdigest()[:20]


def read_json(uri: str) -> dict | None:
    store = open_store(uri)
    return json.loads(store.read_bytes(uri)) if store.exists(uri) else None


def write_json(uri: str, record: dict) -> None:
    open_store(uri).write_bytes(uri, json.dumps(record, indent=1, sort_keys=True).encode())


def record_publication(layout: DataLayout, per_class: dict[str, dict]) -> None:
    """Adds (or replaces) the entries of the classes just projected: {class: {"manifest",
    "model", "pca"}}. Entries of other classes stay as they were (their own basis recorded)."""
    record = read_json(layout.publication) or {"v": RECORD_VERSION, "classes": {}}
    if record.get("v") != RECORD_VERSION:
        record = {"v": RECORD_VERSION, "classes": {}}
    record["classes"].update(per_class)
    write_json(layout.publication, record)


def forget_classes(layout: DataLayout, classes: list[str]) -> None:
    record = read_json(layout.publication)
    if record and any(c in record.get("classes", {}) for c in classes):
        for fruit_class in classes:
            record["classes"].pop(fruit_class, None)
        write_json(layout.publication, record)


def published_entries(layout: DataLayout) -> dict[str, dict]:
    record = read_json(layout.publication) or {}
    return record.get("classes", {}) if record.get("v") == RECORD_VERSION else {}
