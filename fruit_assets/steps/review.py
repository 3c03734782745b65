"""Feature-quality steps as plain functions over (Spark session, data layout). No Dagster.

- ``review_new_images``: after ``image_embeddings`` commits, each class that got new images is
  checked for images that do not look like it (quality/outliers.py); the flagged ones land in
  ``<root>/review/fruit_class=<c>/flagged.parquet`` with the class they look more like.
- ``measure_separability``: on ``reduced_features``, k-NN accuracy of the full embeddings and of
  the PCA-reduced features on the same hash-chosen, bounded sample (quality/separability.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from fruit_assets.layout import DataLayout
from fruit_assets.quality.outliers import nearest_class
from fruit_assets.quality.separability import Separability, sample_rates, separability
from fruit_assets.spark_jobs.quality import review_new_images as review_job
from fruit_assets.spark_jobs.quality import sample_arrays, sample_embeddings
from fruit_assets.steps.centroids import class_centroids
from fruit_assets.steps.manifest import read_manifest_if_any
from fruit_assets.steps.reports import TakenSample
from fruit_assets.storage import open_store
from fruit_assets.storage.parquet_io import write_table
from fruit_assets.storage.published_files import class_files, dataset_files

REVIEW_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("fruit_class", pa.string()),
        ("distance", pa.float64()),  # to the class centroid
        ("threshold", pa.float64()),  # the class's robust limit
        ("nearest_class", pa.string()),  # the other class whose centroid is nearest
        ("nearest_class_distance", pa.float64()),
        ("mode", pa.string()),  # "against earlier images" or "leave-one-out"
    ]
)


@dataclass
class ReviewReport:
    checked: dict[str, int] = field(default_factory=dict)  # class -> new images checked
    modes: dict[str, str] = field(default_factory=dict)
    flagged: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def num_checked(self) -> int:
        return sum(self.checked.values())


def review_new_images(spark, layout: DataLayout, featurized: dict[str, int], all_classes: list[str]) -> ReviewReport:
    """``featurized``: images embedded by this run per class (classes with none are skipped);
    ``all_classes``: every class, for naming the one a flagged image looks more like."""
    started = time.perf_counter()
    report = ReviewReport()
    work = [(c, files) for c, n in sorted(featurized.items()) if n and (files := dataset_files(layout.embeddings, c))]
    candidates = []
    for fruit_class, mode, checked, flagged in review_job(spark, work):
        if checked:
            report.checked[fruit_class], report.modes[fruit_class] = checked, mode
        candidates += [(fruit_class, mode, *row) for row in flagged]
    centroids = {}
    if candidates:  # naming the nearest other class needs every class's centroid: only then
        centroids = class_centroids(spark, layout, all_classes)
    rows_by_class: dict[str, list[dict]] = {c: [] for c in report.checked}
    for fruit_class, mode, path, distance, threshold, vector in candidates:
        other, other_distance = nearest_class(np.frombuffer(vector, np.float32), centroids, exclude=fruit_class)
        rows_by_class[fruit_class].append(
            {
                "path": path,
                "fruit_class": fruit_class,
                "distance": distance,
                "threshold": threshold,
                "nearest_class": other,
                "nearest_class_distance": other_distance,
                "mode": mode,
            }
        )
    for fruit_class, rows in rows_by_class.items():
        rows.sort(key=lambda r: -r["distance"] / r["threshold"])
        write_table(layout.review_table(fruit_class), pa.Table.from_pylist(rows, schema=REVIEW_SCHEMA))
        report.flagged += rows
    report.flagged.sort(key=lambda r: -r["distance"] / r["threshold"])
    report.seconds = time.perf_counter() - started
    return report


def flagged_images(rows: list[dict]) -> list[tuple[dict, bytes]]:
    """(row, image bytes) for the flagged rows whose image can still be read: a picture is a
    courtesy, the review table is the record (an image moved or deleted since is skipped)."""
    pictures = []
    for row in rows:
        try:
            pictures.append((row, open_store(row["path"]).read_bytes(row["path"])))
        except Exception:  # noqa: BLE001 - see above
            continue
    return pictures


@dataclass
class SeparabilityReport:
    result: Separability | None
    sample_per_class: int
    seconds: float
    why_not: str = ""  # when there is no result
    # Where the sample's vectors came from: "projection" (taken by the projection tasks' pass) or
    # "embeddings" (a pass of its own over the embeddings files).
    sample_from: str = "embeddings"


def separability_rates(
    layout: DataLayout, classes: list[str], max_sample: int = 10_000, per_class_cap: int = 200
) -> tuple[dict[str, float], int]:
    """(class -> share of its images to sample, images per class): at most ``max_sample`` images,
    ``per_class_cap`` a class, chosen by path hash. Classes without a manifest yet are left out."""
    manifests = {c: read_manifest_if_any(layout, c) for c in classes}
    counts = {c: manifest.num_rows for c, manifest in manifests.items() if manifest is not None}
    per_class = max(10, min(per_class_cap, max_sample // max(1, len(counts))))
    return sample_rates(counts, per_class), per_class


def measure_separability(
    spark,
    layout: DataLayout,
    classes: list[str],
    pca,
    max_sample: int = 10_000,
    per_class_cap: int = 200,
    tolerance: float = 0.02,
    taken: TakenSample | None = None,
    plan: tuple[dict[str, float], int] | None = None,
) -> SeparabilityReport:
    """Both accuracies on a sample of at most ``max_sample`` images (``per_class_cap`` per class),
    chosen by path hash: the cost stays flat however large the collection grows. Classes without a
    manifest yet are left out. ``taken``: the sample a projection took of the current embeddings;
    used when it was taken at exactly these rates (the same rows a pass of ours would take), so
    only then is no embedding read here. ``plan``: what ``separability_rates`` gave for these
    classes and sizes, when the caller already has it (the manifests are not read again)."""
    started = time.perf_counter()
    rates, per_class = plan or separability_rates(layout, classes, max_sample, per_class_cap)
    if taken is not None and taken.rates == rates:
        sample_from = "projection"
        # In the order of the same files' pass (sorted work items).
        paths, labels, vectors = sample_arrays(taken.rows)
    else:
        sample_from = "embeddings"
        paths, labels, vectors = sample_embeddings(spark, class_files(layout.embeddings, sorted(rates)), rates)
    if len(set(labels)) < 2:
        return SeparabilityReport(
            None, per_class, time.perf_counter() - started, "needs at least two classes", sample_from
        )
    result = separability(vectors, labels, paths, pca.mean, pca.basis, pca.spectrum, pca.k, tolerance)
    return SeparabilityReport(result, per_class, time.perf_counter() - started, sample_from=sample_from)
