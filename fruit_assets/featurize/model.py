"""MobileNetV2 feature extractor: weights resolution on the driver, model construction on workers.

Weights travel as a list of numpy arrays (about 9 MB), so the driver resolves ``imagenet``,
``random`` or a file once and every Spark worker builds the same network from the broadcast value.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from fruit_assets.errors import UserFacingError

EMBEDDING_SIZE = 1280
INPUT_SHAPE = (224, 224, 3)
DEFAULT_RANDOM_SEED = 1234


class WeightsUnavailableError(UserFacingError):
    """The requested weights cannot be had; the message says what to do instead."""


@dataclass(frozen=True)
class WeightsSpec:
    """What a FRUIT_MODEL_WEIGHTS setting names: ``imagenet``, ``random`` or a weights file."""

    kind: str  # "imagenet" | "random" | "file"
    path: str = ""  # absolute, for "file"


def parse_weights_spec(spec: str | None) -> WeightsSpec:
    """The one reading of a weights setting (empty means imagenet); paths are made absolute."""
    spec = (spec or "imagenet").strip()
    if spec.lower() in ("imagenet", "random"):
        return WeightsSpec(spec.lower())
    return WeightsSpec("file", os.path.abspath(os.path.expanduser(spec)))


@dataclass(frozen=True)
class ModelWeights:
    arrays: list[np.ndarray]
    source: str  # "imagenet", "random(seed=...)" or the file path
    fingerprint: str  # sha256 of the arrays: caches on workers and outputs are keyed by it


def configure_tensorflow_threads(intra_op: int | None, inter_op: int | None = 1) -> None:
    """Must run before TensorFlow executes its first op in the process (later calls are ignored)."""
    import tensorflow as tf

    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError:
        pass  # TensorFlow is already initialised in this process: keep its settings


def build_mobilenet_v2(weights: str | None = None):
    """``MobileNetV2(include_top=False, pooling="avg")`` at 224x224: 1280 features per image."""
    import keras

    return keras.applications.MobileNetV2(
        input_shape=INPUT_SHAPE,
        include_top=False,
        pooling="avg",
        # Unannotated in Keras, so inferred as str from its default; None (random init) is documented.
        weights=weights,  # pyright: ignore[reportArgumentType]
    )


def fingerprint_arrays(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def resolve_weights(spec: str, random_seed: int = DEFAULT_RANDOM_SEED) -> ModelWeights:
    """``imagenet`` | ``random`` | path to a ``.weights.h5``/``.h5`` file -> weight arrays."""
    parsed = parse_weights_spec(spec)
    if parsed.kind == "imagenet":
        model = _load_imagenet()
        source = "imagenet"
    elif parsed.kind == "random":
        model = calibrated_random_model(random_seed)
        source = f"random(seed={random_seed})"
    else:
        path = parsed.path
        if not os.path.isfile(path):
            raise WeightsUnavailableError(
                f"FRUIT_MODEL_WEIGHTS={spec.strip()!r} is neither 'imagenet', 'random' nor an existing "
                f"weights file (looked for {path})."
            )
        model = build_mobilenet_v2(weights=None)
        try:
            model.load_weights(path)
        except Exception as error:  # noqa: BLE001 - Keras raises many types for a bad file
            raise WeightsUnavailableError(
                f"could not load MobileNetV2 weights from {path}: {error}. The file must be saved "
                "from MobileNetV2(include_top=False, pooling='avg', input_shape=(224, 224, 3))."
            ) from error
        source = path
    arrays = [np.asarray(w, dtype=np.float32) for w in model.get_weights()]
    return ModelWeights(arrays, source, fingerprint_arrays(arrays))


def _load_imagenet():
    try:
        return build_mobilenet_v2(weights="imagenet")
    except Exception as error:  # noqa: BLE001 - urllib, HTTP and file errors all end up here
        raise WeightsUnavailableError(
            "could not download the MobileNetV2 ImageNet weights "
            f"({type(error).__name__}: {error}). Either give the network access to "
            "storage.googleapis.com once (Keras caches the file under ~/.keras/models, or "
            "KERAS_HOME), or set FRUIT_MODEL_WEIGHTS to a local weights file saved from "
            "MobileNetV2(include_top=False, pooling='avg', input_shape=(224, 224, 3)), "
            "or to 'random' for an offline demo (embeddings then carry no ImageNet knowledge)."
        ) from error


def calibrated_random_model(seed: int = DEFAULT_RANDOM_SEED, calibration_images: int = 32):
    """Seeded random MobileNetV2 whose BatchNorm statistics are measured on sample images.

    Keras' untrained BatchNorm layers (mean 0, variance 1) shrink activations layer after layer:
    raw random embeddings are ~1e-12. One forward pass in training mode with momentum 0 sets every
    layer's moving mean and variance to the statistics of its own input, computed with the layers
    before it already normalised: the layer-by-layer calibration in a single pass.
    """
    import keras

    from fruit_assets.featurize.images import preprocess_batch
    from fruit_assets.featurize.synthetic import synthetic_images

    keras.utils.set_random_seed(seed)
    model = build_mobilenet_v2(weights=None)
    batch = preprocess_batch(synthetic_images(calibration_images, seed=seed))
    batch_norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in batch_norms]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(batch, training=True)
    for layer, momentum in zip(batch_norms, momenta):
        layer.momentum = momentum
    return model


class Embedder:
    """A built network plus a fixed-shape compiled call (no retracing for the last short batch)."""

    def __init__(self, weights: ModelWeights, batch_size: int = 32):
        import tensorflow as tf

        self.batch_size = batch_size
        self.fingerprint = weights.fingerprint
        self.model = build_mobilenet_v2(weights=None)
        self.model.set_weights(weights.arrays)
        model = self.model

        @tf.function(input_signature=[tf.TensorSpec((batch_size, *INPUT_SHAPE), tf.float32)])
        def forward(batch):
            return model(batch, training=False)

        self._forward = forward

    def embed(self, preprocessed: np.ndarray) -> np.ndarray:
        """float32 (n, 224, 224, 3) already through ``preprocess_input`` -> float32 (n, 1280)."""
        count = len(preprocessed)
        out = np.empty((count, EMBEDDING_SIZE), dtype=np.float32)
        for start in range(0, count, self.batch_size):
            chunk = preprocessed[start : start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                padded = np.zeros((self.batch_size, *INPUT_SHAPE), dtype=np.float32)
                padded[:n] = chunk
                chunk = padded
            out[start : start + n] = self._forward(chunk).numpy()[:n]
        return out
