"""``fruit-assets sample``: a synthetic Fruits-360-style dataset written to a data root, so anyone can
run the pipeline without Kaggle credentials."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fruit_assets.featurize.synthetic import sample_dataset
from fruit_assets.storage import join_uri, normalize_uri, open_store


def write_sample_dataset(dest: str, classes: int, images: int, seed: int = 0, threads: int = 8) -> int:
    """Writes the dataset under ``<dest>/Training/`` (a path, file:// or s3:// URI); returns the count."""
    root = normalize_uri(dest)
    store = open_store(root)

    def put(item):
        name, file_name, data = item
        store.write_bytes(join_uri(root, "Training", name, file_name), data)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(1 for _ in pool.map(put, sample_dataset(classes, images, seed)))
