"""Asset checks, evaluated by the materializing step itself on what it just committed, so every
materialization (and every class of a single-run backfill) is checked. Shown on the asset page.
What they find is computed in steps/checks.py; this module declares them and reports outcomes."""

from __future__ import annotations

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec

from fruit_assets.assets.metadata import class_table
from fruit_assets.featurize.model import EMBEDDING_SIZE
from fruit_assets.steps.checks import CheckOutcome, ClassTable

EMBEDDING_CHECKS = [
    AssetCheckSpec(
        f"embeddings_are_{EMBEDDING_SIZE}_finite_floats",
        asset="image_embeddings",
        description=f"Every row's embedding has {EMBEDDING_SIZE} finite float32 values.",
    ),
    AssetCheckSpec(
        "one_row_per_image",
        asset="image_embeddings",
        description="One embedding row per manifest image that was not quarantined; no duplicates.",
    ),
    AssetCheckSpec(
        "quarantine_rate",
        asset="image_embeddings",
        description="Share of images quarantined stays below the configured threshold.",
    ),
]
PCA_CHECKS = [
    AssetCheckSpec(
        "pca_reaches_target_with_orthonormal_components",
        asset="pca_model",
        description="Cumulative explained variance >= target; components' rows orthonormal.",
    ),
]
REDUCED_CHECKS = [
    AssetCheckSpec(
        "reduced_rows_match_embeddings",
        asset="reduced_features",
        description="As many rows as embeddings per class, each with k finite features.",
    ),
    AssetCheckSpec(
        "reduced_features_share_one_basis",
        asset="reduced_features",
        description="Every published class was projected with the current PCA basis: one fingerprint, one length.",
    ),
]


def check_results(outcomes: list[CheckOutcome]) -> list[AssetCheckResult]:
    return [
        AssetCheckResult(
            check_name=outcome.name,
            passed=outcome.passed,
            description=outcome.description,
            severity=AssetCheckSeverity.WARN if outcome.warn_only else AssetCheckSeverity.ERROR,
            metadata={
                key: class_table(value.rows) if isinstance(value, ClassTable) else value
                for key, value in outcome.metadata.items()
            },
        )
        for outcome in outcomes
    ]
