from dagster import AssetCheckSpec, AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue, asset

from fruit_assets.assets.checks import PCA_CHECKS, check_results
from fruit_assets.assets.embeddings import image_embeddings
from fruit_assets.assets.failures import RERUN_POLICY, reported_as_one_line
from fruit_assets.assets.metadata import spark_metadata
from fruit_assets.assets.plots import explained_variance_curve, markdown_image
from fruit_assets.automation import eager_on_changed_data
from fruit_assets.concurrency import DATA_ROOT_POOL
from fruit_assets.partitions import fruit_class_partitions, registered_classes
from fruit_assets.resources import FruitStorage, PcaSettings, SparkResource
from fruit_assets.steps.checks import pca_checks
from fruit_assets.steps.classes import CLASS_NAMES_CHECK, class_names_outcome
from fruit_assets.steps.ghosts import GhostRemoval, remove_ghost_classes
from fruit_assets.steps.pca import fit_pca_reporting, unchanged_fit


def remove_gone_classes(instance, layout, allow_mass_deletion: bool, spark=None) -> GhostRemoval:
    """The classes gone from Training/ lose their outputs, then their partitions, here and not only
    from the sensor: until they are gone, a run of every reduced_features partition (the
    automation's) would include them. Raises MassDeletionError when the loss is refused."""
    removal = remove_ghost_classes(layout, allow_mass_deletion, also_known=registered_classes(instance), spark=spark)
    for fruit_class in removal.plan.to_deregister:
        instance.delete_dynamic_partition(fruit_class_partitions.name, fruit_class)
    return removal


# Checked where Training/ is listed for the fit: a folder skipped for its name is on the asset page.
CLASS_NAMES_SPEC = AssetCheckSpec(
    CLASS_NAMES_CHECK,
    asset="pca_model",
    description="Every class folder under Training/ has a name that can be a class (not "
    "empty, no control characters, within the storage's key limits, no "
    "Unicode twin of another); the others are skipped.",
)


@asset(
    pool=DATA_ROOT_POOL,
    retry_policy=RERUN_POLICY,
    deps=[image_embeddings],
    # Refit once new embeddings land (and none are still being computed): the sensor only
    # requests raw_images + image_embeddings, the automation daemon carries the change downstream.
    automation_condition=eager_on_changed_data(),
    kinds={"spark", "numpy"},
    check_specs=PCA_CHECKS + [CLASS_NAMES_SPEC],
    description="PCA over every embedding; k is the smallest reaching the explained-variance target.",
)
def pca_model(
    context: AssetExecutionContext, storage: FruitStorage, spark: SparkResource, pca_settings: PcaSettings
) -> MaterializeResult:
    with reported_as_one_line():
        # The PCA is fit on the classes Training/ holds now: those gone lose their outputs first.
        removal = remove_gone_classes(
            context.instance, storage.layout, storage.allow_mass_deletion, spark=spark.get_context
        )
        removed, stale = removal.removed, removal.plan.to_deregister
        if removed:
            context.log.info(
                f"removed the outputs of {len(removed)} class(es) gone from Training/: {', '.join(removed)}"
            )
        if stale:
            context.log.info(
                f"deleted the partitions of {len(stale)} class(es) gone from Training/: {', '.join(stale)}"
            )
        for invalid in removal.invalid:
            context.log.warning(f"class folder skipped under {storage.layout.training}/ for its name: {invalid}")
        classes = sorted(set(removal.plan.registered) & set(removal.training))
        # Fit on the very files the current basis was fit on: the same basis, without Spark.
        model = unchanged_fit(storage.layout, classes, pca_settings.target)
        refit = model is None
        fit = None
        if refit:
            # Spark only for a pass over the embeddings: saved moments need none.
            fit = fit_pca_reporting(spark.get_context, storage.layout, classes, pca_settings.target)
            model = fit.model
    context.log.info(
        f"PCA on {model.num_samples} embeddings of {len(classes)} classes: k={model.k} explains "
        f"{model.explained_variance:.4f} (target {model.variance_target})"
        + ("" if refit else "; embeddings unchanged since that fit, the basis is kept (no Spark)")
        + (
            "; fit from the saved moments of these embeddings (no embedding read)"
            if fit and fit.moments_from == "saved"
            else ""
        )
    )
    return MaterializeResult(
        metadata={
            "k": model.k,
            "pca_fingerprint": model.fingerprint,
            "explained_variance": round(model.explained_variance, 6),
            "variance_target": model.variance_target,
            "num_samples": model.num_samples,
            "num_classes": len(classes),
            "removed_classes": ", ".join(sorted(set(removed) | set(stale))) or "none",
            "invalid_class_folders": "; ".join(str(i) for i in removal.invalid) or "none",
            "refit": "yes" if refit else "no: the embeddings are the ones the basis was fit on",
            # What the fit read: the saved moments of the embeddings (one file), or every embedding.
            "moments_from": fit.moments_from if fit else "none: not refit",
            "embedding_files_read": fit.embedding_files_read if fit else 0,
            "output_path": MetadataValue.path(storage.layout.pca_fitted),
            "explained_variance_curve": MetadataValue.md(
                markdown_image(
                    explained_variance_curve(
                        model.spectrum if model.spectrum is not None else model.explained_variance_ratio,
                        model.k,
                        model.variance_target,
                    ),
                    "explained variance",
                )
            ),
            **spark_metadata(spark),
        },
        check_results=check_results(
            pca_checks(model) + [class_names_outcome(removal.invalid, storage.layout.training)]
        ),
        # The basis itself: a refit that gives the same basis leaves the features up to date in the UI.
        data_version=DataVersion(model.fingerprint),
    )
