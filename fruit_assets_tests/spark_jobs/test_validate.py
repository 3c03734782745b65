"""Independent checks of committed files, read back by real Spark tasks."""

import numpy as np
import pyarrow as pa
import pytest

from fruit_assets.spark_jobs.validate import feature_table_stats, sample_first_components, vector_file_stats
from fruit_assets.storage import normalize_uri
from fruit_assets.storage.parquet_io import vectors_column, write_table
from fruit_assets.storage.schemas import REDUCED_FEATURES, reduced_features_schema

DIM = 4


@pytest.fixture
def folder(tmp_path) -> str:
    return normalize_uri(str(tmp_path))


def vectors_file(uri: str, paths: list[str], vectors, column: str = "embedding", schema: pa.Schema | None = None) -> str:
    values = vectors_column(np.asarray(vectors, np.float32)) if isinstance(vectors, np.ndarray) \
        else pa.array(vectors, pa.list_(pa.float32()))
    table = pa.table({"path": paths, "fruit_class": ["c"] * len(paths), column: values})
    write_table(uri, table.cast(schema) if schema is not None else table)
    return uri


def test_rows_bad_vectors_and_distinct_paths_per_class(spark, folder):
    good = np.arange(3 * DIM, dtype=np.float32).reshape(3, DIM)
    with_nan = np.ones((2, DIM), np.float32)
    with_nan[1, 2] = np.nan
    work = [
        ("Banana", vectors_file(f"{folder}/b1.parquet", ["b/0", "b/1", "b/2"], good)),
        ("Banana", vectors_file(f"{folder}/b2.parquet", ["b/2", "b/3"], with_nan)),  # b/2 twice
        ("Kiwi", vectors_file(f"{folder}/k1.parquet", ["k/0", "k/1", "k/2"], [[1, 2, 3, 4], [1, 2, 3], [5, 6, 7, 8]])),
        ("Kiwi", vectors_file(f"{folder}/k2.parquet", ["k/3"], np.full((1, DIM), np.inf, np.float32))),
        ("Pepper Red", vectors_file(f"{folder}/p1.parquet", [], np.zeros((0, DIM), np.float32))),
    ]
    assert vector_file_stats(spark, work, "embedding", DIM) == {
        "Banana": {"rows": 5, "bad": 1, "distinct_paths": 4},
        "Kiwi": {"rows": 4, "bad": 2, "distinct_paths": 4},
        "Pepper Red": {"rows": 0, "bad": 0, "distinct_paths": 0},
    }
    assert vector_file_stats(spark, work[:1], "embedding", DIM + 1) == {"Banana": {"rows": 3, "bad": 3, "distinct_paths": 3}}
    assert vector_file_stats(spark, [], "embedding", DIM) == {}


def test_a_file_with_both_a_wrong_length_row_and_a_nan_row_counts_both(spark, folder):
    work = [("Kiwi", vectors_file(f"{folder}/k.parquet", ["k/0", "k/1", "k/2"],
                                  [[1, 2, 3], [1, float("nan"), 3, 4], [1, 2, 3, 4]]))]
    assert vector_file_stats(spark, work, "embedding", DIM)["Kiwi"]["bad"] == 2


def test_the_first_two_components_of_at_most_per_file_rows_each(spark, folder):
    first = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    second = -np.arange(2 * 3, dtype=np.float32).reshape(2, 3)
    work = [
        ("Kiwi", vectors_file(f"{folder}/k.parquet", [f"k/{i}" for i in range(2)], second, "features")),
        ("Banana", vectors_file(f"{folder}/b.parquet", [f"b/{i}" for i in range(5)], first, "features")),
    ]
    labels, points = sample_first_components(spark, work, per_file=3)
    assert labels == ["Banana"] * 3 + ["Kiwi"] * 2  # work sorted by class
    assert points == first[:3, :2].tolist() + second[:, :2].tolist()
    assert all(len(point) == 2 and all(isinstance(v, float) for v in point) for point in points)
    assert sample_first_components(spark, [], per_file=3) == ([], [])


def test_the_bases_and_feature_lengths_each_class_holds(spark, folder):
    three = np.ones((2, 3), np.float32)
    work = [
        ("Banana", vectors_file(f"{folder}/b1.parquet", ["b/0", "b/1"], three, "features", reduced_features_schema("fp1"))),
        ("Banana", vectors_file(f"{folder}/b2.parquet", ["b/2", "b/3"], three, "features", reduced_features_schema("fp1"))),
        ("Kiwi", vectors_file(f"{folder}/k1.parquet", ["k/0", "k/1"], three, "features", reduced_features_schema("fp1"))),
        ("Kiwi", vectors_file(f"{folder}/k2.parquet", ["k/2"], np.ones((1, 5), np.float32), "features",
                              reduced_features_schema("fp2"))),
        ("Pepper Red", vectors_file(f"{folder}/p1.parquet", ["p/0", "p/1"], three, "features", REDUCED_FEATURES)),
        ("Pepper Red", vectors_file(f"{folder}/p2.parquet", [], np.zeros((0, 3), np.float32), "features",
                                    reduced_features_schema("fp1"))),
    ]
    assert feature_table_stats(spark, work, [], set(), 3) == {
        "Banana": {"bases": {("fp1", 3)}},
        "Kiwi": {"bases": {("fp1", 3), ("fp2", 5)}},
        "Pepper Red": {"bases": {("", 3), ("fp1", 0)}},  # a file from before bases were recorded; an empty file
    }


def test_a_projected_class_s_rows_are_compared_with_its_embeddings_images(spark, folder):
    def reduced(name, paths, vectors=None):
        vectors = np.ones((len(paths), 3), np.float32) if vectors is None else vectors
        return vectors_file(f"{folder}/r-{name}.parquet", paths, vectors, "features", reduced_features_schema("fp1"))

    def embedded(name, paths):
        return vectors_file(f"{folder}/e-{name}.parquet", paths, np.ones((len(paths), DIM), np.float32))

    with_nan = np.ones((2, 3), np.float32)
    with_nan[0, 1] = np.nan
    reduced_files = [
        ("Banana", reduced("b1", ["b/0", "b/1"])), ("Banana", reduced("b2", ["b/2"])),  # as embedded
        ("Kiwi", reduced("k", ["k/0", "k/9"])),  # one image swapped for another
        ("Lime", reduced("l", ["l/0", "l/0"])),  # one image twice, one missing
        ("Mango", reduced("m", ["m/0", "m/1"], with_nan)),
        ("Pepper Red", reduced("p", ["p/0"])),  # not projected by this run: its basis only
    ]
    embedding_files = [
        ("Banana", embedded("b", ["b/0", "b/1", "b/2"])),
        ("Kiwi", embedded("k", ["k/0", "k/1"])),
        ("Lime", embedded("l", ["l/0", "l/1"])),
        ("Mango", embedded("m", ["m/0", "m/1"])),
        ("Nectarine", embedded("n", ["n/0"])),  # its projection is missing
    ]
    stats = feature_table_stats(spark, reduced_files, embedding_files, {"Banana", "Kiwi", "Lime", "Mango", "Nectarine"}, 3)
    one = {("fp1", 3)}
    assert stats == {
        "Banana": {"bases": one, "rows": 3, "bad": 0, "embedding_rows": 3, "same_images": True},
        "Kiwi": {"bases": one, "rows": 2, "bad": 0, "embedding_rows": 2, "same_images": False},
        "Lime": {"bases": one, "rows": 2, "bad": 0, "embedding_rows": 2, "same_images": False},
        "Mango": {"bases": one, "rows": 2, "bad": 1, "embedding_rows": 2, "same_images": True},
        "Nectarine": {"bases": set(), "rows": 0, "bad": 0, "embedding_rows": 1, "same_images": False},
        "Pepper Red": {"bases": one},
    }
    assert feature_table_stats(spark, [], [], set(), 3) == {}
