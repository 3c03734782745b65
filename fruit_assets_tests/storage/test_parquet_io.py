"""The one Parquet writer: floats split by byte and never dictionary-encoded, what a reader gets back
unchanged, Spark's own Parquet reader included."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fruit_assets.storage.parquet_io import column_matrix, float_columns, read_table, vectors_column, write_table


def feature_table(rows: int = 200, dim: int = 64) -> pa.Table:
    rng = np.random.default_rng(0)
    vectors = np.maximum(rng.normal(size=(rows, dim)), 0).astype(np.float32)  # ReLU-like, as embeddings
    return pa.table({
        "path": [f"Apple/{index}_100.jpg" for index in range(rows)],
        "fruit_class": ["Apple"] * rows,
        "features": vectors_column(vectors),
        "row": np.arange(rows),
        "weight": rng.random(rows),
    })


def test_floats_are_split_by_byte_and_everything_else_keeps_its_dictionary(tmp_path):
    table = feature_table()
    assert float_columns(table.schema) == ["features.list.element", "weight"]
    uri = f"file://{tmp_path}/part-0.parquet"
    write_table(uri, table)

    metadata = pq.ParquetFile(str(tmp_path / "part-0.parquet")).metadata.row_group(0)
    encodings = {metadata.column(i).path_in_schema: metadata.column(i).encodings for i in range(metadata.num_columns)}
    for name in ("features.list.element", "weight"):
        assert "BYTE_STREAM_SPLIT" in encodings[name] and "RLE_DICTIONARY" not in encodings[name], encodings
    for name in ("path", "fruit_class", "row"):
        assert "RLE_DICTIONARY" in encodings[name], encodings
    assert all(metadata.column(i).compression == "ZSTD" for i in range(metadata.num_columns))
    assert read_table(uri).equals(table)


def test_spark_reads_the_vectors_bit_for_bit(spark, tmp_path):
    table = feature_table()
    write_table(f"file://{tmp_path}/part-0.parquet", table)
    rows = spark.read.parquet(str(tmp_path)).orderBy("row").collect()
    read_by_spark = np.array([row.features for row in rows], dtype=np.float32)
    assert np.array_equal(read_by_spark, column_matrix(table["features"]))
    assert [row.weight for row in rows] == table["weight"].to_pylist()
