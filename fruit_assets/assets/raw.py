from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from fruit_assets.concurrency import DATA_ROOT_POOL
from fruit_assets.assets.failures import reported_as_one_line
from fruit_assets.assets.metadata import per_class_table, step_metadata
from fruit_assets.partitions import fruit_class_partitions
from fruit_assets.manifest import read_manifest
from fruit_assets.pipeline import build_manifests
from fruit_assets.plots import markdown_image, thumbnails
from fruit_assets.storage import open_store
from fruit_assets.resources import FruitStorage


@asset(
    pool=DATA_ROOT_POOL,
    partitions_def=fruit_class_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"s3", "parquet"},
    description="The images under <root>/Training/<class>/: a manifest (path, size, etag, mtime) per class.",
)
def raw_images(context: AssetExecutionContext, storage: FruitStorage) -> MaterializeResult:
    with reported_as_one_line():
        classes = list(context.partition_keys)
        report = build_manifests(storage.layout, classes)
    for fruit_class, counts in sorted(report.per_class.items()):
        context.log.info(f"{fruit_class}: {counts.images} objects")
    metadata = step_metadata(report)
    metadata["images_per_class"] = per_class_table(report, ("images",))
    samples = {c: [open_store(p).read_bytes(p) for p in _thumbnail_paths(storage.layout, c)] for c in classes[:12]}
    metadata["thumbnails"] = MetadataValue.md(markdown_image(thumbnails(samples), "sample images"))
    return MaterializeResult(metadata=metadata)


def _thumbnail_paths(layout, fruit_class: str, count: int = 4, max_bytes: int = 5_000_000) -> list[str]:
    """The class's first few objects small enough to fetch into the driver for a picture."""
    manifest = read_manifest(layout, fruit_class)
    small = [p for p, size in zip(manifest["path"].to_pylist(), manifest["size"].to_pylist()) if size <= max_bytes]
    return small[:count]
