"""Which model a run uses, and building it: MobileNetV2 with the configured weights converted to
ONNX once per weights (or, for the TensorFlow engine, the weight arrays themselves)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

from fruit_assets.errors import ConfigurationError, WeightsChecksumError
from fruit_assets.featurize.engines import FP32, ONNXRUNTIME, TENSORFLOW, InferenceModel, check_engine, precision_of
from fruit_assets.layout import DataLayout
from fruit_assets.models import baked, fidelity, registry
from fruit_assets.models.parity import parity_images, require_parity

# What ``record`` holds: a ConvertedModel once ONNX is involved, None when the engine is TensorFlow itself.
_Record = TypeVar("_Record", bound="registry.ConvertedModel | None")


@dataclass
class ModelReport(Generic[_Record]):
    model: InferenceModel
    record: _Record
    converted: bool = False  # this call ran tf2onnx
    adopted: bool = False  # this call copied the container image's baked model in (models/baked.py)
    measured: bool = False  # this call measured parity against TensorFlow
    seconds: float = 0.0
    fidelity: fidelity.Fidelity | None = None  # a reduced precision's gate figures, admitted


def build_embedding_model(
    layout: DataLayout, weights_spec: str, random_seed: int, verify: bool = True
) -> ModelReport[registry.ConvertedModel]:
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
        return ModelReport(
            _onnx_model(layout, record, onnx_bytes), record, adopted=adopted, seconds=time.perf_counter() - started
        )
    record, onnx_bytes, converted = _convert_and_measure(layout, key, weights_spec, random_seed, record, onnx_bytes)
    return ModelReport(
        _onnx_model(layout, record, onnx_bytes),
        record,
        converted=converted,
        adopted=adopted and not converted,
        measured=True,
        seconds=time.perf_counter() - started,
    )


def _convert_and_measure(
    layout: DataLayout,
    key: str,
    weights_spec: str,
    random_seed: int,
    record: registry.ConvertedModel | None,
    onnx_bytes: bytes | None,
) -> tuple[registry.ConvertedModel, bytes, bool]:
    """Converts unless a stored model of these very weights exists, measures parity, records it."""
    from importlib.metadata import version

    from fruit_assets.featurize.model import resolve_weights
    from fruit_assets.featurize.onnx_model import ONNX_OPSET, convert_to_onnx, measure_parity

    weights = resolve_weights(weights_spec, random_seed)
    converted = record is None or onnx_bytes is None or record.fingerprint != weights.fingerprint
    if converted:
        onnx_bytes = convert_to_onnx(weights, ONNX_OPSET)
    assert onnx_bytes is not None  # no stored bytes means converted just now
    parity = measure_parity(weights, onnx_bytes, parity_images())
    record = registry.ConvertedModel(
        weights_key=key,
        fingerprint=weights.fingerprint,
        source=weights.source,
        sha256=registry.sha256(onnx_bytes),
        opset=record.opset if record and not converted else ONNX_OPSET,
        parity_max_abs=parity.max_abs,
        parity_max_rel=parity.max_rel,
        parity_images=parity.images,
        versions={name: version(name) for name in ("tensorflow-cpu", "tf2onnx", "onnxruntime", "keras")},
    )
    registry.save(layout, record, onnx_bytes if converted else None)
    return record, onnx_bytes, converted


def _onnx_model(layout: DataLayout, record: registry.ConvertedModel, onnx_bytes: bytes) -> InferenceModel:
    return InferenceModel(
        ONNXRUNTIME, record.fingerprint, record.source, onnx_bytes, layout.embedding_model(record.fingerprint)
    )


def inference_model(
    layout: DataLayout,
    engine: str,
    weights_spec: str,
    random_seed: int,
    limits: fidelity.FidelityLimits = fidelity.FidelityLimits(),
    sample_images: int = fidelity.DEFAULT_SAMPLE_IMAGES,
) -> ModelReport[registry.ConvertedModel] | ModelReport[None]:
    """What a run that embeds broadcasts: the converted model (converted now if this is the first
    run with these weights) or, for the TensorFlow engine, the weight arrays themselves. A reduced
    precision runs the converted model only once the fidelity gate has admitted it for this
    dataset; otherwise ``FidelityRefusedError`` says why, in one line naming fp32."""
    precision = precision_of(engine)
    engine = engine if precision != FP32 else check_engine(engine)
    if engine == TENSORFLOW:
        from fruit_assets.featurize.model import resolve_weights

        started = time.perf_counter()
        weights = resolve_weights(weights_spec, random_seed)
        return ModelReport(
            InferenceModel(TENSORFLOW, weights.fingerprint, weights.source, weights.arrays),
            None,
            seconds=time.perf_counter() - started,
        )
    if precision != FP32:
        from fruit_assets.featurize.openvino_model import require_native

        require_native(precision)  # before anything is converted or measured
    report = build_embedding_model(layout, weights_spec, random_seed, verify=False)
    require_parity(
        report.record,
        report.model.location,
        "re-materialize embedding_model after deleting it, or set FRUIT_INFERENCE_ENGINE=tensorflow",
    )
    if precision == FP32:
        return report
    started = time.perf_counter()
    gate = gated_precision(layout, report, precision, limits, sample_images)
    if not gate.admitted:
        raise gate.refused_error()
    model = report.model
    return ModelReport(
        InferenceModel(engine, model.fingerprint, model.source, model.payload, model.location),
        report.record,
        adopted=report.adopted,
        fidelity=gate,
        seconds=report.seconds + time.perf_counter() - started,
    )


def gated_precision(
    layout: DataLayout,
    report: ModelReport[registry.ConvertedModel],
    precision: str,
    limits: fidelity.FidelityLimits,
    sample_images: int = fidelity.DEFAULT_SAMPLE_IMAGES,
    remeasure: bool = False,
) -> fidelity.Fidelity:
    """The fidelity gate's figures for ``precision`` on this dataset, judged by ``limits``: measured
    now if never measured, if the dataset's classes are no longer those it was measured on, or if
    ``remeasure`` (embedding_model measures on every materialization); otherwise the stored figures."""
    fingerprint = report.model.fingerprint
    stored = None if remeasure else registry.find_fidelity(layout, fingerprint, precision)
    if stored is not None and stored_gate_holds(layout, stored, sample_images):
        return stored.judged_by(limits)
    measured = fidelity.measure(layout, report.model.payload, precision, limits, sample_images)
    registry.save_fidelity(layout, fingerprint, measured)
    return measured


def stored_gate_holds(
    layout: DataLayout, stored: fidelity.Fidelity, sample_images: int = fidelity.DEFAULT_SAMPLE_IMAGES
) -> bool:
    """Whether stored figures still describe this dataset and these kernels: the same classes, the
    same CPU and OpenVINO release."""
    return stored.measured_on == fidelity.measured_on() and set(stored.sample_classes) == set(
        fidelity.sample_classes_of(layout, sample_images)
    )


# The file keras.applications.MobileNetV2(include_top=False, weights="imagenet") downloads, named
# and fetched as it does: keras.utils.get_file then finds it in the same cache (KERAS_HOME/models).
IMAGENET_WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
IMAGENET_WEIGHTS_URL = (
    f"https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/{IMAGENET_WEIGHTS_FILE}"
)


def weights_file(weights_spec: str) -> str | None:
    """The file the weights are read from: the given weights file, or for imagenet Keras' cached
    download (fetched now if missing). None for random weights: made from the seed, no file."""
    from fruit_assets.featurize.model import WeightsUnavailableError, parse_weights_spec

    parsed = parse_weights_spec(weights_spec)
    if parsed.kind == "random":
        return None
    if parsed.kind == "file":
        return parsed.path
    import keras

    try:
        return keras.utils.get_file(IMAGENET_WEIGHTS_FILE, IMAGENET_WEIGHTS_URL, cache_subdir="models")
    except Exception as error:  # noqa: BLE001 - urllib, HTTP and file errors all end up here
        raise WeightsUnavailableError(
            f"could not download the MobileNetV2 ImageNet weights to check their SHA-256 "
            f"({type(error).__name__}: {error})"
        ) from error


def require_weights_sha256(weights_spec: str, expected: str) -> None:
    """Raises unless the weights file's SHA-256 is ``expected`` (nothing to check when it is empty);
    random weights, made from a seed, have no file a hash could name."""
    expected = expected.strip().lower()
    if not expected:
        return
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ConfigurationError(f"the expected weights SHA-256 must be 64 hex digits, not {expected!r}")
    path = weights_file(weights_spec)
    if path is None:
        raise ConfigurationError(
            "random weights are made from a seed, not read from a file: "
            "there is no SHA-256 to check (leave the expected hash empty)"
        )
    try:
        with open(path, "rb") as handle:
            actual = hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        raise WeightsChecksumError(f"{path}: no such file; expected SHA-256 {expected}") from None
    if actual != expected:
        raise WeightsChecksumError(
            f"{path}: SHA-256 {actual}, expected {expected}; not baking weights other than the ones named"
        )


def bake(weights_spec: str, random_seed: int, into: str, weights_sha256: str = "") -> registry.ConvertedModel:
    """Converts the weights into the registry at ``into`` (a container image's FRUIT_BAKED_MODELS)
    and measures parity; a model that fails parity fails the image build rather than a run in
    production. With ``weights_sha256`` the weights file must have that SHA-256 before anything
    is converted (production builds name it; empty: not checked)."""
    require_weights_sha256(weights_spec, weights_sha256)
    report = build_embedding_model(DataLayout.at(into), weights_spec, random_seed, verify=True)
    require_parity(report.record, report.model.location, "not baking it")
    return report.record
