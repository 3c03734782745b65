"""Class folder names: escaped as Spark escapes partition values, read back as the original name."""

import os

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from fruit_assets.storage import normalize_uri
from fruit_assets.storage.parquet_io import write_table
from fruit_assets.storage.class_folders import class_folder, escape_partition_value

ODD_NAMES = ['Pêche "plate" d\'été #1', "Apple Red 1", "50% off: a/b=c?", "tab\there {x}[y]^*\\"]


@pytest.mark.parametrize("value, escaped", [
    ("Banana", "Banana"),
    ("Apple Red 1", "Apple Red 1"),
    ('Pêche "plate" d\'été #1', "Pêche %22plate%22 d%27été %231"),
    ("a/b:c=d%e?f*g\\h", "a%2Fb%3Ac%3Dd%25e%3Ff%2Ag%5Ch"),
    ("{[x]^}", "%7B%5Bx%5D%5E}"),
    ("\x01\t\x7f", "%01%09%7F"),
])
def test_escape_partition_value(value, escaped):
    assert escape_partition_value(value) == escaped


def test_class_folder_is_a_hive_folder_under_the_dataset():
    assert class_folder("s3://b/p/embeddings/", "Apple Red 1") == "s3://b/p/embeddings/fruit_class=Apple Red 1"
    assert class_folder("file:///d/out", 'Pêche "plate" d\'été #1') == \
        "file:///d/out/fruit_class=Pêche %22plate%22 d%27été %231"


def test_spark_names_partition_folders_the_same_way(spark, tmp_path):
    """Spark's own partitionBy writer chooses the folder names class_folder computes."""
    target = str(tmp_path / "written_by_spark")
    spark.createDataFrame([(name, 1) for name in ODD_NAMES], "fruit_class string, n int") \
        .write.partitionBy("fruit_class").parquet(target)
    folders = {entry for entry in os.listdir(target) if entry.startswith("fruit_class=")}
    assert folders == {class_folder("", name).lstrip("/") for name in ODD_NAMES}


def written_dataset(root) -> str:
    """Files without a fruit_class column: the only place the class name is read from is the folder."""
    dataset = normalize_uri(str(root / "dataset"))
    for name in ODD_NAMES:
        table = pa.table({"path": [f"{name}/0.jpg", f"{name}/1.jpg"]})
        write_table(f"{class_folder(dataset, name)}/part-00000-t-a0.parquet", table)
    return dataset


def test_pyarrow_partition_discovery_reads_the_original_names(tmp_path):
    dataset = written_dataset(tmp_path)
    table = ds.dataset(dataset[len("file://"):], format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 2 * len(ODD_NAMES)
    assert sorted(set(table["fruit_class"].to_pylist())) == sorted(ODD_NAMES)
    for path, fruit_class in zip(table["path"].to_pylist(), table["fruit_class"].to_pylist()):
        assert path.startswith(f"{fruit_class}/")


def test_spark_partition_discovery_reads_the_original_names(spark, tmp_path):
    dataset = written_dataset(tmp_path)
    rows = spark.read.parquet(dataset).select("path", "fruit_class").collect()
    assert sorted({row.fruit_class for row in rows}) == sorted(ODD_NAMES) and len(rows) == 2 * len(ODD_NAMES)
    assert all(row.path.startswith(f"{row.fruit_class}/") for row in rows)
