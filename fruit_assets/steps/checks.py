"""What the asset checks find, computed on what a step just committed. No Dagster.

Each function returns ``CheckOutcome``s; assets/checks.py declares the checks and turns outcomes
into Dagster results. The committed files are read back by Spark tasks: only counts reach the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fruit_assets.featurize.model import EMBEDDING_SIZE
from fruit_assets.layout import DataLayout
from fruit_assets.pca import PcaModel
from fruit_assets.spark_jobs.validate import feature_table_stats, vector_file_stats
from fruit_assets.steps.reports import StepReport
from fruit_assets.storage.published_files import class_files


@dataclass(frozen=True)
class ClassTable:
    """Per-class figures, shown as a table: {class: {column: value}}."""

    rows: dict[str, dict]


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    metadata: dict = field(default_factory=dict)  # plain values or ClassTable
    description: str | None = None
    warn_only: bool = False  # a finding for a person to look at, not a failed materialization


def embedding_checks(spark, layout: DataLayout, report: StepReport, max_quarantine_rate: float) -> list[CheckOutcome]:
    # What this run published is read back; classes it left as published were checked when they were.
    published_now = [c for c in report.per_class if c not in report.up_to_date]
    stats = vector_file_stats(spark, class_files(layout.embeddings, published_now), "embedding", EMBEDDING_SIZE)
    bad = {c: s["bad"] for c, s in stats.items() if s["bad"]}
    mismatched = {}
    for fruit_class, counts in report.per_class.items():
        if fruit_class in report.up_to_date:
            continue
        got = stats.get(fruit_class, {"rows": 0, "distinct_paths": 0})
        expected = counts.images - counts.quarantined
        if got["rows"] != expected or got["distinct_paths"] != got["rows"]:
            mismatched[fruit_class] = {
                "expected": expected,
                "rows": got["rows"],
                "distinct_paths": got["distinct_paths"],
            }
    all_bad = sorted(
        c for c, counts in report.per_class.items() if counts.images and counts.quarantined == counts.images
    )
    rate = report.quarantined / report.images if report.images else 0.0
    description = (
        f"{report.quarantined} of {report.images} images quarantined ({rate:.1%}; threshold {max_quarantine_rate:.1%})"
    )
    if all_bad:
        description = f"every image of {', '.join(all_bad)} was quarantined: nothing to embed. " + description
    return [
        CheckOutcome(
            f"embeddings_are_{EMBEDDING_SIZE}_finite_floats",
            not bad,
            {"rows_checked": sum(s["rows"] for s in stats.values()), "bad_rows": sum(bad.values())},
        ),
        CheckOutcome(
            "one_row_per_image",
            not mismatched,
            {"mismatched_classes": ClassTable(mismatched)} if mismatched else {"classes": len(report.per_class)},
        ),
        CheckOutcome(
            "quarantine_rate",
            rate <= max_quarantine_rate and not all_bad,
            {
                "quarantine_rate": round(rate, 4),
                "threshold": max_quarantine_rate,
                "fully_quarantined_classes": ", ".join(all_bad) or "none",
            },
            description=description,
            warn_only=True,
        ),
    ]


def pca_checks(model: PcaModel) -> list[CheckOutcome]:
    gram = model.components @ model.components.T
    deviation = float(np.abs(gram - np.eye(model.k)).max()) if model.k else 0.0
    reached = model.explained_variance >= model.variance_target - 1e-9
    return [
        CheckOutcome(
            "pca_reaches_target_with_orthonormal_components",
            bool(reached and deviation < 1e-6),
            {
                "explained_variance": round(model.explained_variance, 6),
                "target": model.variance_target,
                "max_orthonormality_error": deviation,
            },
        )
    ]


def reduced_checks(spark, layout: DataLayout, classes, model: PcaModel, published_classes) -> list[CheckOutcome]:
    """``classes``: those this run projected; ``published_classes``: every class of the table. One
    read of the table as published answers both checks."""
    stats = feature_table_stats(
        spark,
        class_files(layout.reduced_features, published_classes),
        class_files(layout.embeddings, classes),
        set(classes),
        model.k,
    )
    return [_reduced_rows_check(stats, classes, model.k), _one_basis_check(stats, model)]


def _one_basis_check(stats: dict[str, dict], model: PcaModel) -> CheckOutcome:
    """Whoever reads the output folder trains on one table: every published row must come from the
    current basis (a refit followed by a partial projection leaves rows of two bases)."""
    bases = {c: s["bases"] for c, s in stats.items() if s["bases"]}
    current = (model.fingerprint, model.k)
    stale = {
        c: {"bases": ", ".join(f"{fp or 'unrecorded'} (k={k})" for fp, k in sorted(found))}
        for c, found in bases.items()
        if found != {current}
    }
    description = (
        f"every published class is projected with the current basis {model.fingerprint} (k={model.k})"
        if not stale
        else f"{len(stale)} of {len(bases)} published classes are not projected with the current basis "
        f"{model.fingerprint} (k={model.k}): materialize reduced_features for every class"
    )
    metadata = {"pca_fingerprint": model.fingerprint, "classes_checked": len(bases)}
    if stale:
        metadata["stale_classes"] = ClassTable(stale)
    return CheckOutcome("reduced_features_share_one_basis", not stale, metadata, description=description)


def _reduced_rows_check(stats: dict[str, dict], classes, k: int) -> CheckOutcome:
    problems = {}
    for fruit_class in classes:
        found = stats.get(fruit_class, {})
        rows, embedded, bad = found.get("rows", 0), found.get("embedding_rows", 0), found.get("bad", 0)
        if rows != embedded or bad or not found.get("same_images", True):
            problems[fruit_class] = {
                "reduced_rows": rows,
                "embedding_rows": embedded,
                "bad_rows": bad,
                "same_images": found.get("same_images", True),
            }
    return CheckOutcome(
        "reduced_rows_match_embeddings",
        not problems,
        {"problems": ClassTable(problems)} if problems else {"k": k, "classes": len(classes)},
    )
