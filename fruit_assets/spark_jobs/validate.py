"""Independent checks of committed output, read back by Spark tasks (only counts reach the driver)."""

from __future__ import annotations

from fruit_assets.spark_jobs.files import collect_over_files


def vector_file_stats(spark, work: list[tuple[str, str]], column: str, dim: int) -> dict[str, dict[str, int]]:
    """``work``: (fruit_class, parquet uri). Per class: rows, rows whose ``column`` is not ``dim``
    finite floats, and distinct paths."""

    def task(items):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from fruit_assets.storage.parquet_io import read_table

        for fruit_class, uri in items:
            table = read_table(uri, ["path", column])
            vectors = table[column].combine_chunks()
            # Generated into pyarrow.compute at import from the C++ function registry: the stubs miss it.
            value_lengths = pc.list_value_length(vectors)  # pyright: ignore[reportAttributeAccessIssue]
            lengths = value_lengths.to_numpy(zero_copy_only=False)
            bad = lengths != dim
            # Rows of the right length are then checked for finite values (a NaN beside a short row counts too).
            right_length = vectors.filter(pa.array(~bad))
            if len(right_length):
                flat = right_length.flatten().to_numpy(zero_copy_only=False)
                bad[~bad] = ~np.isfinite(flat.reshape(len(right_length), dim)).all(axis=1)
            yield fruit_class, len(table), int(bad.sum()), table["path"].to_pylist()

    stats: dict[str, dict] = {}
    for fruit_class, rows, bad, paths in collect_over_files(spark, work, task):
        entry = stats.setdefault(fruit_class, {"rows": 0, "bad": 0, "paths": set()})
        entry["rows"] += rows
        entry["bad"] += bad
        entry["paths"].update(paths)
    return {c: {"rows": e["rows"], "bad": e["bad"], "distinct_paths": len(e["paths"])} for c, e in stats.items()}


def reduced_file_bases(spark, work: list[tuple[str, str]]) -> dict[str, set[tuple[str, int]]]:
    """``work``: (fruit_class, reduced-features file). Per class, the (PCA fingerprint, feature
    length) pairs its files hold: one pair across the whole table means one basis."""

    def task(items):
        import pyarrow.compute as pc

        from fruit_assets.storage.parquet_io import read_table
        from fruit_assets.storage.schemas import pca_fingerprint_of

        for fruit_class, uri in items:
            table = read_table(uri, ["features"])
            # Generated into pyarrow.compute at import from the C++ function registry: the stubs miss it.
            value_lengths = pc.list_value_length(table["features"])  # pyright: ignore[reportAttributeAccessIssue]
            lengths = set(value_lengths.to_pylist()) or {0}
            for length in lengths:
                yield fruit_class, pca_fingerprint_of(table.schema), int(length)

    bases: dict[str, set[tuple[str, int]]] = {}
    for fruit_class, fingerprint, length in collect_over_files(spark, work, task):
        bases.setdefault(fruit_class, set()).add((fingerprint, length))
    return bases


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
