"""image_embeddings: the classes' images embedded, incrementally. No Dagster.

Order of work: read the manifests, carry forward the previous rows still valid, take the rows of
identical bytes found under another path (a class renamed, images moved between classes), embed the
rest in Spark tasks, check the accounting (manifest = embedded + quarantined), publish every class in
one version.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from fruit_assets.errors import UserFacingError
from fruit_assets.featurize.engines import InferenceModel
from fruit_assets.layout import DataLayout
from fruit_assets.spark_jobs.embed import EmbedSettings, carry_forward, embed_images, reuse_by_content
from fruit_assets.steps.manifest import read_manifest, read_manifest_if_any
from fruit_assets.steps.moments import publish_keeping_moments
from fruit_assets.steps.publication import embeddings_as_published
from fruit_assets.steps.reports import ClassCounts, StepReport
from fruit_assets.steps.staging import discard_staging
from fruit_assets.storage.class_folders import classes_in
from fruit_assets.storage.published_files import class_files, dataset_files
from fruit_assets.storage.versions import current_version

KINDS = ("embeddings", "quarantine")


class AccountingError(UserFacingError):
    """Images in the manifest != images embedded + images quarantined."""


def build_embeddings(
    spark,
    layout: DataLayout,
    classes: list[str],
    model: InferenceModel,
    run_token: str,
    settings: EmbedSettings = EmbedSettings(),
    incremental: bool = True,
    on_progress: list | None = None,
) -> StepReport:
    """Embeds the classes' images with ``model``; with ``incremental``, only images whose (path,
    content ETag), engine or weights differ from the previous materialization. Deleted images
    drop out."""
    started = time.perf_counter()
    # Nothing featurized costs nothing: measured figures replace these once tasks ran.
    report = StepReport(output=layout.embeddings, python_cpu_seconds=0.0, jvm_cpu_seconds=0.0, task_seconds=0.0)
    manifests = {fruit_class: read_manifest(layout, fruit_class) for fruit_class in classes}
    for fruit_class, manifest in manifests.items():
        report.per_class[fruit_class] = ClassCounts(images=len(manifest))
    # What this step builds on: a version published after it that changes the same classes makes
    # its publication a conflict, never an overwrite (storage/versions.publish).
    published = current_version(layout.root)
    if incremental:
        # Classes whose published rows were made from these very images with this model: nothing
        # to read, nothing to publish (a run over a range of classes costs what changed in it).
        model_tag = f"{model.engine}/{model.fingerprint}"
        report.up_to_date = [c for c in classes if embeddings_as_published(published, c, manifests[c], model_tag)]
        for fruit_class in report.up_to_date:
            counts = report.per_class[fruit_class]
            counts.embedded = counts.reused = counts.images
        classes = [c for c in classes if c not in report.up_to_date]
        manifests = {c: manifests[c] for c in classes}
        if not classes:
            report.seconds = time.perf_counter() - started
            return report
    staging = layout.staging(run_token)
    tag = run_token[:8]
    try:
        staged: dict[tuple[str, str], list[str]] = {}
        kept_paths, untouched = (
            _carry_forward(spark, layout, classes, model, staging, tag, report, staged) if incremental else ({}, set())
        )
        rows = [
            (path, fruit_class, etag, size)  # the listed size: an oversize object is refused unread
            for fruit_class, manifest in manifests.items()
            for path, etag, size in zip(
                manifest["path"].to_pylist(), manifest["etag"].to_pylist(), manifest["size"].to_pylist()
            )
            if path not in kept_paths.get(fruit_class, ())
        ]
        if incremental:
            moved = _reuse_by_content(spark, layout, rows, model, staging, tag, report, staged)
            rows = [row for row in rows if row[0] not in moved]
        outcome = embed_images(spark, rows, model, staging, settings, file_tag=tag, on_progress=on_progress)
        report.python_cpu_seconds = outcome.python_cpu_seconds
        report.jvm_cpu_seconds, report.task_seconds = outcome.jvm_cpu_seconds, outcome.jvm_run_seconds
        for key, uris in outcome.staged.items():
            staged.setdefault(key, []).extend(uris)
        for fruit_class, counts in report.per_class.items():
            _account(
                fruit_class, counts, outcome.count(fruit_class, "embeddings"), outcome.count(fruit_class, "quarantine")
            )
        # A class whose every previous row still stands and that gained none keeps its published
        # files as they are: same names, so the PCA and the projection see them unchanged.
        unchanged = {c for c in untouched if report.per_class[c].featurized == 0 and report.per_class[c].moved == 0}
        changed = [c for c in classes if c not in unchanged]
        if changed:  # nothing changed: nothing to publish, the version stays
            _version, report.moments_updated = publish_keeping_moments(
                spark,
                layout,
                run_token,
                {c: staged.get((c, "embeddings"), []) for c in changed},
                changes={kind: {c: staged.get((c, kind), []) for c in changed} for kind in KINDS},
                expected_base=published.number,
            )
    finally:
        discard_staging(staging)
    report.seconds = time.perf_counter() - started
    return report


def _carry_forward(
    spark,
    layout: DataLayout,
    classes: list[str],
    model: InferenceModel,
    staging: str,
    tag: str,
    report: StepReport,
    staged: dict,
) -> tuple[dict[str, set[str]], set[str]]:
    """Stages the previous rows still valid (same path and ETag, same engine and weights), counts
    them in ``report`` and ``staged``; returns the paths kept per class (they need no work) and the
    classes whose every previously published row was kept."""
    work = [
        (kind, fruit_class, files)
        for fruit_class in classes
        for kind, dataset in zip(KINDS, (layout.embeddings, layout.quarantine))
        if (files := dataset_files(dataset, fruit_class))
    ]
    manifest_uris = {c: layout.manifest(c) for c in classes}
    kept_paths: dict[str, set[str]] = {c: set() for c in classes}
    # Only a class with published rows can be untouched (a first materialization publishes).
    complete = {c: True for _kind, c, _files in work}
    for kind, fruit_class, uri, paths, remodeled, whole in carry_forward(
        spark, work, manifest_uris, model.engine, model.fingerprint, staging, tag
    ):
        complete[fruit_class] = complete[fruit_class] and whole
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
    return kept_paths, {c for c, whole in complete.items() if whole}


def _reuse_by_content(
    spark,
    layout: DataLayout,
    rows: list[tuple[str, str, str, int]],
    model: InferenceModel,
    staging: str,
    tag: str,
    report: StepReport,
    staged: dict,
) -> set[str]:
    """Stages, for the rows still to embed, the embeddings of the same bytes under another path;
    returns the paths served so. Which classes may hold them is read from the manifests (small),
    so a run whose new images are new content reads no embeddings file."""
    wanted: dict[str, list[tuple[str, str]]] = {}
    for path, fruit_class, etag, _size in rows:
        if etag and not etag.startswith("mtime:"):
            wanted.setdefault(etag, []).append((path, fruit_class))
    if not wanted:
        return set()

    wanted_paths = {etag: {path for path, _c in targets} for etag, targets in wanted.items()}

    def holds_wanted(fruit_class: str) -> bool:
        """Its manifest lists one of the wanted contents under another path than the one wanting it."""
        manifest = read_manifest_if_any(layout, fruit_class)
        return manifest is not None and any(
            etag in wanted_paths and path not in wanted_paths[etag]
            for path, etag in zip(manifest["path"].to_pylist(), manifest["etag"].to_pylist())
        )

    listed = classes_in(layout.manifests)
    with ThreadPoolExecutor(max_workers=16) as pool:
        holders = [c for c, holds in zip(listed, pool.map(holds_wanted, listed)) if holds]
    moved: set[str] = set()
    for fruit_class, uri, paths in reuse_by_content(
        spark, class_files(layout.embeddings, holders), wanted, model.engine, model.fingerprint, staging, tag
    ):
        staged.setdefault((fruit_class, "embeddings"), []).append(uri)
        counts = report.per_class[fruit_class]
        counts.embedded += len(paths)
        counts.reused += len(paths)
        counts.moved += len(paths)
        moved.update(paths)
    return moved


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
