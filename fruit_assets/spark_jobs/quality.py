"""Feature-quality passes over committed embeddings, in Spark tasks. No Dagster.

Only small results reach the driver: a bounded, hash-chosen sample of vectors for the separability
figures, and, for the review of new images, the flagged rows (with their vectors, to name the
nearest other class) plus one centroid per class.
"""

from __future__ import annotations

import numpy as np

from fruit_assets.spark_jobs.embed import CARRIED_PREFIX
from fruit_assets.spark_jobs.files import collect_over_files


def sample_embeddings(
    spark, work: list[tuple[str, str]], rates: dict[str, float]
) -> tuple[list[str], list[str], np.ndarray]:
    """(paths, classes, float32 vectors) of the rows whose path hash falls under their class's rate."""

    def task(items):
        from fruit_assets.quality.separability import sampled_indices
        from fruit_assets.storage.parquet_io import column_matrix, read_table

        for fruit_class, uri in items:
            table = read_table(uri, ["path", "embedding"])
            keep = sampled_indices(table["path"].to_pylist(), rates[fruit_class])
            if keep:
                kept = table.take(keep)
                yield fruit_class, kept["path"].to_pylist(), column_matrix(kept["embedding"]).tobytes()

    return sample_arrays(collect_over_files(spark, work, task))


def sample_arrays(rows: list[tuple[str, list[str], bytes]]) -> tuple[list[str], list[str], np.ndarray]:
    """(paths, classes, float32 vectors) of collected sample rows: (class, paths, vector bytes) per file."""
    paths = [p for _c, ps, _v in rows for p in ps]
    classes = [c for c, ps, _v in rows for _ in ps]
    vectors = [np.frombuffer(v, np.float32).reshape(len(ps), -1) for _c, ps, v in rows if ps]
    return paths, classes, (np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32))


def review_new_images(spark, work: list[tuple[str, list[str]]]) -> list[tuple]:
    """``work``: (fruit_class, committed embeddings files) of classes that got new images. One task
    a class: rows of carried-forward files are the reference, the others are this run's new images.
    With enough reference rows, new images are checked against them; otherwise the class is its own
    reference (leave-one-out) and only this run's images are reported. Returns, per class,
    (fruit_class, mode, checked, [(path, distance, threshold, vector bytes)])."""

    def task(items):
        from fruit_assets.quality.outliers import MIN_REFERENCE, flag_against_reference, flag_leave_one_out
        from fruit_assets.storage.parquet_io import column_matrix, read_table

        for fruit_class, uris in items:
            reference, new, new_paths = [], [], []
            for uri in uris:
                table = read_table(uri, ["path", "embedding"])
                vectors = column_matrix(table["embedding"])
                if uri.rsplit("/", 1)[-1].startswith(CARRIED_PREFIX):
                    reference.append(vectors)
                else:
                    new.append(vectors)
                    new_paths += table["path"].to_pylist()
            if not new_paths:
                yield fruit_class, "none", 0, []
                continue
            new_matrix = np.concatenate(new)
            reference_matrix = (
                np.concatenate(reference) if reference else np.zeros((0, new_matrix.shape[1]), np.float32)
            )
            if len(reference_matrix) >= MIN_REFERENCE:
                mode, candidates = "against earlier images", new_matrix
                flagged = flag_against_reference(reference_matrix, new_matrix)
            else:
                mode = "leave-one-out"
                candidates = np.concatenate([new_matrix, reference_matrix])
                flagged = [f for f in flag_leave_one_out(candidates) if f.index < len(new_paths)]
            yield (
                fruit_class,
                mode,
                len(new_paths),
                [(new_paths[f.index], f.distance, f.threshold, candidates[f.index].tobytes()) for f in flagged],
            )

    return collect_over_files(spark, work, task)


def class_centroids(spark, work: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """Mean embedding of each class, from per-file sums merged on the driver."""

    def task(items):
        from fruit_assets.storage.parquet_io import column_matrix, read_table

        for fruit_class, uri in items:
            vectors = column_matrix(read_table(uri, ["embedding"])["embedding"]).astype(np.float64)
            if len(vectors):
                yield fruit_class, len(vectors), vectors.sum(axis=0).tobytes()

    sums: dict[str, tuple[int, np.ndarray]] = {}
    for fruit_class, count, total in collect_over_files(spark, work, task):
        previous_count, previous_sum = sums.get(fruit_class, (0, 0.0))
        sums[fruit_class] = (previous_count + count, previous_sum + np.frombuffer(total, np.float64))
    return {c: total / count for c, (count, total) in sums.items()}
