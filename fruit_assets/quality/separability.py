"""k-nearest-neighbour accuracy on a held-out split, for the full embeddings and the reduced features.

The split and the sample are decided by hashes of the image's path, so the same image is on the
same side in every run (numbers move only when the data or the model moves), and the sample is
bounded per class: the cost does not grow with the collection (a 1280-float vector per sampled
image reaches the driver, at most ``per_class`` of them per class).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

HELD_OUT_SHARE = 0.2


def image_key(path: str) -> str:
    """What names an image within its dataset (``<Class>/<file>``, the part after ``Training/``):
    the split and the sample stay the same when the data root moves (a copy in another bucket)."""
    return path.split("/Training/", 1)[-1]


def path_hash(path: str, salt: str = "") -> float:
    """A stable number in [0, 1) for the image at ``path``, wherever its data root is."""
    digest = hashlib.blake2b(f"{salt}{image_key(path)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def sampled(path: str, rate: float) -> bool:
    return path_hash(path, "sample:") < rate


def held_out(path: str) -> bool:
    return path_hash(path, "split:") < HELD_OUT_SHARE


def sampled_indices(paths: list[str], rate: float) -> list[int]:
    """Which of these rows the sample keeps: one rule for every pass that takes it."""
    return [i for i, path in enumerate(paths) if sampled(path, rate)]


def sample_rates(counts: dict[str, int], per_class: int) -> dict[str, float]:
    """Per class, the share of images to sample so each class gives about ``per_class``."""
    return {c: min(1.0, per_class / n) if n else 0.0 for c, n in counts.items()}


def knn_predict(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, k: int = 5, chunk: int = 1024
) -> np.ndarray:
    """Majority label among the ``k`` nearest training points (Euclidean, float64); a tie goes to
    the label whose tied neighbours are nearer in total, then to the earlier training points.

    The distances are first computed in float32 (half the time of float64 on this sample's 10,000 x
    1280 floats), which only chooses candidates: every point whose float32 distance is within the
    float32 rounding bound of the k-th smallest is measured again in float64, and the k nearest of
    those are the k nearest in float64 (the bound is a proven one, not a tolerance)."""
    train = np.asarray(train, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    k = max(1, min(k, len(train)))
    train32 = train.astype(np.float32)
    train_norms32 = _squared_norms(train32).astype(np.float32)
    largest_train = float(np.sqrt(_squared_norms(train).max())) if len(train) else 0.0
    # |float32 distance - exact| <= (d + 4) * eps32 * (|x| + |y|)^2: inputs rounded to float32,
    # a d-term dot product and two sums (Higham's bound); doubled for the conversions around it.
    rounding = 2.0 * (train.shape[1] + 4) * float(np.finfo(np.float32).eps)
    predictions = np.empty(len(test), dtype=train_labels.dtype)
    for start in range(0, len(test), chunk):
        block = test[start : start + chunk]
        block32 = block.astype(np.float32)
        block_norms32 = _squared_norms(block32).astype(np.float32)
        approximate = block_norms32[:, None] - 2.0 * (block32 @ train32.T) + train_norms32[None, :]
        kth = np.partition(approximate, k - 1, axis=1)[:, k - 1].astype(np.float64)
        bound = rounding * (np.sqrt(_squared_norms(block)) + largest_train) ** 2
        # A true k-nearest point is within the bound of its float32 distance, which is itself
        # within the bound of the k-th float32 distance's true value: twice the bound in all.
        limits = kth + 2.0 * bound
        for row in range(len(block)):
            candidates = np.flatnonzero(approximate[row] <= limits[row])
            exact = ((train[candidates] - block[row]) ** 2).sum(axis=1)
            order = np.lexsort((candidates, exact))[:k]
            predictions[start + row] = _vote(train_labels[candidates[order]], exact[order])
    return predictions


def _squared_norms(rows: np.ndarray) -> np.ndarray:
    # Summed in float64 whatever the rows' type, without a float64 copy of them.
    return np.einsum("ij,ij->i", rows, rows, dtype=np.float64)


def _vote(labels: np.ndarray, distances: np.ndarray):
    best = None
    for label in np.unique(labels):
        votes, total = int((labels == label).sum()), float(distances[labels == label].sum())
        if best is None or (votes, -total) > (best[1], -best[2]):
            best = (label, votes, total)
    assert best is not None  # k >= 1 neighbours: at least one label voted
    return best[0]


@dataclass
class Accuracy:
    overall: float
    per_class: dict[str, tuple[int, int]]  # class -> (correct, held out)
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)  # (true, predicted) -> count, errors only

    def most_confused(self, limit: int = 8) -> list[str]:
        """Classes involved in the most errors, for the confusion picture."""
        weight: dict[str, int] = {}
        for (true, predicted), count in self.confusion.items():
            weight[true] = weight.get(true, 0) + count
            weight[predicted] = weight.get(predicted, 0) + count
        return [c for c, _ in sorted(weight.items(), key=lambda item: (-item[1], item[0]))[:limit]]


def knn_accuracy(vectors: np.ndarray, labels: list[str], test_mask: np.ndarray, k: int = 5) -> Accuracy:
    label_array = np.asarray(labels, dtype=object)
    train, test = ~test_mask, test_mask
    if not test.any() or not train.any():
        return Accuracy(float("nan"), {})
    predicted = knn_predict(vectors[train], label_array[train], vectors[test], k)
    truth = label_array[test]
    per_class = {c: (int(((truth == c) & (predicted == c)).sum()), int((truth == c).sum())) for c in np.unique(truth)}
    confusion: dict[tuple[str, str], int] = {}
    for true, guess in zip(truth, predicted):
        if true != guess:
            confusion[(true, guess)] = confusion.get((true, guess), 0) + 1
    return Accuracy(float((predicted == truth).mean()), per_class, confusion)


@dataclass
class Separability:
    full: Accuracy
    reduced: Accuracy
    k: int  # PCA components of the reduced side
    sample_size: int
    held_out: int
    keeping_target: float | None = None  # smallest variance target whose k loses <= tolerance
    keeping_k: int | None = None

    @property
    def loss(self) -> float:
        """Accuracy points (0..1) the PCA costs on this split."""
        return self.full.overall - self.reduced.overall


def separability(
    embeddings: np.ndarray,
    labels: list[str],
    paths: list[str],
    mean: np.ndarray,
    basis: np.ndarray,
    spectrum: np.ndarray,
    k: int,
    tolerance: float = 0.02,
    neighbours: int = 5,
    targets=(0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0),
) -> Separability:
    """k-NN accuracy of the full ``embeddings`` and of their projection on the first ``k`` rows of
    ``basis`` (the PCA's eigenvectors by decreasing variance), on the split given by the paths.
    When the projection loses more than ``tolerance``, the smallest of ``targets`` whose k (from
    the explained-variance ``spectrum``) keeps the loss within it is named."""
    from fruit_assets.pca.fit import choose_k

    test_mask = np.array([held_out(p) for p in paths], dtype=bool)
    centred = np.asarray(embeddings, dtype=np.float64) - mean
    full = knn_accuracy(centred, labels, test_mask, neighbours)

    def reduced_at(components: int) -> Accuracy:
        return knn_accuracy(centred @ basis[:components].T, labels, test_mask, neighbours)

    reduced = reduced_at(k)
    result = Separability(full, reduced, k, len(paths), int(test_mask.sum()))
    if result.loss > tolerance:
        for target in targets:
            candidate = choose_k(spectrum, target)
            if candidate <= k or candidate > len(basis):
                continue
            if full.overall - reduced_at(candidate).overall <= tolerance:
                result.keeping_target, result.keeping_k = target, candidate
                break
    return result
