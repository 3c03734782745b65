"""The weights' SHA-256 checked when a container image bakes its model (models/build.py, bake), on
a real weights file: the right hash bakes, any other refuses before anything is converted."""

import hashlib
import os
import subprocess
import sys

import pytest

from fruit_assets.errors import ConfigurationError, WeightsChecksumError
from fruit_assets.layout import DataLayout
from fruit_assets.models import registry as model_registry
from fruit_assets.models.build import IMAGENET_WEIGHTS_FILE, bake

SEED = 1234
CLI = os.path.join(os.path.dirname(sys.executable), "fruit-assets")


def sha256_of(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_weights_with_the_expected_sha256_bake(weights_file, tmp_path):
    into = str(tmp_path / "baked")
    record = bake(weights_file, SEED, into, sha256_of(weights_file).upper())
    assert record.source == weights_file and record.parity_max_rel < 1e-4
    assert model_registry.find(DataLayout.at(into), model_registry.weights_key(weights_file, SEED)) == record


def test_weights_with_another_sha256_are_refused_before_anything_is_baked(weights_file, tmp_path):
    expected = hashlib.sha256(b"the weights that were reviewed").hexdigest()
    into = tmp_path / "baked"
    with pytest.raises(WeightsChecksumError) as refused:
        bake(weights_file, SEED, str(into), expected)
    assert str(refused.value) == (f"{weights_file}: SHA-256 {sha256_of(weights_file)}, expected {expected}; "
                                  "not baking weights other than the ones named")
    assert not into.exists()


def test_a_hash_for_random_weights_or_not_a_sha256_is_a_configuration_error(weights_file, tmp_path):
    with pytest.raises(ConfigurationError, match="random weights are made from a seed"):
        bake("random", SEED, str(tmp_path / "baked"), "0" * 64)
    with pytest.raises(ConfigurationError, match="must be 64 hex digits"):
        bake(weights_file, SEED, str(tmp_path / "baked"), "sha256:" + sha256_of(weights_file))
    assert not (tmp_path / "baked").exists()


def test_imagenet_is_checked_on_the_file_keras_downloaded(weights_file, tmp_path):
    """`fruit-assets bake-model --weights imagenet` hashes Keras' cached download under KERAS_HOME
    (here a stand-in file: no internet for the real one) and refuses it before loading it."""
    keras_home = tmp_path / "keras"
    (keras_home / "models").mkdir(parents=True)
    cached = keras_home / "models" / IMAGENET_WEIGHTS_FILE
    cached.write_bytes(open(weights_file, "rb").read())
    expected = hashlib.sha256(b"the ImageNet weights that were reviewed").hexdigest()
    result = subprocess.run(
        [CLI, "bake-model", "--weights", "imagenet", "--weights-sha256", expected, "--into", str(tmp_path / "baked")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "KERAS_HOME": str(keras_home)},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == (f"error: {cached}: SHA-256 {sha256_of(str(cached))}, expected "
                                              f"{expected}; not baking weights other than the ones named")
    assert not (tmp_path / "baked").exists()
