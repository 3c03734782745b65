"""raw_images: which images exist, per class. No Dagster, no Spark (listing is a driver job)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from fruit_assets.layout import DataLayout
from fruit_assets.spark_jobs import schemas
from fruit_assets.spark_jobs.parquet_io import read_table, write_table
from fruit_assets.storage import StorageError, open_store


def discover_classes(layout: DataLayout) -> list[str]:
    store = open_store(layout.root)
    classes = store.list_folders(layout.training)
    if not classes:
        raise StorageError(
            f"no class folders under {layout.training}/: FRUIT_DATA_URI must hold "
            "Training/<Class>/<images> (try `fruit-assets sample <root>`)"
        )
    return classes


def list_class_images(layout: DataLayout, fruit_class: str) -> pa.Table:
    """Every object directly or indirectly under Training/<class>/: nothing is filtered here, so
    a stray .DS_Store is accounted for (quarantined later) rather than silently dropped."""
    folder = layout.training_class(fruit_class)
    objects = [
        info for info in open_store(folder).list_objects(folder)
        if not info.uri.rsplit("/", 1)[-1].startswith(".tmp-")
    ]
    if not objects:
        # An empty manifest would "succeed" with nothing in it: a wrong root must fail loudly.
        discover_classes(layout)  # raises first if the root has no Training/<Class>/ at all
        raise StorageError(
            f"no objects under {folder}/: the class folder is empty or gone (delete the partition "
            f"{fruit_class!r} in the Dagster UI if the class was removed on purpose)"
        )
    return pa.table(
        {
            "path": [info.uri for info in objects],
            "fruit_class": [fruit_class] * len(objects),
            "size": [info.size for info in objects],
            "etag": [info.etag for info in objects],
            "mtime": [dt.datetime.fromtimestamp(info.mtime, dt.timezone.utc) for info in objects],
        },
        schema=schemas.MANIFEST,
    )


def write_manifest(layout: DataLayout, fruit_class: str, manifest: pa.Table) -> str:
    uri = layout.manifest(fruit_class)
    write_table(uri, manifest)
    return uri


def read_manifest(layout: DataLayout, fruit_class: str) -> pa.Table:
    uri = layout.manifest(fruit_class)
    if not open_store(uri).exists(uri):
        raise StorageError(f"no manifest for class {fruit_class!r} at {uri}: materialize raw_images first")
    return read_table(uri)
