"""One published version of the data root, as its record holds it: every class's files per dataset,
the PCA basis and what each class's features were made from; and where each dataset lives."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fruit_assets.storage.errors import StorageError
from fruit_assets.storage.uris import join_uri, normalize_uri

# Dataset name -> folder under the root. The order is the order files are copied in: the published
# features last, so an interrupted copy leaves the least visible part behind.
DATASETS = {
    "embeddings": "embeddings",
    "quarantine": "quarantine",
    "reduced_features": "output/resultats_features_parquet",
}


@dataclass(frozen=True)
class Version:
    root: str
    number: int
    # dataset -> class -> file paths relative to the root
    files: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    pca: dict | None = None  # {"fingerprint", "k", "model": path relative to the root}
    made_from: dict = field(default_factory=dict)  # class -> what its features were made from
    created: float = 0.0

    def classes(self, dataset: str) -> list[str]:
        return sorted(self.files.get(dataset, {}))

    def class_uris(self, dataset: str, fruit_class: str) -> list[str]:
        return [join_uri(self.root, path) for path in self.files.get(dataset, {}).get(fruit_class, ())]

    def uris(self, dataset: str) -> list[str]:
        return [uri for fruit_class in self.classes(dataset) for uri in self.class_uris(dataset, fruit_class)]

    def all_paths(self) -> set[str]:
        paths = {p for classes in self.files.values() for files in classes.values() for p in files}
        if self.pca and self.pca.get("model"):
            paths.add(self.pca["model"])
        return paths

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": self.number,
                "created": self.created,
                "pca": self.pca,
                "made_from": self.made_from,
                "files": {d: {c: list(f) for c, f in classes.items()} for d, classes in self.files.items()},
            },
            indent=1,
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, root: str, data: bytes) -> Version:
        record = json.loads(data)
        return cls(
            root,
            record["version"],
            {d: {c: tuple(f) for c, f in classes.items()} for d, classes in record["files"].items()},
            record.get("pca"),
            record.get("made_from") or {},
            record.get("created", 0.0),
        )


def dataset_location(dataset_uri: str) -> tuple[str, str]:
    """``<root>/output/resultats_features_parquet`` -> (root, "reduced_features")."""
    dataset_uri = normalize_uri(dataset_uri)
    for name, folder in DATASETS.items():
        if dataset_uri.endswith("/" + folder):
            return dataset_uri[: -len(folder) - 1], name
    raise StorageError(f"{dataset_uri} is not a published dataset ({', '.join(DATASETS.values())})")
