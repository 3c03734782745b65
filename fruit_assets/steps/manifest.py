"""raw_images: which images exist, per class. No Dagster, no Spark (listing is a driver job)."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from fruit_assets.layout import DataLayout
from fruit_assets.steps.classes import InvalidClass, check_class_names
from fruit_assets.steps.reports import ClassCounts, StepReport
from fruit_assets.storage import MissingObjectError, StorageError, open_store, schemas
from fruit_assets.storage.parquet_io import read_table, write_table


def training_folders(layout: DataLayout, keep=()) -> tuple[list[str], list[InvalidClass]]:
    """(the class folders under Training/ that hold at least one object, an emptied folder lingering
    as a directory or a prefix being no class; the folders skipped for their names). ``keep``:
    the classes already known, which keep their name against a twin (steps/classes.py)."""
    store = open_store(layout.training)

    def holding(names: list[str]) -> list[str]:
        return [c for c in names if store.holds_objects(layout.training_class(c))]

    return check_class_names(store.list_folders(layout.training), layout, keep, holding)


def training_classes(layout: DataLayout, keep=()) -> list[str]:
    return training_folders(layout, keep)[0]


def discover_classes(layout: DataLayout) -> list[str]:
    classes = training_classes(layout)
    if not classes:
        raise no_classes_error(layout)
    return classes


def no_classes_error(layout: DataLayout) -> StorageError:
    return StorageError(
        f"no class folders under {layout.training}/: FRUIT_DATA_URI must hold "
        "Training/<Class>/<images> (try `fruit-assets sample <root>`)"
    )


def images_only(objects) -> list:
    """The listed objects minus the local store's in-flight ``.tmp-*`` files (a write not yet
    renamed into place is not an image of the class)."""
    return [info for info in objects if not info.uri.rsplit("/", 1)[-1].startswith(".tmp-")]


def list_class_images(layout: DataLayout, fruit_class: str) -> pa.Table:
    """Every object directly or indirectly under Training/<class>/: nothing is filtered here, so
    a stray .DS_Store is accounted for (quarantined later) rather than silently dropped."""
    folder = layout.training_class(fruit_class)
    listed_at = time.time()
    objects = images_only(open_store(folder).list_objects(folder))
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
            "mtime": [dt.datetime.fromtimestamp(info.mtime, dt.UTC) for info in objects],
        },
        schema=schemas.MANIFEST,
    ).replace_schema_metadata({LISTED_AT: repr(listed_at)})


# When the listing a manifest records began (seconds since the epoch), in its schema's metadata: a
# local file modified since then, or too close before it, is hashed again (steps/fingerprints.py).
LISTED_AT = "fruit_assets.listed_at"


def manifest_listed_at(manifest: pa.Table) -> float | None:
    """When the manifest's listing began; None for a manifest written before it was recorded."""
    value = (manifest.schema.metadata or {}).get(LISTED_AT.encode())
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def write_manifest(layout: DataLayout, fruit_class: str, manifest: pa.Table) -> str:
    uri = layout.manifest(fruit_class)
    write_table(uri, manifest)
    return uri


def read_manifest(layout: DataLayout, fruit_class: str) -> pa.Table:
    manifest = read_manifest_if_any(layout, fruit_class)
    if manifest is None:
        raise StorageError(
            f"no manifest for class {fruit_class!r} at {layout.manifest(fruit_class)}: materialize raw_images first"
        )
    return manifest


def read_manifest_if_any(layout: DataLayout, fruit_class: str) -> pa.Table | None:
    """The class's manifest, or None if raw_images never wrote one."""
    uri = layout.manifest(fruit_class)
    return read_table(uri) if open_store(uri).exists(uri) else None


def build_manifests(layout: DataLayout, classes: list[str]) -> StepReport:
    started = time.perf_counter()
    report = StepReport(output=f"{layout.root}/manifests")

    def build(fruit_class: str) -> int:
        manifest = list_class_images(layout, fruit_class)
        write_manifest(layout, fruit_class, manifest)
        return len(manifest)

    # One listing per class prefix, concurrently: on S3 each is mostly round-trip latency.
    with ThreadPoolExecutor(max_workers=16) as pool:
        for fruit_class, images in zip(classes, pool.map(build, classes)):
            report.per_class[fruit_class] = ClassCounts(images=images)
    report.seconds = time.perf_counter() - started
    return report


def thumbnail_images(layout: DataLayout, fruit_class: str, count: int = 4, max_bytes: int = 5_000_000) -> list[bytes]:
    """The bytes of the class's first few objects small enough (by their listed size) to fetch into
    the driver for a picture."""
    manifest = read_manifest(layout, fruit_class)
    small = [p for p, size in zip(manifest["path"].to_pylist(), manifest["size"].to_pylist()) if size <= max_bytes]
    pictures = []
    for path in small:
        if len(pictures) == count:
            break
        try:
            pictures.append(open_store(path).read_bytes(path))
        except MissingObjectError:
            continue  # deleted since the listing: the embedding step records it, a picture can do without
    return pictures
