"""The one scaffold of the Spark jobs that read datasets file by file.

The driver sends only work items (file URIs, class names); each task opens its files through
fruit_assets.storage and returns small results (counts, moments, staged file names), so images and
vectors never pass through the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from fruit_assets.spark_jobs.session import spark_context


def file_task_slices(sc, count: int) -> int:
    """Tasks for a job over ``count`` files: two per core (balance), never more than the files."""
    return max(1, min(count, sc.defaultParallelism * 2))


def over_files(spark, work: Iterable, task: Callable[..., Iterator], with_index: bool = False):
    """The RDD of ``task`` applied to slices of the sorted ``work`` items: ``task(items)``, or
    ``task(slice_index, items)`` with ``with_index`` (file names that must not collide between
    tasks). Callers collect it or reduce it."""
    sc = spark_context(spark)
    items = sorted(work)
    rdd = sc.parallelize(items, file_task_slices(sc, len(items)))
    return rdd.mapPartitionsWithIndex(task) if with_index else rdd.mapPartitions(task)


def collect_over_files(spark, work: Iterable, task: Callable[..., Iterator], with_index: bool = False) -> list:
    """``over_files(...).collect()``, or [] without running a job when there is no work."""
    work = list(work)
    if not work:
        return []
    return over_files(spark, work, task, with_index).collect()
