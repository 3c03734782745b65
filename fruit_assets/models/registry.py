"""Converted embedding models under ``<root>/models/embedding/``, keyed by the weights they hold.

    <fingerprint>.onnx       the serialized ONNX graph
    <fingerprint>.json       its record: weights source, sha256 of the .onnx, opset, measured parity
    <fingerprint>.<precision>.fidelity.json
                             the fidelity gate's figures for a reduced precision on this root's
                             images (models/fidelity.py)
    weights-index.json       weights key ("imagenet@keras-3.x", "random(seed=N)", "sha256:<file>")
                             -> fingerprint

The index lets a run that embeds find its model from the weights setting alone, without importing
TensorFlow to rebuild the network and fingerprint it: conversion happens once per weights, not per
run. No Dagster, no Spark.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from fruit_assets.featurize.model import parse_weights_spec
from fruit_assets.featurize.onnx_model import within_parity
from fruit_assets.layout import DataLayout
from fruit_assets.models.fidelity import Fidelity
from fruit_assets.storage import join_uri, open_store


@dataclass(frozen=True)
class ConvertedModel:
    weights_key: str
    fingerprint: str
    source: str
    sha256: str
    opset: int
    parity_max_abs: float
    parity_max_rel: float
    parity_images: int
    versions: dict

    @property
    def parity_ok(self) -> bool:
        return within_parity(self.parity_max_rel)

    @classmethod
    def from_json(cls, data: bytes) -> ConvertedModel:
        return cls(**json.loads(data))

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()


def weights_key(spec: str, random_seed: int) -> str:
    """What identifies the weights a setting names, computed without TensorFlow."""
    from importlib.metadata import version

    parsed = parse_weights_spec(spec)
    if parsed.kind == "imagenet":
        return f"imagenet@keras-{version('keras')}"
    if parsed.kind == "random":
        return f"random(seed={random_seed})@keras-{version('keras')}"
    path = parsed.path
    if not os.path.isfile(path):
        return f"missing:{path}"  # resolve_weights will say what is wrong
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _index(layout: DataLayout) -> dict[str, str]:
    store = open_store(layout.embedding_model_index)
    if not store.exists(layout.embedding_model_index):
        return {}
    return json.loads(store.read_bytes(layout.embedding_model_index))


def find(layout: DataLayout, key: str) -> ConvertedModel | None:
    fingerprint = _index(layout).get(key)
    if fingerprint is None:
        return None
    record_uri = layout.embedding_model_record(fingerprint)
    store = open_store(record_uri)
    if not store.exists(record_uri):
        return None
    return ConvertedModel.from_json(store.read_bytes(record_uri))


def read_model(layout: DataLayout, record: ConvertedModel) -> bytes | None:
    """The .onnx bytes if they are the ones the record describes; None if missing or altered."""
    uri = layout.embedding_model(record.fingerprint)
    store = open_store(uri)
    if not store.exists(uri):
        return None
    data = store.read_bytes(uri)
    return data if sha256(data) == record.sha256 else None


def save(layout: DataLayout, record: ConvertedModel, onnx_bytes: bytes | None) -> None:
    """Model first, then its record, then the index entry: a reader that finds the index entry
    finds a complete model (and checks its hash anyway)."""
    if onnx_bytes is not None:
        open_store(layout.embedding_models).write_bytes(layout.embedding_model(record.fingerprint), onnx_bytes)
    open_store(layout.embedding_models).write_bytes(layout.embedding_model_record(record.fingerprint), record.to_json())
    index = _index(layout)
    if index.get(record.weights_key) != record.fingerprint:
        index[record.weights_key] = record.fingerprint
        open_store(layout.embedding_models).write_bytes(
            layout.embedding_model_index, json.dumps(index, indent=1, sort_keys=True).encode()
        )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fidelity_uri(layout: DataLayout, fingerprint: str, precision: str) -> str:
    return join_uri(layout.embedding_models, f"{fingerprint}.{precision}.fidelity.json")


def find_fidelity(layout: DataLayout, fingerprint: str, precision: str) -> Fidelity | None:
    uri = fidelity_uri(layout, fingerprint, precision)
    store = open_store(uri)
    return Fidelity.from_json(store.read_bytes(uri)) if store.exists(uri) else None


def save_fidelity(layout: DataLayout, fingerprint: str, fidelity: Fidelity) -> None:
    uri = fidelity_uri(layout, fingerprint, fidelity.precision)
    open_store(uri).write_bytes(uri, fidelity.to_json())
