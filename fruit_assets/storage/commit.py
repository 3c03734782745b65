"""Driver-side commit of files staged by Spark tasks, and the committed file sets of a dataset.

Tasks write under ``_staging/<run>/<dataset>/fruit_class=<c>/`` with names that carry their
partition index and attempt number. Only the files that successful attempts reported to the
driver are committed; leftovers of failed or speculative attempts are deleted, so a retried task
never duplicates rows. Each class folder is then swapped in whole (see ObjectStore.replace_folder).
"""

from __future__ import annotations

from typing import Iterable

from fruit_assets.storage.objects import open_store
from fruit_assets.storage.partitions import class_folder


def commit_class_folder(staged_dataset: str, final_dataset: str, fruit_class: str, reported: list[str]) -> None:
    store = open_store(final_dataset)
    staged_folder = class_folder(staged_dataset, fruit_class)
    keep = set(reported)
    store.delete(info.uri for info in store.list_objects(staged_folder) if info.uri not in keep)
    store.replace_folder(staged_folder, class_folder(final_dataset, fruit_class))


def discard_staging(staging_uri: str) -> None:
    open_store(staging_uri).delete_prefix(staging_uri)


def dataset_files(dataset_uri: str, fruit_class: str) -> list[str]:
    """The committed Parquet files of one class, in name order (hidden and temp files skipped)."""
    folder = class_folder(dataset_uri, fruit_class)
    return sorted(
        info.uri
        for info in open_store(folder).list_committed(folder)
        if info.uri.endswith(".parquet") and not info.uri.rsplit("/", 1)[-1].startswith((".", "_"))
    )


def class_files(dataset_uri: str, classes: Iterable[str]) -> list[tuple[str, str]]:
    """(fruit_class, committed file) for every file of the given classes: the work list of the
    Spark jobs that read a dataset file by file."""
    return [(fruit_class, uri) for fruit_class in classes for uri in dataset_files(dataset_uri, fruit_class)]
