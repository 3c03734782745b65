"""Converted models: once per weights, found from the setting alone, refused when they drift."""

import hashlib
import json
import shutil

import pytest

from fruit_assets.models import registry as model_registry
from fruit_assets.layout import DataLayout
from fruit_assets.models.build import build_embedding_model, inference_model
from fruit_assets.models.parity import ModelParityError
from fruit_assets_tests.featurize.test_onnx_model import perturbed


@pytest.fixture
def layout(tmp_path, onnx_model):
    """A root whose models/embedding/ already holds the conversion of the test weights file."""
    layout = DataLayout.at(str(tmp_path / "root"))
    source = DataLayout.at(onnx_model.location.rsplit("/models/", 1)[0])
    shutil.copytree(source.embedding_models[len("file://"):], layout.embedding_models[len("file://"):])
    return layout


def test_conversion_is_reused_for_the_same_weights_content(layout, weights_file, onnx_model, tmp_path):
    again = build_embedding_model(layout, weights_file, 1234, verify=False)
    assert not again.converted and not again.measured
    assert again.model.payload == onnx_model.payload and again.model.fingerprint == onnx_model.fingerprint
    # The key is the file's content: the same weights under another name need no conversion.
    copy = tmp_path / "elsewhere.weights.h5"
    shutil.copy(weights_file, copy)
    assert model_registry.weights_key(str(copy), 1234) == model_registry.weights_key(weights_file, 1234)
    assert not build_embedding_model(layout, str(copy), 1234, verify=False).converted
    files = sorted(p.name for p in (tmp_path / "root" / "models" / "embedding").iterdir())
    assert files == [f"{onnx_model.fingerprint}.json", f"{onnx_model.fingerprint}.onnx", "weights-index.json"]
    record = json.loads((tmp_path / "root" / "models" / "embedding" / f"{onnx_model.fingerprint}.json").read_text())
    assert record["opset"] == 17 and record["parity_max_rel"] < 1e-4 and record["source"] == weights_file


def test_a_damaged_file_is_converted_again(layout, weights_file, onnx_model):
    path = layout.embedding_model(onnx_model.fingerprint)[len("file://"):]
    with open(path, "r+b") as handle:
        handle.truncate(1000)
    report = inference_model(layout, "onnxruntime", weights_file, 1234)
    assert report.converted and report.record.parity_max_rel < 1e-4
    # tf2onnx output is not byte-for-byte reproducible (generated names): the record follows the file.
    assert report.record.sha256 == hashlib.sha256(report.model.payload).hexdigest()
    assert model_registry.read_model(layout, report.record) == report.model.payload


def test_a_model_that_drifts_from_tensorflow_fails_parity_and_is_refused(layout, weights_file, onnx_model):
    """A model file that still loads but computes something else (its record's hash made to match,
    as a faulty converter would leave it): re-measured parity fails, and no run embeds with it."""
    fingerprint = onnx_model.fingerprint
    bad = perturbed(onnx_model.payload)
    with open(layout.embedding_model(fingerprint)[len("file://"):], "wb") as handle:
        handle.write(bad)
    record_path = layout.embedding_model_record(fingerprint)[len("file://"):]
    record = json.loads(open(record_path).read())
    record["sha256"] = hashlib.sha256(bad).hexdigest()
    open(record_path, "w").write(json.dumps(record))

    measured = build_embedding_model(layout, weights_file, 1234, verify=True)
    assert measured.measured and not measured.converted and measured.record.parity_max_rel > 1e-2
    with pytest.raises(ModelParityError, match="FRUIT_INFERENCE_ENGINE=tensorflow"):
        inference_model(layout, "onnxruntime", weights_file, 1234)
    # The reference engine does not need the converted model at all.
    assert inference_model(layout, "tensorflow", weights_file, 1234).model.engine == "tensorflow"


def test_unknown_engine_is_a_one_line_configuration_error(layout, weights_file):
    from fruit_assets.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="onnxruntime, tensorflow"):
        inference_model(layout, "tensorrt", weights_file, 1234)
