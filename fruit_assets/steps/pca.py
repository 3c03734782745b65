"""pca_model: one PCA over every class's embeddings. No Dagster."""

from __future__ import annotations

from fruit_assets.layout import DataLayout
from fruit_assets.pca import PcaModel, check_variance_target, fit_from_moments, load_pca, save_pca
from fruit_assets.spark_jobs.pca import embedding_moments
from fruit_assets.steps.publication import read_json, write_json
from fruit_assets.storage import StorageError, open_store
from fruit_assets.storage.commit import dataset_files


def embedding_files(layout: DataLayout, classes: list[str]) -> dict[str, list[str]]:
    files = {fruit_class: dataset_files(layout.embeddings, fruit_class) for fruit_class in classes}
    missing = [c for c in classes if not files[c] and not _materialized(layout, c)]
    if missing:
        raise StorageError(
            f"no embeddings for {len(missing)} class(es) ({', '.join(sorted(missing)[:5])}"
            f"{', ...' if len(missing) > 5 else ''}): materialize image_embeddings for them first"
        )
    return files


def _materialized(layout: DataLayout, fruit_class: str) -> bool:
    """A class whose every image was quarantined has no embeddings files, but committed quarantine ones."""
    return bool(dataset_files(layout.quarantine, fruit_class))


def fit_pca(spark, layout: DataLayout, classes: list[str], variance_target: float) -> PcaModel:
    check_variance_target(variance_target)  # before a pass over every embedding, not after
    files = [uri for uris in embedding_files(layout, classes).values() for uri in uris]
    model = fit_from_moments(embedding_moments(spark, files), variance_target)
    open_store(layout.pca_model).write_bytes(layout.pca_model, save_pca(model))
    write_json(layout.pca_record, {"fingerprint": model.fingerprint, "k": model.k, "variance_target": model.variance_target,
                                   "num_samples": model.num_samples})
    return model


def pca_record(layout: DataLayout) -> dict | None:
    """{"fingerprint", "k", "variance_target", "num_samples"} of the current pca.npz, or None."""
    return read_json(layout.pca_record)


def read_pca(layout: DataLayout) -> PcaModel:
    store = open_store(layout.pca_model)
    if not store.exists(layout.pca_model):
        raise StorageError(f"no PCA model at {layout.pca_model}: materialize pca_model first")
    return load_pca(store.read_bytes(layout.pca_model))
