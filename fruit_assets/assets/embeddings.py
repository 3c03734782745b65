from dagster import AssetExecutionContext, BackfillPolicy, DataVersion, MaterializeResult, MetadataValue, asset

from fruit_assets.assets.checks import EMBEDDING_CHECKS, check_results
from fruit_assets.assets.failures import RERUN_POLICY, reported_as_one_line
from fruit_assets.assets.housekeeping import sweep_staging_of_finished_runs
from fruit_assets.assets.metadata import (
    class_counts,
    per_class_table,
    record_by_partition,
    run_metadata,
    spark_metadata,
)
from fruit_assets.assets.model import embedding_model
from fruit_assets.assets.plots import class_counts_bars, markdown_image
from fruit_assets.assets.quality import REVIEW_CHECKS, review_check, review_metadata
from fruit_assets.assets.raw import raw_images
from fruit_assets.concurrency import DATA_ROOT_POOL
from fruit_assets.featurize.engines import InferenceModel, precision_of
from fruit_assets.models.build import inference_model
from fruit_assets.partitions import fruit_class_partitions, registered_classes
from fruit_assets.progress import Throttled
from fruit_assets.resources import EmbeddingModelResource, FruitStorage, SparkResource
from fruit_assets.steps.checks import embedding_checks
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.publication import published_embeddings_versions
from fruit_assets.steps.reports import StepReport
from fruit_assets.steps.review import review_new_images


@asset(
    pool=DATA_ROOT_POOL,
    retry_policy=RERUN_POLICY,
    deps=[raw_images, embedding_model],
    partitions_def=fruit_class_partitions,
    # A backfill over many classes is one Spark application: one JVM and one model per worker,
    # not one per class.
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"spark", "onnx", "parquet"},
    check_specs=EMBEDDING_CHECKS + REVIEW_CHECKS,
    description="MobileNetV2 (no top, global average pooling) embeddings: 1280 float32 per image.",
)
def image_embeddings(
    context: AssetExecutionContext,
    storage: FruitStorage,
    spark: SparkResource,
    embedding_settings: EmbeddingModelResource,
) -> MaterializeResult:
    layout = storage.layout
    with reported_as_one_line():
        classes = list(context.partition_keys)
        model_report = inference_model(
            layout,
            embedding_settings.engine_name,
            embedding_settings.weights,
            embedding_settings.random_seed,
            embedding_settings.fidelity_limits,
            embedding_settings.fidelity_sample_images,
        )
        model = model_report.model
        if model_report.fidelity is not None:
            context.log.info(f"fidelity gate (admitted): {model_report.fidelity.summary()}")
        if model_report.converted:
            context.log.info(f"first run with weights {model.source}: converted them to {model.location}")
        spark_context = spark.get_context()
        sweep_staging_of_finished_runs(context, layout)
        context.log.info(
            f"embedding {len(classes)} class(es) with {model.engine}, weights {model.source} ({model.fingerprint}); "
            f"Spark UI: {spark.ui_url}"
        )
        # A steady pulse in the run log (Dagster UI) while the long step runs: every 10 s or 5%.
        progress = Throttled(lambda p: context.log.info(f"embedding progress: {p.describe()}"))
        report = build_embeddings(
            spark_context, layout, classes, model, context.run_id, embedding_settings.settings, on_progress=[progress]
        )
    _log_counts(context, report, model)
    checks = check_results(embedding_checks(spark_context, layout, report, embedding_settings.max_quarantine_rate))
    # New images that do not look like their class (a file dropped into the wrong folder).
    # Rows moved in from another path are new to their class too: a misplaced copy must be seen.
    review = review_new_images(
        spark_context,
        layout,
        {c: n.featurized + n.moved for c, n in report.per_class.items()},
        sorted(registered_classes(context.instance)),
    )
    if review.flagged:
        context.log.warning(
            f"{len(review.flagged)} new image(s) look unlike their class: listed under {layout.review}/"
        )
    checks.append(review_check(review))
    of_run = embedding_metadata(report, model, spark_context.master, spark.ui_url)
    of_run.update(review_metadata(review, layout.review))
    of_run.update(spark_metadata(spark))
    if model_report.fidelity is not None:  # the figures this precision was admitted by
        of_run.update(
            {
                f"fidelity_{name}" if not name.startswith("fidelity_") else name: value
                for name, value in model_report.fidelity.metadata().items()
            }
        )
    of_class, of_all = published_embeddings_versions(layout, classes)
    record_by_partition(context, {c: class_metadata(report, model, c, of_class[c]) for c in classes}, of_run)
    # Which files are published for these classes: a re-run over unchanged images keeps them, so
    # downstream automation (automation.py) sees no change. Dagster 1.13 gives every partition of a
    # ranged run this one value (dagster-io/dagster#34013): each partition's own is its metadata's
    # class_data_version.
    return MaterializeResult(check_results=checks, data_version=DataVersion(of_all))


def _log_counts(context: AssetExecutionContext, report: StepReport, model: InferenceModel) -> None:
    if report.remodeled:
        context.log.info(
            f"{report.remodeled} previously embedded images were computed with another engine or weights "
            f"than {model.engine} / {model.fingerprint}: embedded again"
        )
    for fruit_class, counts in sorted(report.per_class.items()):
        context.log.info(
            f"{fruit_class}: {counts.embedded} embedded, {counts.quarantined} quarantined of {counts.images} "
            f"({counts.featurized} featurized now, {counts.reused} reused, {counts.moved} of them moved)"
        )
    context.log.info(
        f"{report.featurized} images featurized, {report.reused} reused, in {report.seconds:.1f} s: "
        f"{report.images_per_second:.1f} images/s"
    )
    if report.featurized:
        context.log.info(f"executor CPU of the featurization: {describe_cpu(report)}")


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def describe_cpu(report: StepReport) -> str:
    """One line: the featurization's executor CPU-seconds, split, and images per CPU-second."""

    def figure(value: float | None) -> str:
        return "not read" if value is None else f"{value:.1f}"

    rate = report.images_per_cpu_second
    return (
        f"{figure(report.executor_cpu_seconds)} CPU-s (Python workers {figure(report.python_cpu_seconds)}, "
        f"JVM {figure(report.jvm_cpu_seconds)})"
        + (f" over {report.task_seconds:.1f} task-s" if report.task_seconds is not None else "")
        + (f": {rate:.2f} images per CPU-second" if rate is not None else "")
    )


def cpu_metadata(report: StepReport) -> dict:
    """The featurization's cost in executor CPU: plain numbers (the Dagster UI plots them across
    materializations) and a table saying what each one counts."""
    rate = report.images_per_cpu_second
    figures = {
        "executor_cpu_seconds": (
            _seconds(report.executor_cpu_seconds),
            "CPU-seconds the executors spent featurizing this run's images: Python workers + "
            "JVM task threads (the Python side alone where the JVM's was not read). "
            "0: nothing featurized",
        ),
        "python_cpu_seconds": (
            _seconds(report.python_cpu_seconds),
            "of which the Python workers (fetching, decoding, inference, writing Parquet), "
            "all their threads, measured by each task",
        ),
        "jvm_cpu_seconds": (
            _seconds(report.jvm_cpu_seconds),
            "of which the executor JVMs' task threads (Spark's executorCpuTime + deserialization "
            "CPU): mostly waiting on the Python worker; empty if Spark's task metrics were not read",
        ),
        "task_seconds": (
            _seconds(report.task_seconds),
            "wall-clock seconds the embedding tasks ran, summed over tasks (Spark's executorRunTime)",
        ),
    }
    if rate is not None:
        figures["images_per_cpu_second"] = (
            round(rate, 3),
            "images featurized by this run / executor_cpu_seconds: "
            "x 3600 x vCPUs of an executor node = images per node-hour",
        )
    table = "| figure | value | what it counts |\n|---|---:|---|\n" + "".join(
        f"| {name} | {'' if value is None else value} | {text} |\n" for name, (value, text) in figures.items()
    )
    metadata: dict[str, object] = {name: value for name, (value, _text) in figures.items()}
    metadata["executor_cpu"] = MetadataValue.md(table)
    return metadata


EMBEDDING_COUNTS = ("images", "embedded", "quarantined", "featurized", "reused", "moved", "remodeled")


def class_metadata(report: StepReport, model: InferenceModel, fruit_class: str, data_version: str) -> dict:
    """What is true of one class after the run: its own counts and the model its rows are of."""
    return {
        **class_counts(report, fruit_class, EMBEDDING_COUNTS),
        # Its published rows were made from these very images and model: not read again.
        "up_to_date": fruit_class in report.up_to_date,
        "class_data_version": data_version,
        "inference_engine": model.engine,
        "inference_precision": precision_of(model.engine),
        "weights_fingerprint": model.fingerprint,
        "output_path": MetadataValue.path(report.output),
    }


def embedding_metadata(
    report: StepReport, model: InferenceModel, spark_master: str | None, spark_ui: str | None
) -> dict:
    """What describes the run: totals, timings, CPU, the per-class table and chart, the model."""
    metadata = run_metadata(report, EMBEDDING_COUNTS)
    metadata.update(cpu_metadata(report))
    metadata.update(
        {
            # Classes of the run whose published rows were made from these very images and model.
            "up_to_date_classes": (
                f"{len(report.up_to_date)} classes as published, not read again" if report.up_to_date else "none"
            ),
            # The PCA's next refit reads the moments this step derived, not every embedding.
            "pca_moments_updated": {
                None: "nothing published: the saved moments still hold",
                True: "yes",
                False: "no: the next refit reads every embedding",
            }[report.moments_updated],
            "weights": model.source,
            "per_class": per_class_table(report, ("images", "embedded", "quarantined", "featurized", "reused")),
            "spark_master": spark_master,
            "class_counts": MetadataValue.md(
                markdown_image(
                    class_counts_bars({c: (n.embedded, n.quarantined) for c, n in report.per_class.items()}),
                    "images per class",
                )
            ),
        }
    )
    if model.location:
        metadata["model_path"] = MetadataValue.path(model.location)
    if spark_ui:
        metadata["spark_ui"] = MetadataValue.url(spark_ui)
    return metadata
