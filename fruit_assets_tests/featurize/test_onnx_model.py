"""The ONNX Runtime engine: same embeddings as TensorFlow, dynamic batches, no TensorFlow on workers."""

import subprocess
import sys

import numpy as np
import pytest

from fruit_assets.featurize.images import preprocess_batch
from fruit_assets.featurize.model import Embedder
from fruit_assets.featurize.onnx_model import OnnxEmbedder, measure_parity
from fruit_assets.featurize.synthetic import synthetic_images


def perturbed(onnx_bytes: bytes, scale: float = 1.5) -> bytes:
    """A model that loads and runs but computes something else: one conv kernel scaled, as a
    faulty converter or a damaged copy that still parses would."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    initializer = max(model.graph.initializer, key=lambda t: np.prod(t.dims) if len(t.dims) == 4 else 0)
    initializer.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(initializer) * scale, initializer.name))
    return model.SerializeToString()


@pytest.fixture(scope="module")
def images():
    return preprocess_batch(synthetic_images(35, seed=21))


def test_onnx_equals_tensorflow_for_any_batch_length(onnx_model, model_weights, images):
    expected = Embedder(model_weights, batch_size=32).embed(images)
    embedder = OnnxEmbedder(onnx_model.payload, threads=1, batch_size=32)  # 35 images: 32 + a short batch of 3
    got = embedder.embed(images)
    assert got.shape == (35, 1280) and got.dtype == np.float32
    relative = np.linalg.norm(got - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert relative.max() < 1e-4
    single = embedder.embed(images[:1])
    np.testing.assert_allclose(single[0], got[0], rtol=1e-5, atol=1e-6)
    [batch_input] = embedder.session.get_inputs()
    assert batch_input.shape[0] in (None, "unk__0") or isinstance(batch_input.shape[0], str)  # dynamic


def test_parity_is_tiny_for_the_conversion_and_fails_for_a_corrupted_model(onnx_model, model_weights, images):
    good = measure_parity(model_weights, onnx_model.payload, images[:8])
    assert good.ok and good.max_rel < 1e-4 and good.max_abs < 1e-3
    damaged = measure_parity(model_weights, perturbed(onnx_model.payload), images[:8])
    assert not damaged.ok and damaged.max_rel > 1e-2
    garbage = measure_parity(model_weights, b"not an onnx model", images[:8])
    assert not garbage.ok and garbage.max_rel == float("inf")


def test_onnx_worker_path_never_imports_tensorflow(onnx_model, tmp_path):
    """What a Spark task runs, in a fresh interpreter: embed_partition with the ONNX engine."""
    from fruit_assets.cli.sample import write_sample_dataset

    write_sample_dataset(str(tmp_path / "data"), 1, 3, seed=1)
    model_file = tmp_path / "model.onnx"
    model_file.write_bytes(onnx_model.payload)
    script = f"""
import glob, sys
from fruit_assets.spark_jobs.embed import EmbedSettings, embed_partition
paths = sorted(glob.glob({str(tmp_path / 'data' / 'Training' / '*' / '*.jpg')!r}))
rows = [("file://" + p, "C", "e") for p in paths]
out = list(embed_partition(0, rows, "onnxruntime", "fp", lambda: open({str(model_file)!r}, "rb").read(),
                           "file://{tmp_path}/staging", EmbedSettings(batch_size=2), "t"))
assert out[0][1] == "embeddings" and out[0][3] == 3, out
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "dagster"))
print("HEAVY", heavy)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "HEAVY []" in done.stdout, done.stdout
