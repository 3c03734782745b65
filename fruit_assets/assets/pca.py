from dagster import AssetExecutionContext, AutomationCondition, DataVersion, MaterializeResult, MetadataValue, asset

from fruit_assets.assets.checks import PCA_CHECKS, check_results
from fruit_assets.assets.embeddings import image_embeddings
from fruit_assets.assets.failures import RERUN_POLICY, reported_as_one_line
from fruit_assets.assets.metadata import spark_metadata
from fruit_assets.assets.plots import explained_variance_curve, markdown_image
from fruit_assets.concurrency import DATA_ROOT_POOL
from fruit_assets.partitions import registered_classes
from fruit_assets.resources import FruitStorage, PcaSettings, SparkResource
from fruit_assets.steps.changes import remove_ghost_classes
from fruit_assets.steps.checks import pca_checks
from fruit_assets.steps.pca import fit_pca


@asset(
    pool=DATA_ROOT_POOL,
    retry_policy=RERUN_POLICY,
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
        # The PCA is fit on the classes Training/ holds now: those gone lose their outputs first.
        training, removed = remove_ghost_classes(storage.layout, storage.allow_mass_deletion)
        if removed:
            context.log.info(f"removed the outputs of {len(removed)} class(es) gone from Training/: {', '.join(removed)}")
        classes = sorted(set(registered_classes(context.instance)) & set(training))
        model = fit_pca(spark.get_session(), storage.layout, classes, pca_settings.target)
    context.log.info(
        f"PCA on {model.num_samples} embeddings of {len(classes)} classes: k={model.k} explains "
        f"{model.explained_variance:.4f} (target {model.variance_target})"
    )
    return MaterializeResult(
        metadata={
            "k": model.k,
            "pca_fingerprint": model.fingerprint,
            "explained_variance": round(model.explained_variance, 6),
            "variance_target": model.variance_target,
            "num_samples": model.num_samples,
            "num_classes": len(classes),
            "removed_classes": ", ".join(removed) or "none",
            "output_path": MetadataValue.path(storage.layout.pca_model),
            "explained_variance_curve": MetadataValue.md(
                markdown_image(explained_variance_curve(model.spectrum, model.k, model.variance_target), "explained variance")
            ),
            **spark_metadata(spark),
        },
        check_results=check_results(pca_checks(model)),
        # The basis itself: a refit that gives the same basis leaves the features up to date in the UI.
        data_version=DataVersion(model.fingerprint),
    )
