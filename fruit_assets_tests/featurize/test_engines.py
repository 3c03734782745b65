"""The engine setting, and the one embedder a Python worker keeps (built from a real model)."""

import numpy as np
import pytest

from fruit_assets.errors import ConfigurationError
from fruit_assets.featurize.engines import (
    ONNXRUNTIME,
    TENSORFLOW,
    cached_embedder,
    check_engine,
    default_batch_size,
)
from fruit_assets.featurize.images import preprocess_batch
from fruit_assets.featurize.synthetic import synthetic_images


@pytest.mark.parametrize("given, engine", [
    (" ONNXRuntime ", "onnxruntime"), ("onnxruntime", "onnxruntime"), ("TensorFlow\n", "tensorflow"),
    ("", "onnxruntime"), (None, "onnxruntime"),
])
def test_check_engine_normalises_the_name(given, engine):
    assert check_engine(given) == engine


def test_an_unknown_engine_is_a_configuration_error_naming_the_setting_and_the_choices():
    with pytest.raises(ConfigurationError) as raised:
        check_engine("pytorch")
    message = str(raised.value)
    assert "FRUIT_INFERENCE_ENGINE='pytorch'" in message and "onnxruntime" in message and "tensorflow" in message
    assert isinstance(raised.value, ValueError)


def test_default_batch_sizes():
    assert default_batch_size(ONNXRUNTIME) == 8
    assert default_batch_size(TENSORFLOW) == 32


class CountingLoader:
    def __init__(self, payload):
        self.payload, self.calls = payload, 0

    def __call__(self):
        self.calls += 1
        return self.payload


@pytest.fixture(scope="module")
def images():
    return preprocess_batch(synthetic_images(3, seed=5))


def test_the_embedder_is_built_once_per_key_and_loads_its_payload_only_on_a_miss(onnx_model, images):
    load = CountingLoader(onnx_model.payload)
    first = cached_embedder(ONNXRUNTIME, "test-engines-a", load, batch_size=2)
    assert load.calls == 1
    assert cached_embedder(ONNXRUNTIME, "test-engines-a", load, batch_size=2) is first
    assert load.calls == 1

    vectors = first.embed(images)
    assert vectors.shape == (3, 1280) and vectors.dtype == np.float32 and np.isfinite(vectors).all()

    other = cached_embedder(ONNXRUNTIME, "test-engines-b", load, batch_size=2)
    assert other is not first and load.calls == 2
    assert cached_embedder(ONNXRUNTIME, "test-engines-a", load, batch_size=2) is not first  # evicted
    assert load.calls == 3
    cached_embedder(ONNXRUNTIME, "test-engines-a", load, batch_size=3)  # another batch size: another key
    assert load.calls == 4


def test_both_engines_embed_the_same_way(onnx_model, tensorflow_model, images):
    onnx = cached_embedder(ONNXRUNTIME, onnx_model.fingerprint, lambda: onnx_model.payload, batch_size=2)
    onnx_vectors = onnx.embed(images)
    tensorflow = cached_embedder(TENSORFLOW, tensorflow_model.fingerprint, lambda: tensorflow_model.payload,
                                 batch_size=2)
    tensorflow_vectors = tensorflow.embed(images)
    assert tensorflow_vectors.shape == (3, 1280) and tensorflow_vectors.dtype == np.float32
    relative = np.linalg.norm(onnx_vectors - tensorflow_vectors, axis=1) / np.linalg.norm(tensorflow_vectors, axis=1)
    assert relative.max() < 1e-4
