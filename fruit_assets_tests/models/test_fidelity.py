"""The fidelity gate: figures on known vectors, on a dataset's own images, a damaged reduced model
refused, the real trained backbone judged, and the gate wired into the model a run embeds with."""

import os
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from fruit_assets.featurize.engines import OPENVINO_BF16
from fruit_assets.layout import DataLayout
from fruit_assets.models import registry
from fruit_assets.models.build import build_embedding_model, inference_model
from fruit_assets.models.fidelity import (
    FidelityLimits,
    FidelityRefusedError,
    compare,
    draw_sample,
    measure,
    sample_digest,
)
from fruit_assets_tests.conftest import SAMPLE_CLASSES, SAMPLE_IMAGES, requires_native_bf16
from fruit_assets_tests.harness import REPO


def clustered(rng, classes=4, per_class=20, dim=64, spread=0.3):
    centres = rng.normal(0, 1, (classes, dim))
    vectors = np.concatenate([centre + rng.normal(0, spread, (per_class, dim)) for centre in centres])
    labels = [f"class {c}" for c in range(classes) for _ in range(per_class)]
    return vectors, labels


def test_identical_embeddings_pass_with_exact_figures():
    vectors, labels = clustered(np.random.default_rng(0))
    fidelity = compare(vectors, vectors.copy(), labels, "bf16", FidelityLimits())
    assert fidelity.median_relative_l2 == 0 and fidelity.p99_relative_l2 == 0
    assert fidelity.min_cosine == pytest.approx(1.0) and fidelity.nearest_neighbour_agreement == 1.0
    assert fidelity.knn_accuracy_fp32 == fidelity.knn_accuracy_reduced == 1.0 and fidelity.accuracy_drop == 0
    assert fidelity.admitted and fidelity.refusal is None
    assert fidelity.images == 80 and fidelity.classes == 4


def test_each_limit_refuses_on_its_own_and_the_error_names_fp32():
    rng = np.random.default_rng(1)
    vectors, labels = clustered(rng, spread=0.8)
    # Vectors moved a third of their length in random directions: classes blur, vectors far off.
    moved = vectors + rng.normal(0, 1, vectors.shape) * np.linalg.norm(vectors, axis=1, keepdims=True) / np.sqrt(64) * 1.2
    fidelity = compare(vectors, moved, labels, "bf16", FidelityLimits())
    assert fidelity.accuracy_drop > 0.01 and fidelity.median_relative_l2 > 0.25
    assert "kNN class accuracy" in fidelity.refusal and "median relative L2" in fidelity.refusal
    message = str(fidelity.refused_error())
    assert "\n" not in message and "FRUIT_INFERENCE_PRECISION=fp32" in message and "bf16 refused" in message
    # The same figures under looser limits: admitted without measuring again.
    assert fidelity.judged_by(FidelityLimits(max_accuracy_drop=1.0, max_median_relative_l2=10)).admitted
    # Only the displacement limit crossed: a uniform scaling keeps every neighbour and class.
    scaled = compare(vectors, vectors * 1.3, labels, "bf16", FidelityLimits())
    assert scaled.accuracy_drop == 0 and scaled.nearest_neighbour_agreement == 1.0
    assert scaled.refusal == "median relative L2 0.300 > 0.25"
    # Only the accuracy limit crossed: two classes swapped labels' geometry for a few images.
    swapped = vectors.copy()
    swapped[:6] = vectors[20:26]
    accuracy_only = compare(vectors, swapped, labels, "bf16", FidelityLimits(max_median_relative_l2=100))
    assert accuracy_only.accuracy_drop > 0.01 and accuracy_only.refusal.startswith("kNN class accuracy")


def test_accuracy_is_not_judged_when_no_two_classes_have_two_images():
    vectors, labels = clustered(np.random.default_rng(2), classes=3, per_class=1)
    fidelity = compare(vectors, vectors, labels, "bf16", FidelityLimits())
    assert fidelity.knn_accuracy_fp32 is None and fidelity.accuracy_drop is None and fidelity.admitted
    assert "not measured" in fidelity.summary()


def test_limits_are_parsed_from_settings_and_bad_ones_named():
    assert FidelityLimits.parse("0.02", "0.3") == FidelityLimits(0.02, 0.3)
    with pytest.raises(ValueError, match="FRUIT_PRECISION_MAX_ACCURACY_DROP"):
        FidelityLimits.parse("a lot", "0.3")
    with pytest.raises(ValueError, match="FRUIT_PRECISION_MAX_MEDIAN_RELATIVE_L2"):
        FidelityLimits.parse("0.01", "-1")


def test_the_sample_spreads_over_every_class_and_is_the_same_each_time(sample_root):
    layout = DataLayout.at(sample_root)
    sample = draw_sample(layout, images=9)
    assert len(sample) == 9 and {image.fruit_class for image in sample} == set(os.listdir(layout.training[7:]))
    assert sample_digest(draw_sample(layout, images=9)) == sample_digest(sample)
    assert len(draw_sample(layout, images=1000)) == SAMPLE_CLASSES * SAMPLE_IMAGES  # all there is


def damaged(onnx_bytes: bytes, seed: int = 0) -> bytes:
    """The model with noise the size of its weights added to its larger convolutions: a reduced
    model a broken conversion could produce."""
    model = onnx.load_from_string(onnx_bytes)
    rng = np.random.default_rng(seed)
    for initializer in model.graph.initializer:
        weights = numpy_helper.to_array(initializer)
        if weights.ndim == 4 and weights.size > 20000:
            noisy = weights + rng.normal(0, 1.5 * weights.std(), weights.shape).astype(weights.dtype)
            initializer.CopyFrom(numpy_helper.from_array(noisy, initializer.name))
    return model.SerializeToString()


@requires_native_bf16
def test_a_damaged_reduced_model_is_refused(sample_root, onnx_model):
    layout = DataLayout.at(sample_root)
    fidelity = measure(layout, onnx_model.payload, "bf16", FidelityLimits(),
                       reduced_onnx_bytes=damaged(onnx_model.payload))
    assert fidelity.images == SAMPLE_CLASSES * SAMPLE_IMAGES and fidelity.classes == SAMPLE_CLASSES
    assert not fidelity.admitted, fidelity.summary()
    assert fidelity.median_relative_l2 > 0.25 and fidelity.min_cosine < 0.9
    # The undamaged model in bf16 on the same images: what rounding alone does to random weights.
    honest = measure(layout, onnx_model.payload, "bf16", FidelityLimits())
    assert 0.01 < honest.median_relative_l2 < fidelity.median_relative_l2
    assert honest.sample_digest == fidelity.sample_digest


@requires_native_bf16
def test_the_trained_backbone_in_bf16_is_judged_by_its_figures(sample_root, trained_weights_file, tmp_path):
    layout = DataLayout.at(sample_root)
    report = build_embedding_model(layout, trained_weights_file, 1234)
    fidelity = measure(layout, report.model.payload, "bf16", FidelityLimits())
    # bf16 moves a trained MobileNetV2's vectors by ~10% and keeps its classes apart.
    assert 0.01 < fidelity.median_relative_l2 < 0.2 and fidelity.min_cosine > 0.9
    assert fidelity.knn_accuracy_fp32 is not None and fidelity.admitted, fidelity.summary()


@requires_native_bf16
def test_a_refusal_fails_the_model_in_one_line_naming_fp32_and_the_verdict_follows_the_figures(sample_root, weights_file):
    # Whether random weights lose kNN accuracy in bf16 depends on the CPU's bf16 kernels (AMX and
    # AVX512_BF16 round differently): the gate is judged here on what it must do with any figures.
    layout = DataLayout.at(sample_root)
    with pytest.raises(FidelityRefusedError, match=r"bf16 refused for this dataset: median relative L2 .* > 0.005.*FRUIT_INFERENCE_PRECISION=fp32") as refused:
        inference_model(layout, OPENVINO_BF16, weights_file, 1234, FidelityLimits(max_median_relative_l2=0.005))
    assert "\n" not in str(refused.value)
    stored = registry.find_fidelity(layout, build_embedding_model(layout, weights_file, 1234).model.fingerprint, "bf16")
    assert stored is not None and stored.median_relative_l2 > 0.005 and not stored.admitted
    # Under the default limits the stored figures decide, whichever way they fall on this CPU.
    expected = stored.judged_by(FidelityLimits())
    if expected.admitted:
        assert inference_model(layout, OPENVINO_BF16, weights_file, 1234).fidelity == expected
    else:
        with pytest.raises(FidelityRefusedError, match=re.escape(expected.refusal)):
            inference_model(layout, OPENVINO_BF16, weights_file, 1234)


@requires_native_bf16
def test_a_run_embeds_in_bf16_only_once_the_gate_admits_it_for_this_dataset(sample_root, trained_weights_file):
    layout = DataLayout.at(sample_root)
    weights_file = trained_weights_file
    report = inference_model(layout, OPENVINO_BF16, weights_file, 1234)
    assert report.model.engine == OPENVINO_BF16 and report.fidelity.admitted
    stored = registry.find_fidelity(layout, report.model.fingerprint, "bf16")
    assert stored == report.fidelity
    # Stricter limits: the stored figures are judged again, nothing measured, the run refused.
    with pytest.raises(FidelityRefusedError, match=r"bf16 refused for this dataset: median relative L2 .* > 0.001.*fp32"):
        inference_model(layout, OPENVINO_BF16, weights_file, 1234, FidelityLimits(max_median_relative_l2=0.001))
    # A new class: the dataset is no longer the one measured, so the gate measures again.
    os.makedirs(os.path.join(layout.training[7:], "Kiwi"))
    with open(os.path.join(layout.training[7:], "Banana", os.listdir(os.path.join(layout.training[7:], "Banana"))[0]), "rb") as handle:
        image = handle.read()
    for index in range(3):
        with open(os.path.join(layout.training[7:], "Kiwi", f"kiwi_{index}.jpg"), "wb") as handle:
            handle.write(image)
    again = inference_model(layout, OPENVINO_BF16, weights_file, 1234)
    assert "Kiwi" in again.fidelity.sample_classes and again.fidelity.sample_digest != stored.sample_digest


def test_a_cpu_without_native_bf16_gets_one_line_not_an_emulated_run(sample_root, weights_file):
    # OpenVINO's CPU plugin limited to AVX-512 without BF16 (Skylake's instruction set): what a
    # run sees on such an instance type. Compiled with a bf16 hint it would still run, emulated.
    script = ("import sys\nfrom fruit_assets.layout import DataLayout\nfrom fruit_assets.models.build import inference_model\n"
              "from fruit_assets.errors import user_facing_message\n"
              f"try:\n    inference_model(DataLayout.at({sample_root!r}), 'openvino-bf16', {weights_file!r}, 1234)\n"
              "except Exception as error:\n    print(user_facing_message(error)); sys.exit(3)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OV_CPU_MAX_ISA": "AVX512_CORE"})
    assert result.returncode == 3, result.stderr[-2000:]
    [line] = result.stdout.strip().splitlines()
    assert "has no native bf16" in line and "FRUIT_INFERENCE_PRECISION=fp32" in line
