"""Where everything lives under the data root (``FRUIT_DATA_URI``). No Dagster, no Spark.

Outputs are Hive-style folders (``fruit_class=<name>/part-*.parquet``) that also store
``fruit_class`` inside the files, so Spark and ``pyarrow.dataset`` read them with or without
partition discovery. Work in progress lives under ``_staging/``, never inside an output folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from fruit_assets.storage import join_uri, normalize_uri
from fruit_assets.storage.class_folders import class_folder, escape_partition_value

# The storage's limits on a name, in UTF-8 bytes: an S3 key; a local path and each of its parts
# (PATH_MAX less its terminating NUL, NAME_MAX of ext4, XFS and APFS).
S3_KEY_BYTES = 1024
LOCAL_PATH_BYTES = 4095
LOCAL_NAME_BYTES = 255
# Names steps give files inside a class folder: "part-moved<5 digits>-<8>-a<attempt>" and a
# publication's "-<8 hex>" when the name was taken, ".parquet"; rounded up for names to come.
LONGEST_CLASS_FILE_NAME = 64
# Staging folders are named after the Dagster run id, a UUID.
RUN_TOKEN_LENGTH = 36


@dataclass(frozen=True)
class DataLayout:
    root: str

    @classmethod
    def at(cls, location: str) -> DataLayout:
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
        """pca.npz's fingerprint, k and the version that published it, readable without loading
        the basis."""
        return join_uri(self.root, "models", "pca", "pca.json")

    @property
    def pca_fitted(self) -> str:
        """The basis pca_model fitted last, which reduced_features projects with and publishes:
        until then no published row uses it, so it stays out of pca.npz (storage/versions.py)."""
        return join_uri(self.root, "models", "pca", "fitted", "pca.npz")

    @property
    def pca_fitted_record(self) -> str:
        """The fitted basis's fingerprint, k, variance target and the embeddings it was fit on."""
        return join_uri(self.root, "models", "pca", "fitted", "pca.json")

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

    def class_paths(self, fruit_class: str) -> list[str]:
        """Every folder a step derives from a class name: the datasets, and the staging folders a
        run writes first (under a run id: longer than any dataset's)."""
        staging = self.staging("0" * RUN_TOKEN_LENGTH)
        datasets = list(self.class_datasets) + [
            join_uri(staging, kind) for kind in ("embeddings", "quarantine", "reduced")
        ]
        return [class_folder(dataset, fruit_class) for dataset in datasets]

    def max_class_name_bytes(self) -> int:
        """The most UTF-8 bytes a class name may take once escaped for folder names (Spark's
        escaping), so that every file a step writes for it stays within the storage's limits
        under this root."""
        escaped = escape_partition_value("x")
        files = [f"{folder}/{'f' * LONGEST_CLASS_FILE_NAME}" for folder in self.class_paths("x")]
        if self.root.startswith("s3://"):
            overhead = max(len(uri.split("/", 3)[3].encode()) for uri in files) - len(escaped)
            return S3_KEY_BYTES - overhead
        overhead = max(len(uri[len("file://") :].encode()) for uri in files) - len(escaped)
        return min(LOCAL_PATH_BYTES - overhead, LOCAL_NAME_BYTES - len("fruit_class="))
