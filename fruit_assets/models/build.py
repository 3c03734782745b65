"""Which model a run uses, and building it: MobileNetV2 with the configured weights converted to
ONNX once per weights (or, for the TensorFlow engine, the weight arrays themselves)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from fruit_assets.featurize.engines import ONNXRUNTIME, TENSORFLOW, InferenceModel, check_engine
from fruit_assets.layout import DataLayout
from fruit_assets.models import baked, registry
from fruit_assets.models.parity import parity_images, require_parity


@dataclass
class ModelReport:
    model: InferenceModel
    record: registry.ConvertedModel | None  # None when the engine is TensorFlow itself
    converted: bool = False  # this call ran tf2onnx
    adopted: bool = False  # this call copied the container image's baked model in (models/baked.py)
    measured: bool = False  # this call measured parity against TensorFlow
    seconds: float = 0.0


def build_embedding_model(layout: DataLayout, weights_spec: str, random_seed: int, verify: bool = True) -> ModelReport:
    """The ONNX model for the weights ``weights_spec`` names, converted once per weights.

    A stored model whose hash matches its record is reused; with ``verify`` its parity with
    TensorFlow is measured again on the stored bytes (what the asset check reports), otherwise the
    recorded parity stands and TensorFlow is not even imported."""
    started = time.perf_counter()
    key = registry.weights_key(weights_spec, random_seed)
    record = registry.find(layout, key)
    adopted = False
    if record is None:  # a container image may carry one for these weights (models/baked.py)
        record = baked.adopt(layout, key)
        adopted = record is not None
    onnx_bytes = registry.read_model(layout, record) if record else None
    if record is not None and onnx_bytes is not None and not verify:
        return ModelReport(_onnx_model(layout, record, onnx_bytes), record, adopted=adopted,
                           seconds=time.perf_counter() - started)
    record, onnx_bytes, converted = _convert_and_measure(layout, key, weights_spec, random_seed, record, onnx_bytes)
    return ModelReport(_onnx_model(layout, record, onnx_bytes), record, converted=converted,
                       adopted=adopted and not converted, measured=True, seconds=time.perf_counter() - started)


def _convert_and_measure(layout: DataLayout, key: str, weights_spec: str, random_seed: int,
                         record: registry.ConvertedModel | None, onnx_bytes: bytes | None):
    """Converts unless a stored model of these very weights exists, measures parity, records it."""
    from importlib.metadata import version

    from fruit_assets.featurize.model import resolve_weights
    from fruit_assets.featurize.onnx_model import ONNX_OPSET, convert_to_onnx, measure_parity

    weights = resolve_weights(weights_spec, random_seed)
    converted = record is None or onnx_bytes is None or record.fingerprint != weights.fingerprint
    if converted:
        onnx_bytes = convert_to_onnx(weights, ONNX_OPSET)
    parity = measure_parity(weights, onnx_bytes, parity_images())
    record = registry.ConvertedModel(
        weights_key=key, fingerprint=weights.fingerprint, source=weights.source,
        sha256=registry.sha256(onnx_bytes), opset=record.opset if record and not converted else ONNX_OPSET,
        parity_max_abs=parity.max_abs, parity_max_rel=parity.max_rel, parity_images=parity.images,
        versions={name: version(name) for name in ("tensorflow-cpu", "tf2onnx", "onnxruntime", "keras")},
    )
    registry.save(layout, record, onnx_bytes if converted else None)
    return record, onnx_bytes, converted


def _onnx_model(layout: DataLayout, record: registry.ConvertedModel, onnx_bytes: bytes) -> InferenceModel:
    return InferenceModel(ONNXRUNTIME, record.fingerprint, record.source, onnx_bytes,
                          layout.embedding_model(record.fingerprint))


def inference_model(layout: DataLayout, engine: str, weights_spec: str, random_seed: int) -> ModelReport:
    """What a run that embeds broadcasts: the converted model (converted now if this is the first
    run with these weights) or, for the TensorFlow engine, the weight arrays themselves."""
    engine = check_engine(engine)
    if engine == TENSORFLOW:
        from fruit_assets.featurize.model import resolve_weights

        started = time.perf_counter()
        weights = resolve_weights(weights_spec, random_seed)
        return ModelReport(InferenceModel(TENSORFLOW, weights.fingerprint, weights.source, weights.arrays),
                           None, seconds=time.perf_counter() - started)
    report = build_embedding_model(layout, weights_spec, random_seed, verify=False)
    require_parity(report.record, report.model.location,
                   "re-materialize embedding_model after deleting it, or set FRUIT_INFERENCE_ENGINE=tensorflow")
    return report


def bake(weights_spec: str, random_seed: int, into: str) -> registry.ConvertedModel:
    """Converts the weights into the registry at ``into`` (a container image's FRUIT_BAKED_MODELS)
    and measures parity; a model that fails parity fails the image build rather than a run in
    production."""
    report = build_embedding_model(DataLayout.at(into), weights_spec, random_seed, verify=True)
    require_parity(report.record, report.model.location, "not baking it")
    return report.record
