"""Images that do not look like their class: distance to the class centroid against the class's own
spread. A robust threshold (the modified z-score of Iglewicz and Hoaglin: median + 3.5 x 1.4826 x
MAD of the distances) so that the outliers being looked for do not inflate it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z_LIMIT = 3.5
MAD_TO_SIGMA = 1.4826
# Below this many earlier images, a class is its own reference (leave-one-out).
MIN_REFERENCE = 10


def robust_threshold(distances: np.ndarray, z: float = Z_LIMIT) -> float:
    distances = np.asarray(distances, dtype=np.float64)
    median = float(np.median(distances))
    mad = float(np.median(np.abs(distances - median)))
    # A class of identical images has MAD 0: anything measurably away from them stands out.
    return median + z * MAD_TO_SIGMA * max(mad, 1e-6 * max(median, 1e-12))


@dataclass(frozen=True)
class Flagged:
    index: int  # into the vectors of the class that were checked
    distance: float
    threshold: float


def flag_against_reference(reference: np.ndarray, candidates: np.ndarray) -> list[Flagged]:
    """New images (``candidates``) whose distance to the centroid of ``reference`` (the class's
    earlier images) is beyond the robust threshold of the reference images' own distances."""
    reference = np.asarray(reference, dtype=np.float64)
    centroid = reference.mean(axis=0)
    threshold = robust_threshold(np.linalg.norm(reference - centroid, axis=1))
    distances = np.linalg.norm(np.asarray(candidates, dtype=np.float64) - centroid, axis=1)
    return [Flagged(int(i), float(distances[i]), threshold) for i in np.flatnonzero(distances > threshold)]


def flag_leave_one_out(vectors: np.ndarray) -> list[Flagged]:
    """A class seen for the first time: each image against the centroid of all the others."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(vectors)
    if n < 3:
        return []
    others = (vectors.sum(axis=0)[None, :] - vectors) / (n - 1)
    distances = np.linalg.norm(vectors - others, axis=1)
    threshold = robust_threshold(distances)
    return [Flagged(int(i), float(distances[i]), threshold) for i in np.flatnonzero(distances > threshold)]


def nearest_class(vector: np.ndarray, centroids: dict[str, np.ndarray], exclude: str) -> tuple[str, float]:
    """The other class whose centroid is nearest, and its distance ('' if there is none)."""
    best, best_distance = "", float("inf")
    for name, centroid in centroids.items():
        if name == exclude:
            continue
        distance = float(np.linalg.norm(np.asarray(vector, dtype=np.float64) - centroid))
        if distance < best_distance:
            best, best_distance = name, distance
    return best, best_distance
