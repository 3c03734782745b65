import numpy as np
from dagster import AssetExecutionContext, AutomationCondition, BackfillPolicy, MaterializeResult, MetadataValue, asset

from fruit_assets.assets.embeddings import image_embeddings
from fruit_assets.assets.checks import PCA_CHECKS, REDUCED_CHECKS, pca_checks, reduced_checks
from fruit_assets.assets.quality import SEPARABILITY_CHECKS, separability_check, separability_metadata
from fruit_assets.concurrency import DATA_ROOT_POOL
from fruit_assets.assets.failures import reported_as_one_line
from fruit_assets.assets.metadata import per_class_table, step_metadata
from fruit_assets.partitions import fruit_class_partitions
from fruit_assets.plots import explained_variance_curve, markdown_image, pc_scatter
from fruit_assets.spark_jobs.commit import dataset_files
from fruit_assets.spark_jobs.validate import sample_first_components
from fruit_assets.manifest import read_manifest_if_any
from fruit_assets.pipeline import build_reduced_features, fit_pca
from fruit_assets.review import measure_separability
from fruit_assets.resources import FruitStorage, PcaSettings, SparkResource


@asset(
    pool=DATA_ROOT_POOL,
    deps=[image_embeddings],
    # Refit once new embeddings land (and none are still being computed): the sensor only
    # requests raw_images + image_embeddings, the automation daemon carries the change downstream.
    automation_condition=AutomationCondition.eager(),
    kinds={"spark", "numpy"},
    check_specs=PCA_CHECKS,
    description="PCA over every embedding; k is the smallest reaching the explained-variance target.",
)
def pca_model(
    context: AssetExecutionContext, storage: FruitStorage, spark: SparkResource, pca_settings: PcaSettings
) -> MaterializeResult:
    with reported_as_one_line():
        classes = sorted(context.instance.get_dynamic_partitions(fruit_class_partitions.name))
        model = fit_pca(spark.get_session(), storage.layout, classes, pca_settings.target)
    context.log.info(
        f"PCA on {model.num_samples} embeddings of {len(classes)} classes: k={model.k} explains "
        f"{model.explained_variance:.4f} (target {model.variance_target})"
    )
    return MaterializeResult(
        metadata={
            "k": model.k,
            "explained_variance": round(model.explained_variance, 6),
            "variance_target": model.variance_target,
            "num_samples": model.num_samples,
            "num_classes": len(classes),
            "output_path": MetadataValue.path(storage.layout.pca_model),
            "explained_variance_curve": MetadataValue.md(
                markdown_image(explained_variance_curve(model.spectrum, model.k, model.variance_target), "explained variance")
            ),
        },
        check_results=pca_checks(model),
    )


@asset(
    pool=DATA_ROOT_POOL,
    deps=[pca_model, image_embeddings],
    partitions_def=fruit_class_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    # A new PCA basis invalidates every class's features: all partitions follow pca_model.
    automation_condition=AutomationCondition.eager(),
    kinds={"spark", "parquet"},
    check_specs=REDUCED_CHECKS + SEPARABILITY_CHECKS,
    description="(embedding - mean) @ componentsᵀ per image, Parquet at output/resultats_features_parquet.",
)
def reduced_features(
    context: AssetExecutionContext, storage: FruitStorage, spark: SparkResource
) -> MaterializeResult:
    with reported_as_one_line():
        classes = list(context.partition_keys)
        session = spark.get_session()
        report, model = build_reduced_features(session, storage.layout, classes, context.run_id)
    metadata = step_metadata(report)
    metadata.update({"k": model.k, "per_class": per_class_table(report, ("images",))})
    labels, points = sample_first_components(
        session, [(c, u) for c in classes for u in dataset_files(storage.layout.reduced_features, c)]
    )
    if len(points) > 1 and model.k >= 2:
        metadata["first_two_components"] = MetadataValue.md(markdown_image(pc_scatter(np.array(points), labels), "PC1 vs PC2"))
    # Do the features still separate the classes, and what does the PCA cost? On every class, over
    # a bounded sample chosen by path hash (same images every run).
    everyone = sorted(context.instance.get_dynamic_partitions(fruit_class_partitions.name))
    manifests = {c: read_manifest_if_any(storage.layout, c) for c in everyone}
    counts = {c: manifest.num_rows for c, manifest in manifests.items() if manifest is not None}
    separability = measure_separability(session, storage.layout, sorted(counts), model, counts)
    metadata.update(separability_metadata(separability))
    checks = reduced_checks(session, storage.layout, classes, model.k)
    checks.append(separability_check(separability, model.variance_target))
    return MaterializeResult(metadata=metadata, check_results=checks)

