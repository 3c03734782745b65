"""image_embeddings: the classes' images embedded, incrementally. No Dagster.

Order of work: read the manifests, carry forward the previous rows still valid, embed the rest in
Spark tasks, check the accounting (manifest = embedded + quarantined), commit each class folder.
"""

from __future__ import annotations

import time

from fruit_assets.errors import UserFacingError
from fruit_assets.featurize.engines import InferenceModel
from fruit_assets.layout import DataLayout
from fruit_assets.spark_jobs.embed import EmbedSettings, carry_forward, embed_images
from fruit_assets.steps.manifest import read_manifest
from fruit_assets.steps.reports import ClassCounts, StepReport
from fruit_assets.storage.commit import commit_class_folder, dataset_files, discard_staging

KINDS = ("embeddings", "quarantine")


class AccountingError(UserFacingError):
    """Images in the manifest != images embedded + images quarantined."""


def build_embeddings(spark, layout: DataLayout, classes: list[str], model: InferenceModel, run_token: str,
                     settings: EmbedSettings = EmbedSettings(), incremental: bool = True,
                     on_progress: list | None = None) -> StepReport:
    """Embeds the classes' images with ``model``; with ``incremental``, only images whose (path,
    content ETag), engine or weights differ from the previous materialization. Deleted images
    drop out."""
    started = time.perf_counter()
    report = StepReport(output=layout.embeddings)
    manifests = {fruit_class: read_manifest(layout, fruit_class) for fruit_class in classes}
    for fruit_class, manifest in manifests.items():
        report.per_class[fruit_class] = ClassCounts(images=len(manifest))
    staging = layout.staging(run_token)
    tag = run_token[:8]
    try:
        staged: dict[tuple[str, str], list[str]] = {}
        kept_paths = _carry_forward(spark, layout, classes, model, staging, tag, report, staged) if incremental else {}
        rows = [
            (path, fruit_class, etag)
            for fruit_class, manifest in manifests.items()
            for path, etag in zip(manifest["path"].to_pylist(), manifest["etag"].to_pylist())
            if path not in kept_paths.get(fruit_class, ())
        ]
        outcome = embed_images(spark, rows, model, staging, settings, file_tag=tag, on_progress=on_progress)
        for key, uris in outcome.staged.items():
            staged.setdefault(key, []).extend(uris)
        for fruit_class, counts in report.per_class.items():
            _account(fruit_class, counts, outcome.count(fruit_class, "embeddings"), outcome.count(fruit_class, "quarantine"))
        for fruit_class in classes:
            for kind, final in zip(KINDS, (layout.embeddings, layout.quarantine)):
                commit_class_folder(f"{staging}/{kind}", final, fruit_class, staged.get((fruit_class, kind), []))
    finally:
        discard_staging(staging)
    report.seconds = time.perf_counter() - started
    return report


def _carry_forward(spark, layout: DataLayout, classes: list[str], model: InferenceModel, staging: str, tag: str,
                   report: StepReport, staged: dict) -> dict[str, set[str]]:
    """Stages the previous rows still valid (same path and ETag, same engine and weights), counts
    them in ``report`` and ``staged``; returns the paths kept per class (they need no work)."""
    work = [
        (kind, fruit_class, files)
        for fruit_class in classes
        for kind, dataset in zip(KINDS, (layout.embeddings, layout.quarantine))
        if (files := dataset_files(dataset, fruit_class))
    ]
    manifest_uris = {c: layout.manifest(c) for c in classes}
    kept_paths: dict[str, set[str]] = {c: set() for c in classes}
    for kind, fruit_class, uri, paths, remodeled in carry_forward(spark, work, manifest_uris, model.engine,
                                                                  model.fingerprint, staging, tag):
        if uri:
            staged.setdefault((fruit_class, kind), []).append(uri)
        kept_paths[fruit_class].update(paths)
        counts = report.per_class[fruit_class]
        counts.reused += len(paths)
        counts.remodeled += remodeled
        if kind == "embeddings":
            counts.embedded += len(paths)
        else:
            counts.quarantined += len(paths)
    return kept_paths


def _account(fruit_class: str, counts: ClassCounts, new_embedded: int, new_quarantined: int) -> None:
    """Adds this run's rows to ``counts``; every image of the manifest must be accounted for."""
    counts.embedded += new_embedded
    counts.quarantined += new_quarantined
    counts.featurized = new_embedded + new_quarantined
    if counts.embedded + counts.quarantined != counts.images:
        raise AccountingError(
            f"class {fruit_class!r}: {counts.images} images in the manifest but "
            f"{counts.embedded} embedded + {counts.quarantined} quarantined"
        )
