"""Where everything lives under the data root (``FRUIT_DATA_URI``). No Dagster, no Spark.

Outputs are Hive-style folders (``fruit_class=<name>/part-*.parquet``) that also store
``fruit_class`` inside the files, so Spark and ``pyarrow.dataset`` read them with or without
partition discovery. Work in progress lives under ``_staging/``, never inside an output folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from fruit_assets.storage import join_uri, normalize_uri
from fruit_assets.storage.partitions import class_folder


@dataclass(frozen=True)
class DataLayout:
    root: str

    @classmethod
    def at(cls, location: str) -> "DataLayout":
        return cls(normalize_uri(location))

    @property
    def training(self) -> str:
        return join_uri(self.root, "Training")

    def training_class(self, fruit_class: str) -> str:
        return join_uri(self.training, fruit_class)

    @property
    def manifests(self) -> str:
        return join_uri(self.root, "manifests")

    def manifest(self, fruit_class: str) -> str:
        return join_uri(class_folder(self.manifests, fruit_class), "manifest.parquet")

    @property
    def embeddings(self) -> str:
        return join_uri(self.root, "embeddings")

    @property
    def quarantine(self) -> str:
        return join_uri(self.root, "quarantine")

    @property
    def reduced_features(self) -> str:
        return join_uri(self.root, "output", "resultats_features_parquet")

    @property
    def pca_model(self) -> str:
        return join_uri(self.root, "models", "pca", "pca.npz")

    @property
    def pca_record(self) -> str:
        """pca.npz's fingerprint, k and target, readable without loading the basis."""
        return join_uri(self.root, "models", "pca", "pca.json")

    @property
    def review(self) -> str:
        return join_uri(self.root, "review")

    def review_table(self, fruit_class: str) -> str:
        return join_uri(self.class_folder(self.review, fruit_class), "flagged.parquet")

    @property
    def embedding_models(self) -> str:
        return join_uri(self.root, "models", "embedding")

    def embedding_model(self, fingerprint: str) -> str:
        return join_uri(self.embedding_models, f"{fingerprint}.onnx")

    def embedding_model_record(self, fingerprint: str) -> str:
        return join_uri(self.embedding_models, f"{fingerprint}.json")

    @property
    def embedding_model_index(self) -> str:
        return join_uri(self.embedding_models, "weights-index.json")

    def staging(self, run_token: str) -> str:
        return join_uri(self.root, "_staging", run_token)

    @property
    def class_datasets(self) -> tuple[str, ...]:
        """Every dataset with a folder per class, the published features first, the manifests last."""
        return (self.reduced_features, self.embeddings, self.quarantine, self.review, self.manifests)

    class_folder = staticmethod(class_folder)
