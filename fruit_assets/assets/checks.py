"""Asset checks, evaluated by the materializing step itself on what it just committed, so every
materialization (and every class of a single-run backfill) is checked. Shown on the asset page."""

from __future__ import annotations

import numpy as np
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from fruit_assets.layout import DataLayout
from fruit_assets.pca import PcaModel
from fruit_assets.pipeline import StepReport
from fruit_assets.spark_jobs.commit import dataset_files
from fruit_assets.spark_jobs.validate import vector_file_stats

EMBEDDING_CHECKS = [
    AssetCheckSpec("embeddings_are_1280_finite_floats", asset="image_embeddings",
                   description="Every row's embedding has 1280 finite float32 values."),
    AssetCheckSpec("one_row_per_image", asset="image_embeddings",
                   description="One embedding row per manifest image that was not quarantined; no duplicates."),
    AssetCheckSpec("quarantine_rate", asset="image_embeddings",
                   description="Share of images quarantined stays below the configured threshold."),
]
PCA_CHECKS = [
    AssetCheckSpec("pca_reaches_target_with_orthonormal_components", asset="pca_model",
                   description="Cumulative explained variance >= target; components' rows orthonormal."),
]
REDUCED_CHECKS = [
    AssetCheckSpec("reduced_rows_match_embeddings", asset="reduced_features",
                   description="As many rows as embeddings per class, each with k finite features."),
]


def _table(rows: dict[str, dict]) -> MetadataValue:
    columns = sorted({k for row in rows.values() for k in row})
    text = "| class | " + " | ".join(columns) + " |\n|---|" + "---:|" * len(columns) + "\n"
    text += "".join(f"| {c} | " + " | ".join(str(r.get(k, "")) for k in columns) + " |\n" for c, r in sorted(rows.items()))
    return MetadataValue.md(text)


def _files(dataset: str, classes) -> list[tuple[str, str]]:
    return [(c, uri) for c in classes for uri in dataset_files(dataset, c)]


def embedding_checks(spark, layout: DataLayout, report: StepReport, max_quarantine_rate: float) -> list[AssetCheckResult]:
    stats = vector_file_stats(spark, _files(layout.embeddings, report.per_class), "embedding", 1280)
    bad = {c: s["bad"] for c, s in stats.items() if s["bad"]}
    mismatched = {}
    for fruit_class, counts in report.per_class.items():
        got = stats.get(fruit_class, {"rows": 0, "distinct_paths": 0})
        expected = counts.images - counts.quarantined
        if got["rows"] != expected or got["distinct_paths"] != got["rows"]:
            mismatched[fruit_class] = {"expected": expected, "rows": got["rows"], "distinct_paths": got["distinct_paths"]}
    all_bad = sorted(c for c, counts in report.per_class.items() if counts.images and counts.quarantined == counts.images)
    rate = report.quarantined / report.images if report.images else 0.0
    rate_ok = rate <= max_quarantine_rate and not all_bad
    description = f"{report.quarantined} of {report.images} images quarantined ({rate:.1%}; threshold {max_quarantine_rate:.1%})"
    if all_bad:
        description = f"every image of {', '.join(all_bad)} was quarantined: nothing to embed. " + description
    return [
        AssetCheckResult(check_name="embeddings_are_1280_finite_floats", passed=not bad,
                         metadata={"rows_checked": sum(s["rows"] for s in stats.values()), "bad_rows": sum(bad.values())}),
        AssetCheckResult(check_name="one_row_per_image", passed=not mismatched,
                         metadata={"mismatched_classes": _table(mismatched)} if mismatched else {"classes": len(report.per_class)}),
        AssetCheckResult(check_name="quarantine_rate", passed=rate_ok, severity=AssetCheckSeverity.WARN,
                         description=description,
                         metadata={"quarantine_rate": round(rate, 4), "threshold": max_quarantine_rate,
                                   "fully_quarantined_classes": ", ".join(all_bad) or "none"}),
    ]


def pca_checks(model: PcaModel) -> list[AssetCheckResult]:
    gram = model.components @ model.components.T
    deviation = float(np.abs(gram - np.eye(model.k)).max()) if model.k else 0.0
    reached = model.explained_variance >= model.variance_target - 1e-9
    return [
        AssetCheckResult(
            check_name="pca_reaches_target_with_orthonormal_components",
            passed=bool(reached and deviation < 1e-6),
            metadata={"explained_variance": round(model.explained_variance, 6), "target": model.variance_target,
                      "max_orthonormality_error": deviation},
        )
    ]


def reduced_checks(spark, layout: DataLayout, classes, k: int) -> list[AssetCheckResult]:
    reduced = vector_file_stats(spark, _files(layout.reduced_features, classes), "features", k)
    embedded = vector_file_stats(spark, _files(layout.embeddings, classes), "embedding", 1280)
    problems = {}
    for fruit_class in classes:
        r = reduced.get(fruit_class, {"rows": 0, "bad": 0})
        e = embedded.get(fruit_class, {"rows": 0})
        if r["rows"] != e["rows"] or r["bad"]:
            problems[fruit_class] = {"reduced_rows": r["rows"], "embedding_rows": e["rows"], "bad_rows": r["bad"]}
    return [
        AssetCheckResult(check_name="reduced_rows_match_embeddings", passed=not problems,
                         metadata={"problems": _table(problems)} if problems else {"k": k, "classes": len(classes)})
    ]
