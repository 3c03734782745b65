"""The fidelity gate: may this dataset be embedded in a reduced precision? No Dagster, no Spark.

A reduced precision (bf16) moves every vector: on a trained MobileNetV2 by ~10% (relative L2) while
the classes stayed as separable on the set measured. Whether they stay so is a property of the data,
so the gate measures it on the dataset itself: a few hundred of its own images across its classes,
embedded by the fp32 model and by the reduced one, compared by

- relative L2 per image (median and p99) and the smallest cosine: how far the vectors move;
- nearest-neighbour agreement: how often an image's nearest other image stays the same;
- the kNN class accuracy of each (leave-one-out over the sample): whether classes stay apart.

Two of them decide, each against its own limit:

- the kNN accuracy may drop by at most ``max_accuracy_drop`` (0.01): what the table is for;
- the median relative L2 may be at most ``max_median_relative_l2`` (0.25). Why a second measure: a
  few hundred images resolve an accuracy to a few points, and a model can keep classes apart while
  moving every vector far enough to change the PCA basis and every distance a user computes on the
  table. bf16 rounding moves a trained MobileNetV2's vectors by ~0.10 and a random one's by ~0.18;
  0.25 refuses what moves them by a quarter (int8 static quantization measured 0.37).

The p99, the cosine and the agreement are recorded, not judged: they describe the tails a user may
want to look at, and none has a threshold that the two above do not already imply or that a few
hundred images measure reliably.
"""

from __future__ import annotations

import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice

import numpy as np

from fruit_assets.errors import ConfigurationError, TransientError, UserFacingError
from fruit_assets.layout import DataLayout
from fruit_assets.quality.separability import path_hash
from fruit_assets.storage import AccessDeniedError, open_store
from fruit_assets.storage.parquet_io import read_table

DEFAULT_SAMPLE_IMAGES = 300
KNN_NEIGHBOURS = 5


class FidelityRefusedError(UserFacingError):
    """The reduced precision changes this dataset's embeddings more than the gate allows."""


@dataclass(frozen=True)
class FidelityLimits:
    max_accuracy_drop: float = 0.01
    max_median_relative_l2: float = 0.25

    @classmethod
    def parse(cls, max_accuracy_drop, max_median_relative_l2) -> FidelityLimits:
        """From settings that may be strings (Dagster's EnvVar feeds str fields)."""
        values = []
        for name, value in (
            ("FRUIT_PRECISION_MAX_ACCURACY_DROP", max_accuracy_drop),
            ("FRUIT_PRECISION_MAX_MEDIAN_RELATIVE_L2", max_median_relative_l2),
        ):
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigurationError(f"{name} must be a number, got {value!r}") from None
            if not 0.0 <= number < math.inf:
                raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")
            values.append(number)
        return cls(*values)


@dataclass(frozen=True)
class Fidelity:
    """The gate's figures for one (weights, precision, dataset sample), and its verdict."""

    precision: str
    images: int
    classes: int
    median_relative_l2: float
    p99_relative_l2: float
    min_cosine: float
    nearest_neighbour_agreement: float
    knn_accuracy_fp32: float | None  # None: fewer than two classes with two sampled images
    knn_accuracy_reduced: float | None
    limits: FidelityLimits
    sample_digest: str = ""  # of the sampled (path, etag) pairs
    sample_classes: list[str] = field(default_factory=list)
    unreadable: int = 0  # sampled objects that did not decode (the run quarantines them)
    # Where it was measured: other bf16 kernels (another CPU, another OpenVINO) measure again.
    measured_on: str = ""

    @property
    def accuracy_drop(self) -> float | None:
        if self.knn_accuracy_fp32 is None or self.knn_accuracy_reduced is None:
            return None
        return self.knn_accuracy_fp32 - self.knn_accuracy_reduced

    @property
    def refusal(self) -> str | None:
        """Why the gate refuses, None when it admits."""
        reasons = []
        drop = self.accuracy_drop
        if drop is not None and drop > self.limits.max_accuracy_drop + 1e-12:
            reasons.append(
                f"kNN class accuracy {self.knn_accuracy_fp32:.3f} -> {self.knn_accuracy_reduced:.3f} "
                f"(drop {drop:.3f} > {self.limits.max_accuracy_drop:g})"
            )
        if not self.median_relative_l2 <= self.limits.max_median_relative_l2:
            reasons.append(f"median relative L2 {self.median_relative_l2:.3f} > {self.limits.max_median_relative_l2:g}")
        if self.images < 2:
            reasons.append("fewer than 2 images of the dataset could be read to measure it")
        elif self.unreadable > self.images:
            reasons.append(f"{self.unreadable} of {self.images + self.unreadable} sampled images could not be read")
        return "; ".join(reasons) or None

    @property
    def admitted(self) -> bool:
        return self.refusal is None

    def summary(self) -> str:
        accuracy = (
            "kNN class accuracy not measured (fewer than two classes with two images)"
            if self.accuracy_drop is None
            else f"kNN class accuracy {self.knn_accuracy_fp32:.3f} fp32, {self.knn_accuracy_reduced:.3f} {self.precision}"
        )
        return (
            f"{self.precision} against fp32 on {self.images} images of {self.classes} classes: median relative L2 "
            f"{self.median_relative_l2:.3f} (p99 {self.p99_relative_l2:.3f}), min cosine {self.min_cosine:.3f}, "
            f"same nearest neighbour {self.nearest_neighbour_agreement:.3f}, {accuracy}"
        )

    def refused_error(self) -> FidelityRefusedError:
        return FidelityRefusedError(
            f"{self.precision} refused for this dataset: {self.refusal} on {self.images} of its images; "
            f"set FRUIT_INFERENCE_PRECISION=fp32 (or loosen the gate's limits knowingly)"
        )

    def metadata(self) -> dict:
        figures = {
            "fidelity_images": self.images,
            "fidelity_classes": self.classes,
            "median_relative_l2": round(self.median_relative_l2, 5),
            "p99_relative_l2": round(self.p99_relative_l2, 5),
            "min_cosine": round(self.min_cosine, 5),
            "nearest_neighbour_agreement": round(self.nearest_neighbour_agreement, 5),
            "fidelity_unreadable": self.unreadable,
            "fidelity_measured_on": self.measured_on,
            "max_accuracy_drop": self.limits.max_accuracy_drop,
            "max_median_relative_l2": self.limits.max_median_relative_l2,
        }
        fp32, reduced = self.knn_accuracy_fp32, self.knn_accuracy_reduced
        if fp32 is not None and reduced is not None:  # accuracy_drop: measured only when both are
            figures.update(
                {
                    "knn_accuracy_fp32": round(fp32, 5),
                    "knn_accuracy_reduced": round(reduced, 5),
                    "knn_accuracy_drop": round(fp32 - reduced, 5),
                }
            )
        return figures

    def judged_by(self, limits: FidelityLimits) -> Fidelity:
        """The same figures under other limits (a setting changed: nothing to measure again)."""
        return Fidelity(**{**self._fields(), "limits": limits})

    def _fields(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Fidelity:
        fields = json.loads(data)
        fields["limits"] = FidelityLimits(**fields["limits"])
        return cls(**fields)


def compare(
    reference: np.ndarray, reduced: np.ndarray, labels: list[str], precision: str, limits: FidelityLimits
) -> Fidelity:
    """The gate's figures for embeddings of the same images (rows aligned) and their classes."""
    reference = np.asarray(reference, dtype=np.float64)
    reduced = np.asarray(reduced, dtype=np.float64)
    norms = np.maximum(np.linalg.norm(reference, axis=1), 1e-30)
    relative = np.linalg.norm(reduced - reference, axis=1) / norms
    cosine = np.einsum("ij,ij->i", reference, reduced) / (norms * np.maximum(np.linalg.norm(reduced, axis=1), 1e-30))
    labels_array = np.asarray(labels)
    fp32_neighbours, reduced_neighbours = _neighbours(reference), _neighbours(reduced)
    agreement = float(np.mean(fp32_neighbours[:, 0] == reduced_neighbours[:, 0])) if len(labels) > 1 else 1.0
    return Fidelity(
        precision=precision,
        images=len(labels),
        classes=len(set(labels)),
        median_relative_l2=float(np.median(relative)) if len(labels) else math.inf,
        p99_relative_l2=float(np.quantile(relative, 0.99)) if len(labels) else math.inf,
        min_cosine=float(np.min(cosine)) if len(labels) else -1.0,
        nearest_neighbour_agreement=agreement,
        knn_accuracy_fp32=_knn_accuracy(fp32_neighbours, labels_array),
        knn_accuracy_reduced=_knn_accuracy(reduced_neighbours, labels_array),
        limits=limits,
    )


def _neighbours(vectors: np.ndarray) -> np.ndarray:
    """Each row's nearest other rows by cosine, nearest first (at most KNN_NEIGHBOURS)."""
    if len(vectors) < 2:
        return np.zeros((len(vectors), 1), dtype=int)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    k = min(KNN_NEIGHBOURS, len(vectors) - 1)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def _knn_accuracy(neighbours: np.ndarray, labels: np.ndarray) -> float | None:
    """Leave-one-out kNN (majority of the k nearest, ties to the nearest) over the images whose
    class has another image in the sample: a class seen once cannot be recognised by anyone."""
    classes, counts = np.unique(labels, return_counts=True)
    scorable = np.isin(labels, classes[counts >= 2])
    if len(set(labels[scorable])) < 2:
        return None
    right = 0
    for index in np.flatnonzero(scorable):
        near = labels[neighbours[index]]  # the classes of its nearest, nearest first
        votes: dict[str, int] = {}
        for label in near:
            votes[label] = votes.get(label, 0) + 1
        best = max(votes.values())
        predicted = next(label for label in near if votes[label] == best)
        right += predicted == labels[index]
    return right / int(scorable.sum())


@dataclass(frozen=True)
class SampledImage:
    uri: str
    fruit_class: str
    etag: str


def dataset_classes(layout: DataLayout) -> list[str]:
    """The classes the gate samples: the folders under Training/ that hold objects (an emptied
    folder can linger as a directory, or as a prefix on filer-backed S3)."""
    store = open_store(layout.training)
    folders = store.list_folders(layout.training)
    with ThreadPoolExecutor(max_workers=16) as pool:
        holding = list(pool.map(lambda c: store.holds_objects(layout.training_class(c)), folders))
    return sorted(c for c, holds in zip(folders, holding) if holds)


def measured_on() -> str:
    """The CPU and the OpenVINO release whose bf16 kernels the figures describe."""
    from importlib.metadata import version

    from fruit_assets.featurize.openvino_model import cpu_name

    return f"{cpu_name()}; openvino {version('openvino')}"


def sample_classes_of(layout: DataLayout, images: int = DEFAULT_SAMPLE_IMAGES) -> list[str]:
    """The classes a sample of ``images`` covers: every class, or with more classes than half of
    ``images`` (two images each at least), that many of them, the same ones each time."""
    classes = sorted(dataset_classes(layout))
    if len(classes) > images // 2:
        classes = sorted(sorted(classes, key=lambda c: path_hash(c, "fidelity"))[: max(1, images // 2)])
    return classes


def draw_sample(layout: DataLayout, images: int = DEFAULT_SAMPLE_IMAGES) -> list[SampledImage]:
    """About ``images`` of the dataset's images spread evenly over its classes, the same ones on
    every call (the lowest hashes of their paths), from raw_images' manifests where a class has one
    and from a listing of its folder otherwise."""
    classes = sample_classes_of(layout, images)
    if not classes:
        return []
    per_class = max(2, math.ceil(images / len(classes)))

    def candidates(fruit_class: str) -> list[SampledImage]:
        manifest_uri = layout.manifest(fruit_class)
        if open_store(manifest_uri).exists(manifest_uri):
            table = read_table(manifest_uri, columns=["path", "etag"])
            listed = zip(table["path"].to_pylist(), table["etag"].to_pylist())
        else:
            folder = layout.training_class(fruit_class)
            # Enough to choose from without listing a class of 100,000 images whole.
            objects = open_store(folder).list_objects(folder, content_hash=False)
            # .tmp-*: a local write not yet renamed into place (steps/manifest.images_only).
            listed = (
                (info.uri, info.etag)
                for info in islice(objects, 20 * per_class)
                if not info.uri.rsplit("/", 1)[-1].startswith(".tmp-")
            )
        ranked = sorted(listed, key=lambda item: path_hash(item[0], "fidelity"))
        return [SampledImage(uri, fruit_class, etag) for uri, etag in ranked[:per_class]]

    with ThreadPoolExecutor(max_workers=16) as pool:
        return [image for chosen in pool.map(candidates, classes) for image in chosen]


def sample_digest(sample: list[SampledImage]) -> str:
    digest = hashlib.sha256()
    for image in sorted(sample, key=lambda image: image.uri):
        digest.update(f"{image.uri}\0{image.etag}\n".encode())
    return digest.hexdigest()[:20]


def read_sample(sample: list[SampledImage]) -> tuple[np.ndarray, list[str], int]:
    """(preprocessed images, their classes, how many did not decode): what the gate embeds."""
    from fruit_assets.featurize.images import MAX_IMAGE_BYTES, decode_image, preprocess_batch

    def load(image: SampledImage):
        try:
            return decode_image(open_store(image.uri).read_bytes(image.uri, max_bytes=MAX_IMAGE_BYTES))
        except (AccessDeniedError, TransientError):
            raise  # the gate cannot judge, and the user must know why
        except Exception:  # noqa: BLE001 - gone since the listing, or an image the run will quarantine
            return None

    with ThreadPoolExecutor(max_workers=16) as pool:
        decoded = list(pool.map(load, sample))
    kept = [(pixels, image.fruit_class) for pixels, image in zip(decoded, sample) if pixels is not None]
    if not kept:
        return np.zeros((0, 224, 224, 3), dtype=np.float32), [], len(sample)
    return preprocess_batch(np.stack([pixels for pixels, _c in kept])), [c for _p, c in kept], len(sample) - len(kept)


def measure(
    layout: DataLayout,
    onnx_bytes: bytes,
    precision: str,
    limits: FidelityLimits,
    images: int = DEFAULT_SAMPLE_IMAGES,
    reduced_onnx_bytes: bytes | None = None,
) -> Fidelity:
    """The gate's figures for the converted model ``onnx_bytes`` run in fp32 (ONNX Runtime, the
    product's fp32 engine) and in ``precision`` (``reduced_onnx_bytes``, the same model unless a
    test hands a damaged one) on a sample of the dataset at ``layout``."""
    from fruit_assets.featurize.onnx_model import OnnxEmbedder
    from fruit_assets.featurize.openvino_model import OpenVinoEmbedder

    sample = draw_sample(layout, images)
    preprocessed, labels, unreadable = read_sample(sample)
    reduced_model = OpenVinoEmbedder(reduced_onnx_bytes or onnx_bytes, precision, threads=0)
    reference = OnnxEmbedder(onnx_bytes, threads=0).embed(preprocessed)
    reduced = reduced_model.embed(preprocessed)
    fidelity = compare(reference, reduced, labels, precision, limits)
    return Fidelity(
        **{
            **fidelity._fields(),
            "sample_digest": sample_digest(sample),
            "sample_classes": sorted({image.fruit_class for image in sample}),
            "unreadable": unreadable,
            "measured_on": measured_on(),
        }
    )
