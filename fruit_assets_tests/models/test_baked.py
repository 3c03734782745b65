"""A container image's baked model adopted by a data root that has none (models/baked.py), on real
files: the registry the onnx_model fixture converted stands in as the image's."""

import os
import shutil

from fruit_assets.models import registry as model_registry
from fruit_assets.models.baked import BAKED_MODELS_ENV, adopt
from fruit_assets.layout import DataLayout
from fruit_assets.models.build import build_embedding_model
from fruit_assets.storage import normalize_uri

SEED = 1234


def baked_root_of(onnx_model) -> str:
    return onnx_model.location.rsplit("/models/embedding/", 1)[0]


def test_a_data_root_without_a_model_adopts_the_baked_one_instead_of_converting(onnx_model, weights_file, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv(BAKED_MODELS_ENV, baked_root_of(onnx_model))
    layout = DataLayout.at(str(tmp_path / "data"))
    report = build_embedding_model(layout, weights_file, SEED, verify=False)
    assert report.adopted and not report.converted and not report.measured
    assert report.model.payload == onnx_model.payload
    assert report.model.location == layout.embedding_model(onnx_model.fingerprint)
    # Copied with its record and index entry: the data root no longer needs the image.
    monkeypatch.delenv(BAKED_MODELS_ENV)
    again = build_embedding_model(layout, weights_file, SEED, verify=False)
    assert not again.adopted and not again.converted and again.model.payload == onnx_model.payload


def test_other_weights_and_an_altered_baked_model_are_not_adopted(onnx_model, weights_file, tmp_path, monkeypatch):
    baked = tmp_path / "image"
    shutil.copytree(normalize_uri(baked_root_of(onnx_model)).removeprefix("file://"), baked)
    monkeypatch.setenv(BAKED_MODELS_ENV, str(baked))
    layout = DataLayout.at(str(tmp_path / "data"))
    key = model_registry.weights_key(weights_file, SEED)

    assert adopt(layout, model_registry.weights_key("random", SEED)) is None  # baked for other weights
    onnx_file = baked / "models" / "embedding" / f"{onnx_model.fingerprint}.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-16] + b"\0" * 16)  # not what its record hashed
    assert adopt(layout, key) is None
    assert model_registry.find(layout, key) is None and not os.path.exists(tmp_path / "data")

    monkeypatch.delenv(BAKED_MODELS_ENV)
    assert adopt(layout, key) is None  # outside an image there is nothing to adopt
