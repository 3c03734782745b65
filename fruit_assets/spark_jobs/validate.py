"""Independent checks of committed output, read back by Spark tasks (only counts reach the driver)."""

from __future__ import annotations

from fruit_assets.spark_jobs.files import collect_over_files


def bad_rows(vectors, dim: int):
    """Of an Arrow list<float32> column: which rows are not ``dim`` finite floats (numpy bools)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    # Generated into pyarrow.compute at import from the C++ function registry: the stubs miss it.
    value_lengths = pc.list_value_length(vectors)  # pyright: ignore[reportAttributeAccessIssue]
    bad = value_lengths.to_numpy(zero_copy_only=False) != dim
    # Rows of the right length are then checked for finite values (a NaN beside a short row counts too).
    right_length = vectors.filter(pa.array(~bad))
    if len(right_length):
        flat = right_length.flatten().to_numpy(zero_copy_only=False)
        bad[~bad] = ~np.isfinite(flat.reshape(len(right_length), dim)).all(axis=1)
    return bad


def vector_file_stats(spark, work: list[tuple[str, str]], column: str, dim: int) -> dict[str, dict[str, int]]:
    """``work``: (fruit_class, parquet uri). Per class: rows, rows whose ``column`` is not ``dim``
    finite floats, and distinct paths."""

    def task(items):
        from fruit_assets.storage.parquet_io import read_table

        for fruit_class, uri in items:
            table = read_table(uri, ["path", column])
            bad = bad_rows(table[column].combine_chunks(), dim)
            yield fruit_class, len(table), int(bad.sum()), table["path"].to_pylist()

    stats: dict[str, dict] = {}
    for fruit_class, rows, bad, paths in collect_over_files(spark, work, task):
        entry = stats.setdefault(fruit_class, {"rows": 0, "bad": 0, "paths": set()})
        entry["rows"] += rows
        entry["bad"] += bad
        entry["paths"].update(paths)
    return {c: {"rows": e["rows"], "bad": e["bad"], "distinct_paths": len(e["paths"])} for c, e in stats.items()}


def feature_table_stats(
    spark, reduced: list[tuple[str, str]], embeddings: list[tuple[str, str]], projected: set[str], dim: int
) -> dict[str, dict]:
    """One read of the published feature table, a task per class. ``reduced``: (fruit_class,
    reduced-features file) of every published class; ``embeddings``: (fruit_class, embeddings file)
    of the ``projected`` classes (those a run just wrote, of ``dim`` features). Per class:
    ``bases``, the (PCA fingerprint, feature length) pairs its files hold (one pair across the
    table means one basis); for a projected class also ``rows``, ``bad`` (rows that are not ``dim``
    finite floats), ``embedding_rows`` and ``same_images`` (its rows name exactly its embeddings'
    images, once each: compared in the task, only the verdict reaches the driver)."""
    files: dict[str, tuple[list[str], list[str]]] = {}
    for fruit_class, uri in reduced:
        files.setdefault(fruit_class, ([], []))[0].append(uri)
    for fruit_class, uri in embeddings:
        files.setdefault(fruit_class, ([], []))[1].append(uri)
    work = [(c, tuple(r), tuple(e), c in projected) for c, (r, e) in files.items()]

    def task(items):
        import pyarrow.compute as pc

        from fruit_assets.storage.parquet_io import read_table
        from fruit_assets.storage.schemas import pca_fingerprint_of

        for fruit_class, reduced_uris, embedding_uris, full in items:
            bases, rows, bad, reduced_paths = set(), 0, 0, []
            for uri in reduced_uris:
                table = read_table(uri, ["path", "features"] if full else ["features"])
                # Generated into pyarrow.compute at import from the C++ function registry: the stubs miss it.
                value_lengths = pc.list_value_length(table["features"])  # pyright: ignore[reportAttributeAccessIssue]
                for length in set(value_lengths.to_pylist()) or {0}:
                    bases.add((pca_fingerprint_of(table.schema), int(length)))
                if full:
                    rows += len(table)
                    bad += int(bad_rows(table["features"].combine_chunks(), dim).sum())
                    reduced_paths += table["path"].to_pylist()
            stats: dict = {"bases": bases}
            if full:
                embedding_paths = [p for uri in embedding_uris for p in read_table(uri, ["path"])["path"].to_pylist()]
                stats.update(
                    rows=rows,
                    bad=bad,
                    embedding_rows=len(embedding_paths),
                    same_images=sorted(reduced_paths) == sorted(embedding_paths)
                    and len(set(reduced_paths)) == len(reduced_paths),
                )
            yield fruit_class, stats

    return dict(collect_over_files(spark, work, task))


def sample_first_components(
    spark, work: list[tuple[str, str]], per_file: int = 300
) -> tuple[list[str], list[list[float]]]:
    """(labels, [pc1, pc2]) for up to ``per_file`` rows of each reduced-features file."""

    def task(items):
        from fruit_assets.storage.parquet_io import column_matrix, read_table

        for fruit_class, uri in items:
            matrix = column_matrix(read_table(uri, ["features"])["features"])[:per_file, :2]
            for row in matrix:
                yield fruit_class, [float(v) for v in row]

    rows = collect_over_files(spark, work, task)
    return [r[0] for r in rows], [r[1] for r in rows]
