"""The published file sets of a dataset, per class, all taken from one version.

Readers take a dataset's files from the current version (storage/versions.py), never from a
listing of its folders: files of a publication in progress, or leftovers of failed or speculative
task attempts, are in no version and so never read.
"""

from __future__ import annotations

from collections.abc import Iterable

from fruit_assets.storage.version_record import dataset_location
from fruit_assets.storage.versions import current_version


def dataset_files(dataset_uri: str, fruit_class: str) -> list[str]:
    """The published Parquet files of one class, in name order."""
    root, dataset = dataset_location(dataset_uri)
    return current_version(root).class_uris(dataset, fruit_class)


def class_files(dataset_uri: str, classes: Iterable[str]) -> list[tuple[str, str]]:
    """(fruit_class, published file) for every file of the given classes, all from one version:
    the work list of the Spark jobs that read a dataset file by file."""
    root, dataset = dataset_location(dataset_uri)
    version = current_version(root)
    return [(fruit_class, uri) for fruit_class in classes for uri in version.class_uris(dataset, fruit_class)]
