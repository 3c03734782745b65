from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fruit_assets.errors import ConfigurationError


@dataclass
class Moments:
    """Count, mean and centred scatter matrix of a set of rows, mergeable in any order."""

    count: int
    mean: np.ndarray  # (d,) float64
    scatter: np.ndarray  # (d, d) float64: sum of (x - mean)(x - mean)ᵀ

    @classmethod
    def empty(cls, dim: int) -> Moments:
        return cls(0, np.zeros(dim), np.zeros((dim, dim)))

    @classmethod
    def of(cls, rows: np.ndarray) -> Moments:
        rows = np.asarray(rows, dtype=np.float64)
        if len(rows) == 0:
            return cls.empty(rows.shape[1])
        mean = rows.mean(axis=0)
        centred = rows - mean
        return cls(len(rows), mean, centred.T @ centred)

    def merge(self, other: Moments) -> Moments:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        total = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / total)
        scatter = self.scatter + other.scatter + np.outer(delta, delta) * (self.count * other.count / total)
        return Moments(total, mean, scatter)

    def subtract(self, part: Moments) -> Moments:
        """The moments of the other rows: ``self.subtract(part).merge(part)`` equals ``self``.
        (``part`` must be rows that ``self`` counts: those of a file being superseded.)"""
        if part.count == 0:
            return self
        rest = self.count - part.count
        if rest < 0:
            raise ValueError(f"cannot take {part.count} rows out of moments of {self.count}")
        if rest == 0:
            return Moments.empty(len(self.mean))
        mean = (self.mean * self.count - part.mean * part.count) / rest
        delta = part.mean - mean
        scatter = self.scatter - part.scatter - np.outer(delta, delta) * (rest * part.count / self.count)
        return Moments(rest, mean, (scatter + scatter.T) / 2)  # symmetric to the last bit: eigh reads one triangle

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, count=self.count, mean=self.mean, scatter=self.scatter)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Moments:
        arrays = np.load(io.BytesIO(data))
        return cls(int(arrays["count"]), arrays["mean"], arrays["scatter"])


@dataclass
class PcaModel:
    mean: np.ndarray  # (d,) float64
    components: np.ndarray  # (k, d), orthonormal rows, by decreasing variance
    explained_variance_ratio: np.ndarray  # (k,)
    variance_target: float
    num_samples: int
    spectrum: np.ndarray | None = None  # every component's ratio (for the variance curve)
    # Every eigenvector (d, d), rows by decreasing variance, signs as ``components``: lets the
    # feature-quality check try other variance targets without refitting.
    basis: np.ndarray | None = None

    @property
    def k(self) -> int:
        return int(self.components.shape[0])

    @property
    def explained_variance(self) -> float:
        return float(self.explained_variance_ratio.sum())

    @cached_property
    def fingerprint(self) -> str:
        """Names the basis (mean and components as stored): every reduced-features file records the
        one that projected it, so a table mixing bases is detectable. (Computed once: a model's
        arrays are never changed in place, and a run asks for it once per class.)"""
        digest = hashlib.sha256()
        for array in (self.mean, self.components):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        return digest.hexdigest()[:16]


def check_variance_target(value) -> float:
    """The explained-variance target (``FRUIT_PCA_VARIANCE``) as a float in (0, 1]; anything else
    is a ``ConfigurationError`` (a ValueError) saying so."""
    try:
        target = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"FRUIT_PCA_VARIANCE must be a number in (0, 1], got {value!r}") from None
    if not 0.0 < target <= 1.0:
        raise ConfigurationError(f"FRUIT_PCA_VARIANCE must be in (0, 1], got {value!r}")
    return target


def choose_k(ratios: np.ndarray, target: float) -> int:
    """Smallest k whose cumulative explained-variance ratio reaches ``target``."""
    target = check_variance_target(target)
    cumulative = np.cumsum(ratios)
    # Tolerance: for target 1.0, float rounding can leave the full sum at 0.9999999999.
    k = int(np.searchsorted(cumulative, target - 1e-12) + 1)
    return min(k, len(ratios))


def fit_from_moments(moments: Moments, target: float) -> PcaModel:
    if moments.count < 2:
        raise ValueError(f"PCA needs at least 2 embeddings, got {moments.count}")
    covariance = moments.scatter / (moments.count - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    eigenvectors = eigenvectors[:, order]
    total = eigenvalues.sum()
    if total <= 0:
        raise ValueError("all embeddings are identical: there is no variance to explain")
    ratios = eigenvalues / total
    k = choose_k(ratios, target)
    basis = eigenvectors.T
    # Sign convention (as scikit-learn's svd_flip): largest-magnitude loading positive, so that
    # refits on the same data give the same components rather than arbitrary sign flips.
    signs = np.sign(basis[np.arange(len(basis)), np.abs(basis).argmax(axis=1)])
    basis = basis * signs[:, None]
    return PcaModel(moments.mean, basis[:k].copy(), ratios[:k], target, moments.count, ratios, basis)


def project(embeddings: np.ndarray, model: PcaModel) -> np.ndarray:
    """``(embedding - mean) @ components.T`` as float32 (n, k)."""
    centred = np.asarray(embeddings, dtype=np.float64) - model.mean
    return (centred @ model.components.T).astype(np.float32)


def save_pca(model: PcaModel, with_basis: bool = True) -> bytes:
    """``with_basis=False``: what projection tasks need (mean and the k components), 13 MB lighter."""
    buffer = io.BytesIO()
    extra = {"basis": model.basis.astype(np.float32)} if with_basis and model.basis is not None else {}
    np.savez(
        buffer,
        mean=model.mean.astype(np.float64),
        components=model.components.astype(np.float64),
        explained_variance_ratio=model.explained_variance_ratio.astype(np.float64),
        variance_target=np.float64(model.variance_target),
        num_samples=np.int64(model.num_samples),
        explained_variance_ratio_all=(
            model.spectrum if model.spectrum is not None else model.explained_variance_ratio
        ).astype(np.float64),
        # The stubs match **extra against allow_pickle: bool; it only ever holds "basis".
        **extra,  # pyright: ignore[reportArgumentType]
    )
    return buffer.getvalue()


def load_pca(data: bytes) -> PcaModel:
    arrays = np.load(io.BytesIO(data))
    return PcaModel(
        arrays["mean"],
        arrays["components"],
        arrays["explained_variance_ratio"],
        float(arrays["variance_target"]),
        int(arrays["num_samples"]),
        arrays["explained_variance_ratio_all"] if "explained_variance_ratio_all" in arrays else None,
        arrays["basis"].astype(np.float64) if "basis" in arrays else None,
    )
