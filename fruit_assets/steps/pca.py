"""pca_model: one PCA over every class's embeddings. No Dagster."""

from __future__ import annotations

from dataclasses import dataclass

from fruit_assets.layout import DataLayout
from fruit_assets.pca import PcaModel, check_variance_target, fit_from_moments, load_pca, save_pca
from fruit_assets.spark_jobs.pca import embedding_moments
from fruit_assets.steps.fitted_pca_record import read_fitted_pca_record, write_fitted_pca_record
from fruit_assets.steps.moments import save_moments, saved_moments
from fruit_assets.steps.publication import embeddings_digest
from fruit_assets.storage import StorageError, open_store
from fruit_assets.storage.version_record import Version
from fruit_assets.storage.versions import current_version


def embedding_files(layout: DataLayout, classes: list[str], version: Version | None = None) -> dict[str, list[str]]:
    """The published embeddings files of each class, all from one version (the current one unless given)."""
    version = version or current_version(layout.root)
    files = {fruit_class: version.class_uris("embeddings", fruit_class) for fruit_class in classes}
    missing = [c for c in classes if not files[c] and not version.class_uris("quarantine", c)]
    if missing:
        raise StorageError(
            f"no embeddings for {len(missing)} class(es) ({', '.join(sorted(missing)[:5])}"
            f"{', ...' if len(missing) > 5 else ''}): materialize image_embeddings for them first"
        )
    return files


@dataclass
class PcaFit:
    model: PcaModel
    # How the moments were had: "saved" (one file, steps/moments.py) or "embeddings" (a pass over
    # every embeddings file).
    moments_from: str
    embedding_files_read: int


def fit_pca(spark, layout: DataLayout, classes: list[str], variance_target: float) -> PcaModel:
    return fit_pca_reporting(spark, layout, classes, variance_target).model


def fit_pca_reporting(spark, layout: DataLayout, classes: list[str], variance_target: float) -> PcaFit:
    """Fits the PCA on the published embeddings of ``classes``: from their saved moments when they
    are there (no Spark: ``spark`` may be a function returning the session, called only if needed),
    else from a pass over every embedding, whose moments are then saved for the next fit."""
    check_variance_target(variance_target)  # before a pass over every embedding, not after
    published = current_version(layout.root)
    files = [uri for uris in embedding_files(layout, classes, published).values() for uri in uris]
    fitted_on = embeddings_digest(published, classes)
    saved = saved_moments(layout, published, classes)
    if saved is not None:
        moments, moments_from, read = saved[0], "saved", 0
    else:
        moments = embedding_moments(spark() if callable(spark) else spark, files)
        moments_from, read = "embeddings", len(files)
        save_moments(layout, published, moments, classes=classes)
    model = fit_from_moments(moments, variance_target)
    open_store(layout.pca_fitted).write_bytes(layout.pca_fitted, save_pca(model))
    write_fitted_pca_record(
        layout,
        {
            "fingerprint": model.fingerprint,
            "k": model.k,
            "variance_target": model.variance_target,
            "num_samples": model.num_samples,
            "embeddings": fitted_on,
        },
    )
    return PcaFit(model, moments_from, read)


def unchanged_fit(layout: DataLayout, classes: list[str], variance_target: float) -> PcaModel | None:
    """The PCA on disk if it was fit on exactly the published embeddings of ``classes`` (the same
    files, hence the same rows) with this target: refitting would give the same basis. Small files
    only, no Spark."""
    check_variance_target(variance_target)
    record = read_fitted_pca_record(layout)
    published = current_version(layout.root)
    embedding_files(layout, classes, published)  # the same "materialize image_embeddings first" error as a fit
    if (
        record is None
        or abs(record["variance_target"] - variance_target) > 1e-12
        or record.get("embeddings") != embeddings_digest(published, classes)
    ):
        return None
    try:
        model = read_pca(layout)
    except StorageError:
        return None
    return model if model.fingerprint == record["fingerprint"] else None


def read_pca(layout: DataLayout) -> PcaModel:
    """The basis pca_model fitted last (reduced_features publishes it with the rows it projects)."""
    store = open_store(layout.pca_fitted)
    if not store.exists(layout.pca_fitted):
        raise StorageError(f"no PCA model at {layout.pca_fitted}: materialize pca_model first")
    return load_pca(store.read_bytes(layout.pca_fitted))
