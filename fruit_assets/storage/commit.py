"""Driver-side commit of files staged by Spark tasks, and the published file sets of a dataset.

Tasks write under ``_staging/<run>/<dataset>/fruit_class=<c>/`` with names that carry their run,
partition index and attempt number. Only the files that successful attempts reported to the
driver are published; leftovers of failed or speculative attempts never enter a version and go
with the staging folder, so a retried task never duplicates rows. Every class a step touched is
published in one version (storage/versions.publish).
"""

from __future__ import annotations

from collections.abc import Iterable

from fruit_assets.storage.objects import open_store
from fruit_assets.storage.versions import current_version, dataset_location


def discard_staging(staging_uri: str) -> None:
    open_store(staging_uri).delete_prefix(staging_uri)


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
