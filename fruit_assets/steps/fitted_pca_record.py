"""The record of the basis pca_model fitted last: its fingerprint, k, variance target, number of
samples and the published embeddings it was fit on. No Dagster."""

from __future__ import annotations

import json

from fruit_assets.layout import DataLayout
from fruit_assets.storage import open_store


def read_fitted_pca_record(layout: DataLayout) -> dict | None:
    """{"fingerprint", "k", "variance_target", "num_samples", "embeddings"} of the basis pca_model
    fitted last, or None."""
    uri = layout.pca_fitted_record
    store = open_store(uri)
    return json.loads(store.read_bytes(uri)) if store.exists(uri) else None


def write_fitted_pca_record(layout: DataLayout, record: dict) -> None:
    uri = layout.pca_fitted_record
    open_store(uri).write_bytes(uri, json.dumps(record, indent=1, sort_keys=True).encode())
