import numpy as np
from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from fruit_assets.assets.checks import REDUCED_CHECKS, check_results
from fruit_assets.assets.embeddings import image_embeddings
from fruit_assets.assets.failures import RERUN_POLICY, reported_as_one_line
from fruit_assets.assets.metadata import (
    class_counts,
    per_class_table,
    record_by_partition,
    run_metadata,
    spark_metadata,
)
from fruit_assets.assets.pca import pca_model
from fruit_assets.assets.plots import markdown_image, pc_scatter
from fruit_assets.assets.quality import (
    SEPARABILITY_CHECKS,
    class_separability,
    separability_check,
    separability_metadata,
)
from fruit_assets.automation import eager_on_changed_data
from fruit_assets.concurrency import DATA_ROOT_POOL
from fruit_assets.partitions import fruit_class_partitions, registered_classes
from fruit_assets.resources import FruitStorage, SparkResource
from fruit_assets.steps.checks import reduced_checks
from fruit_assets.steps.reduce import build_reduced_features, first_components
from fruit_assets.steps.review import measure_separability, separability_rates


@asset(
    pool=DATA_ROOT_POOL,
    retry_policy=RERUN_POLICY,
    deps=[pca_model, image_embeddings],
    partitions_def=fruit_class_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    # A new PCA basis invalidates every class's features: all partitions follow pca_model.
    automation_condition=eager_on_changed_data(),
    kinds={"spark", "parquet"},
    check_specs=REDUCED_CHECKS + SEPARABILITY_CHECKS,
    description="(embedding - mean) @ componentsᵀ per image, Parquet at output/resultats_features_parquet.",
)
def reduced_features(context: AssetExecutionContext, storage: FruitStorage, spark: SparkResource) -> MaterializeResult:
    layout = storage.layout
    with reported_as_one_line():
        classes = list(context.partition_keys)
        spark_context = spark.get_context()
        # The separability sample is taken by the projection tasks, which read every embedding of
        # the classes they project anyway (all of them after a new basis).
        everyone = sorted(registered_classes(context.instance))
        plan = separability_rates(layout, everyone)
        report, model = build_reduced_features(spark_context, layout, classes, context.run_id, sample_rates=plan[0])
    of_run = run_metadata(report, ("images",))
    of_run["per_class"] = per_class_table(report, ("images",))
    # A new basis is published with every class projected on it, requested or not.
    also = sorted(set(report.per_class) - set(classes))
    of_run["also_reprojected"] = f"{len(also)} classes (new PCA basis): {', '.join(also[:20])}" if also else "none"
    of_run["up_to_date_classes"] = (
        f"{len(report.up_to_date)} classes already projected from their current "
        f"embeddings with this basis, left as they are"
        if report.up_to_date
        else "none"
    )
    if report.removed:
        context.log.warning(
            f"{len(report.removed)} partition(s) asked for are gone from Training/ (their outputs were "
            f"removed): {', '.join(report.removed)}; nothing to project for them"
        )
        of_run["gone_from_training_classes"] = ", ".join(report.removed)
    of_partition = {
        c: {
            **class_counts(report, c, ("images",)),
            "up_to_date": c in report.up_to_date,
            "gone_from_training": c in report.removed,
            "k": model.k,
            "pca_fingerprint": model.fingerprint,
            "output_path": MetadataValue.path(report.output),
        }
        for c in classes
    }
    classes = [c for c in classes if c not in report.removed]
    labels, points = first_components(spark_context, layout, classes, report)
    if len(points) > 1 and model.k >= 2:
        of_run["first_two_components"] = MetadataValue.md(
            markdown_image(pc_scatter(np.array(points), labels), "PC1 vs PC2")
        )
    # Do the features still separate the classes, and what does the PCA cost? On every class, over
    # a bounded sample chosen by path hash (same images every run).
    separability = measure_separability(spark_context, layout, everyone, model, taken=report.sample, plan=plan)
    of_run.update(separability_metadata(separability))
    for fruit_class, figures in class_separability(separability).items():
        if fruit_class in of_partition:
            of_partition[fruit_class].update(figures)
    checks = check_results(reduced_checks(spark_context, layout, classes, model, everyone))
    checks.append(separability_check(separability, model.variance_target))
    of_run.update(spark_metadata(spark))
    record_by_partition(context, of_partition, of_run)
    return MaterializeResult(check_results=checks)
