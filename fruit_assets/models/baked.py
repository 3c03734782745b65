"""The embedding model baked into a container image at build time, and its adoption by a data root.

An image built with ``MODEL_WEIGHTS=imagenet|random|<weights file>`` carries a model registry of its
own (``FRUIT_BAKED_MODELS``, set by docker/Dockerfile), laid out as ``models/registry.py`` lays one
out under a data root (``models.build.bake`` writes it). A data root that has no model for the
configured weights yet copies the baked one in (its SHA-256 checked) instead of converting: no
weights download, no tf2onnx, nothing that needs the network. The baked registry is read-only and
belongs to the image, like ``KERAS_HOME``: hence an environment variable of the image rather than a
user setting. No Dagster, no Spark.
"""

from __future__ import annotations

import os

from fruit_assets.layout import DataLayout
from fruit_assets.models import registry

BAKED_MODELS_ENV = "FRUIT_BAKED_MODELS"


def baked_layout() -> DataLayout | None:
    location = os.environ.get(BAKED_MODELS_ENV, "").strip()
    return DataLayout.at(location) if location else None


def adopt(layout: DataLayout, key: str) -> registry.ConvertedModel | None:
    """The baked model for weights ``key``, copied into ``layout``'s registry; None when the image
    has none for these weights (or its file does not match its record: then convert as usual)."""
    baked = baked_layout()
    if baked is None or baked.root == layout.root:
        return None
    record = registry.find(baked, key)
    if record is None:
        return None
    onnx_bytes = registry.read_model(baked, record)
    if onnx_bytes is None:
        return None
    registry.save(layout, record, onnx_bytes)
    return record
