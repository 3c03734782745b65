from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from fruit_assets.assets.failures import RERUN_POLICY, reported_as_one_line
from fruit_assets.assets.metadata import class_counts, per_class_table, record_by_partition, run_metadata
from fruit_assets.assets.plots import markdown_image, thumbnails
from fruit_assets.concurrency import DATA_ROOT_POOL
from fruit_assets.partitions import fruit_class_partitions
from fruit_assets.resources import FruitStorage
from fruit_assets.steps.manifest import build_manifests, thumbnail_images


@asset(
    pool=DATA_ROOT_POOL,
    retry_policy=RERUN_POLICY,
    partitions_def=fruit_class_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"s3", "parquet"},
    description="The images under <root>/Training/<class>/: a manifest (path, size, etag, mtime) per class.",
)
def raw_images(context: AssetExecutionContext, storage: FruitStorage) -> MaterializeResult:
    with reported_as_one_line():
        classes = list(context.partition_keys)
        report = build_manifests(storage.layout, classes)
        # Reads listed images on the driver: a refused one (403) fails the step in one line too.
        samples = {c: thumbnail_images(storage.layout, c) for c in classes[:12]}
    for fruit_class, counts in sorted(report.per_class.items()):
        context.log.info(f"{fruit_class}: {counts.images} objects")
    of_run = run_metadata(report, ("images",))
    of_run["images_per_class"] = per_class_table(report, ("images",))
    of_run["thumbnails"] = MetadataValue.md(markdown_image(thumbnails(samples), "sample images"))
    record_by_partition(
        context,
        {
            c: {**class_counts(report, c, ("images",)), "output_path": MetadataValue.path(report.output)}
            for c in classes
        },
        of_run,
    )
    return MaterializeResult()
