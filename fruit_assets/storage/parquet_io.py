from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fruit_assets.storage import open_store


def vectors_column(matrix: np.ndarray) -> pa.Array:
    """float32 (n, d) -> Arrow list<float32> without a Python object per value."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, d = matrix.shape
    offsets = np.arange(0, (n + 1) * d, d, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix.reshape(-1)))


def column_matrix(column: pa.ChunkedArray | pa.Array, dim: int | None = None) -> np.ndarray:
    """Arrow list<float32> -> float32 (n, d), zero-copy where the chunks allow."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(column)
    if n == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(n, -1)


def write_table(uri: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    floats = float_columns(table.schema)
    # Floats are split by byte (exponents compress, mantissas do not), never dictionary-encoded:
    # a dictionary of unique floats is tried, then abandoned: it made a reduced-features file's
    # write ~3x slower (an embeddings file's 2x) and the files ~1.45x larger, to read slower.
    pq.write_table(
        table,
        buffer,
        compression="zstd",
        # pyarrow takes a list of columns here too (its stubs say bool only).
        use_dictionary=[path for path, _type in _leaves(table.schema) if path not in floats],  # pyright: ignore[reportArgumentType]
        column_encoding=dict.fromkeys(floats, "BYTE_STREAM_SPLIT"),
    )
    open_store(uri).write_bytes(uri, buffer.getvalue())


def float_columns(schema: pa.Schema) -> list[str]:
    """The Parquet column paths of the schema's floating-point values (lists of floats included)."""
    return [path for path, value_type in _leaves(schema) if pa.types.is_floating(value_type)]


def _leaves(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    leaves = []
    for field in schema:
        path, value_type = field.name, field.type
        while pa.types.is_list(value_type) or pa.types.is_large_list(value_type):
            path, value_type = f"{path}.list.element", value_type.value_type
        leaves.append((path, value_type))
    return leaves


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    # ParquetFile, not pq.read_table: one file needs no dataset layer (whose import alone takes
    # 0.2 s of every command and every Python worker).
    return pq.ParquetFile(io.BytesIO(open_store(uri).read_bytes(uri))).read(columns=columns)


def read_tables(uris: list[str], columns: list[str] | None = None) -> pa.Table | None:
    tables = [read_table(uri, columns) for uri in uris]
    return pa.concat_tables(tables) if tables else None
