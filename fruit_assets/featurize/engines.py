"""The inference engines and the one embedder each Python worker keeps. No Dagster, no Spark.

``onnxruntime`` (the default) runs the converted MobileNetV2 in fp32; ``tensorflow`` (the reference)
runs the Keras network itself; ``openvino-bf16`` runs the same converted model in bfloat16, the
reduced precision (``FRUIT_INFERENCE_PRECISION=bf16``), admitted per dataset by a fidelity gate
(models/fidelity.py). Either way the driver hands the workers an ``InferenceModel``: what to run
(ONNX bytes or weight arrays) plus the (engine, weights fingerprint) pair every output is keyed by.
The engine name carries the precision, so switching precision re-embeds like switching weights.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from fruit_assets.errors import ConfigurationError

ONNXRUNTIME = "onnxruntime"
TENSORFLOW = "tensorflow"
OPENVINO_BF16 = "openvino-bf16"
ENGINES = (ONNXRUNTIME, TENSORFLOW)  # the fp32 engines FRUIT_INFERENCE_ENGINE chooses between
FP32 = "fp32"
BF16 = "bf16"
PRECISIONS = (FP32, BF16)
# The engine each reduced precision runs on, chosen by measurement (docs/architecture.md).
REDUCED_ENGINES = {BF16: OPENVINO_BF16}


def default_batch_size(engine: str) -> int:
    """ONNX Runtime on a CPU: batches of 8 run as fast as 32 and need half the memory (MobileNetV2's
    early activations are ~5 MB per image); TensorFlow's graph calls have more fixed cost per call."""
    return 32 if engine == TENSORFLOW else 8


def check_precision(precision: str) -> str:
    name = (precision or FP32).strip().lower()
    if name not in PRECISIONS:
        raise ConfigurationError(
            f"FRUIT_INFERENCE_PRECISION={precision!r} is not a precision: use one of {', '.join(PRECISIONS)}"
        )
    return name


def engine_for(engine: str, precision: str) -> str:
    """The engine that runs the configured (engine, precision): fp32 on the chosen engine, a
    reduced precision on the engine measured for it."""
    engine, precision = check_engine(engine), check_precision(precision)
    if precision == FP32:
        return engine
    if engine != ONNXRUNTIME:
        raise ConfigurationError(
            f"FRUIT_INFERENCE_PRECISION={precision} runs the converted model: it needs "
            f"FRUIT_INFERENCE_ENGINE=onnxruntime (the default), not {engine}"
        )
    return REDUCED_ENGINES[precision]


def precision_of(engine: str) -> str:
    return next((precision for precision, name in REDUCED_ENGINES.items() if name == engine), FP32)


def check_engine(engine: str) -> str:
    name = (engine or ONNXRUNTIME).strip().lower()
    if name not in ENGINES:
        raise ConfigurationError(
            f"FRUIT_INFERENCE_ENGINE={engine!r} is not an inference engine: use one of {', '.join(ENGINES)}"
        )
    return name


@dataclass(frozen=True)
class InferenceModel:
    engine: str
    fingerprint: str  # of the weights: the same for both engines, so outputs are comparable
    source: str  # "imagenet", "random(seed=...)", a weights file
    payload: Any  # ONNX bytes (onnxruntime) or list of weight arrays (tensorflow): what is broadcast
    location: str = ""  # where the converted model lives, for metadata


_EMBEDDERS: dict[tuple, Any] = {}
_EMBEDDERS_LOCK = threading.Lock()


def cached_embedder(engine: str, fingerprint: str, load_payload, batch_size: int = 32, threads: int = 1):
    """One network per process: Spark reuses Python workers across tasks and jobs, so the model is
    built once per worker, not once per task or batch. ``load_payload`` is only called on a miss
    (reading a broadcast value costs a deserialisation)."""
    key = (engine, fingerprint, batch_size, threads)
    with _EMBEDDERS_LOCK:
        embedder = _EMBEDDERS.get(key)
        if embedder is None:
            _EMBEDDERS.clear()  # one model in memory at a time
            embedder = _build(engine, fingerprint, load_payload(), batch_size, threads)
            _EMBEDDERS[key] = embedder
        return embedder


def _build(engine: str, fingerprint: str, payload, batch_size: int, threads: int):
    if engine == ONNXRUNTIME:
        from fruit_assets.featurize.onnx_model import OnnxEmbedder

        return OnnxEmbedder(payload, threads=threads, batch_size=batch_size)
    if engine == OPENVINO_BF16:
        from fruit_assets.featurize.openvino_model import OpenVinoEmbedder

        return OpenVinoEmbedder(payload, BF16, threads=threads, batch_size=batch_size)
    from fruit_assets.featurize.model import Embedder, ModelWeights, configure_tensorflow_threads

    configure_tensorflow_threads(threads, 1)
    return Embedder(ModelWeights(payload, "broadcast", fingerprint), batch_size)
