"""reduced_features: every embedding projected onto the current PCA basis. No Dagster."""

from __future__ import annotations

import time

from fruit_assets.layout import DataLayout
from fruit_assets.pca import PcaModel, save_pca
from fruit_assets.spark_jobs.pca import project_files
from fruit_assets.spark_jobs.validate import sample_first_components
from fruit_assets.steps.manifest import read_manifest_if_any
from fruit_assets.steps.pca import embedding_files, read_pca
from fruit_assets.steps.publication import manifest_digest, record_publication
from fruit_assets.steps.reports import ClassCounts, StepReport
from fruit_assets.storage.commit import class_files, commit_class_folder, discard_staging


def build_reduced_features(spark, layout: DataLayout, classes: list[str], run_token: str) -> tuple[StepReport, PcaModel]:
    started = time.perf_counter()
    report = StepReport(output=layout.reduced_features)
    model = read_pca(layout)
    pca_bytes = save_pca(model, with_basis=False)
    files = embedding_files(layout, classes)
    work = [(fruit_class, uri) for fruit_class, uris in files.items() for uri in uris]
    staging = layout.staging(run_token)
    try:
        staged: dict[str, list[str]] = {}
        models: dict[str, set[str]] = {c: set() for c in classes}
        for fruit_class, uri, rows, model_tag in project_files(spark, work, pca_bytes, f"{staging}/reduced", run_token[:8]):
            staged.setdefault(fruit_class, []).append(uri)
            models[fruit_class].add(model_tag)
            counts = report.per_class.setdefault(fruit_class, ClassCounts())
            counts.images += rows
            counts.embedded += rows
        for fruit_class in classes:
            report.per_class.setdefault(fruit_class, ClassCounts())
            commit_class_folder(f"{staging}/reduced", layout.reduced_features, fruit_class, staged.get(fruit_class, []))
    finally:
        discard_staging(staging)
    record_publication(layout, {c: _published_entry(layout, c, models[c], model.fingerprint) for c in classes})
    report.seconds = time.perf_counter() - started
    return report, model


def _published_entry(layout: DataLayout, fruit_class: str, model_tags: set[str], pca_fingerprint: str) -> dict:
    manifest = read_manifest_if_any(layout, fruit_class)
    return {"manifest": manifest_digest(manifest) if manifest is not None else "",
            # A class of quarantined images only has no embeddings, hence no model tag.
            "model": ",".join(sorted(model_tags)), "pca": pca_fingerprint}


def first_components(spark, layout: DataLayout, classes: list[str]) -> tuple[list[str], list[list[float]]]:
    """(class labels, [pc1, pc2]) of a bounded sample of the committed reduced features, for a plot."""
    return sample_first_components(spark, class_files(layout.reduced_features, classes))
