"""MobileNetV2 through ONNX Runtime: conversion (driver, once per weights), inference (workers).

Keras stays the definition of the network and the source of the weights; ``tf2onnx`` turns the same
weights into an ONNX graph with a dynamic batch dimension, and ONNX Runtime runs it about 2x faster
than TensorFlow on the CPUs measured (benchmarks/README.md). Only ``convert_to_onnx`` and
``measure_parity`` import TensorFlow; ``OnnxEmbedder`` needs nothing but onnxruntime and numpy, so
Spark workers on this engine never load TensorFlow (a second of import and ~1 GB per worker).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from fruit_assets.featurize.model import EMBEDDING_SIZE, INPUT_SHAPE, ModelWeights

ONNX_OPSET = 17
INPUT_NAME = "images"
# The asset check's limit on the relative L2 error per image, the measure the reference tests use:
# ONNX Runtime and TensorFlow agree to ~4e-5 (different kernels, different summation order); a
# wrong conversion or a damaged file is off by orders of magnitude more.
PARITY_TOLERANCE = 1e-4


def within_parity(max_rel: float) -> bool:
    """The parity rule, the one place it is written: the asset check, a run that embeds and an
    image build all ask this."""
    return bool(np.isfinite(max_rel) and max_rel <= PARITY_TOLERANCE)


@dataclass(frozen=True)
class Parity:
    """How far ONNX Runtime's embeddings are from TensorFlow's on the same preprocessed images."""

    max_abs: float
    max_rel: float  # max over images of ||onnx - tf|| / ||tf|| (L2 over the 1280 features)
    images: int

    @property
    def ok(self) -> bool:
        return within_parity(self.max_rel)


def convert_to_onnx(weights: ModelWeights, opset: int = ONNX_OPSET) -> bytes:
    """Keras MobileNetV2 with ``weights`` -> serialized ONNX model, input ``images`` (None, 224, 224, 3)."""
    import tensorflow as tf
    import tf2onnx

    from fruit_assets.featurize.model import build_mobilenet_v2

    model = build_mobilenet_v2(weights=None)
    model.set_weights(weights.arrays)
    signature = (tf.TensorSpec((None, *INPUT_SHAPE), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    return proto.SerializeToString()


def measure_parity(weights: ModelWeights, onnx_bytes: bytes, preprocessed: np.ndarray) -> Parity:
    from fruit_assets.featurize.model import Embedder

    expected = Embedder(weights, batch_size=len(preprocessed)).embed(preprocessed)
    try:
        got = OnnxEmbedder(onnx_bytes, threads=0).embed(preprocessed)
    except Exception:  # noqa: BLE001 - an unloadable or misshapen model simply has no parity
        return Parity(float("inf"), float("inf"), len(preprocessed))
    if got.shape != expected.shape:
        return Parity(float("inf"), float("inf"), len(preprocessed))
    difference = got.astype(np.float64) - expected
    relative = np.linalg.norm(difference, axis=1) / np.maximum(np.linalg.norm(expected, axis=1), 1e-30)
    return Parity(float(np.abs(difference).max()), float(relative.max()), len(preprocessed))


class OnnxEmbedder:
    """One ONNX Runtime session; ``threads`` intra-op threads (0: ONNX Runtime's default, all cores)."""

    def __init__(self, onnx_bytes: bytes, threads: int = 1, batch_size: int = 8):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = int(threads)
        # Idle intra-op threads would spin and steal the core from this task's image decoding.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.batch_size = batch_size

    def embed(self, preprocessed: np.ndarray) -> np.ndarray:
        """float32 (n, 224, 224, 3) already preprocessed -> float32 (n, 1280); the batch dimension
        is dynamic, so a short last batch is run as it is, not padded."""
        out = np.empty((len(preprocessed), EMBEDDING_SIZE), dtype=np.float32)
        for start in range(0, len(preprocessed), self.batch_size):
            chunk = np.ascontiguousarray(preprocessed[start : start + self.batch_size], dtype=np.float32)
            # The model's one output is a dense tensor; run() is typed for any ONNX value (sparse, maps...).
            out[start : start + len(chunk)] = cast(np.ndarray, self.session.run(None, {self.input_name: chunk})[0])
        return out
