"""Feature-quality passes in real Spark tasks: centroids, the hash-chosen sample, the review of new images."""

import numpy as np
import pyarrow as pa
import pytest

from fruit_assets.quality.separability import sampled
from fruit_assets.spark_jobs.quality import CARRIED_PREFIX, class_centroids, review_new_images, sample_embeddings
from fruit_assets.storage import normalize_uri
from fruit_assets.storage.parquet_io import vectors_column, write_table
from fruit_assets.storage.class_folders import class_folder
from fruit_assets.storage.schemas import EMBEDDINGS

DIM = 16


@pytest.fixture
def root(tmp_path) -> str:
    return normalize_uri(str(tmp_path / "embeddings"))


def write(root: str, fruit_class: str, name: str, vectors: np.ndarray, paths: list[str] | None = None) -> str:
    uri = f"{class_folder(root, fruit_class)}/{name}"
    paths = paths or paths_of(fruit_class, name, len(vectors))
    write_table(uri, pa.table({"path": paths, "fruit_class": [fruit_class] * len(paths), "etag": ["e"] * len(paths),
                               "embedding": vectors_column(np.asarray(vectors, np.float32))}, schema=EMBEDDINGS))
    return uri


def paths_of(fruit_class: str, name: str, count: int) -> list[str]:
    return [f"file:///data/Training/{fruit_class}/{name}-{i}.jpg" for i in range(count)]


@pytest.fixture
def classes(root) -> dict[str, dict[str, np.ndarray]]:
    """{class: {file uri: float32 vectors}}: two files for Banana, one for Kiwi."""
    rng = np.random.default_rng(5)
    files = [("Banana", "part-carry-r1-a0.parquet", rng.normal(1.0, 1.0, (12, DIM))),
             ("Banana", "part-00000-r2-a0.parquet", rng.normal(1.0, 1.0, (5, DIM))),
             ("Kiwi", "part-00000-r1-a0.parquet", rng.normal(-4.0, 0.5, (7, DIM)))]
    written: dict[str, dict[str, np.ndarray]] = {}
    for fruit_class, name, vectors in files:
        written.setdefault(fruit_class, {})[write(root, fruit_class, name, vectors)] = vectors.astype(np.float32)
    return written


def pairs(classes) -> list[tuple[str, str]]:
    return [(c, uri) for c, files in classes.items() for uri in files]


def test_class_centroids_are_the_mean_of_every_row_of_the_class(spark, classes):
    centroids = class_centroids(spark, pairs(classes))
    assert sorted(centroids) == ["Banana", "Kiwi"]
    for fruit_class, files in classes.items():
        expected = np.concatenate(list(files.values())).astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(centroids[fruit_class], expected, rtol=1e-12, atol=1e-12)
    assert class_centroids(spark, []) == {}


def test_sample_rate_one_takes_every_row_and_zero_none(spark, classes):
    paths, labels, vectors = sample_embeddings(spark, pairs(classes), {"Banana": 1.0, "Kiwi": 1.0})
    assert len(paths) == len(labels) == len(vectors) == 12 + 5 + 7 and len(set(paths)) == 24
    assert labels.count("Banana") == 17 and labels.count("Kiwi") == 7
    every = {path: vector for fruit_class, files in classes.items() for uri, matrix in files.items()
             for path, vector in zip(paths_of(fruit_class, uri.rsplit("/", 1)[-1], len(matrix)), matrix)}
    for path, vector in zip(paths, vectors):
        np.testing.assert_array_equal(vector, every[path])

    none = sample_embeddings(spark, pairs(classes), {"Banana": 0.0, "Kiwi": 0.0})
    assert none[0] == [] and none[1] == [] and none[2].shape[0] == 0
    banana_only = sample_embeddings(spark, pairs(classes), {"Banana": 1.0, "Kiwi": 0.0})
    assert set(banana_only[1]) == {"Banana"} and len(banana_only[0]) == 17


def test_a_partial_rate_keeps_exactly_the_paths_whose_hash_is_under_it(spark, classes):
    paths, labels, vectors = sample_embeddings(spark, pairs(classes), {"Banana": 0.5, "Kiwi": 0.5})
    every = [path for fruit_class, files in classes.items() for uri, matrix in files.items()
             for path in paths_of(fruit_class, uri.rsplit("/", 1)[-1], len(matrix))]
    assert sorted(paths) == sorted(p for p in every if sampled(p, 0.5))
    assert 0 < len(paths) < 24 and vectors.shape == (len(paths), DIM)


def test_a_new_image_far_from_the_earlier_ones_is_flagged(spark, root):
    rng = np.random.default_rng(9)
    earlier = rng.normal(0.0, 1.0, (40, DIM))
    new = rng.normal(0.0, 1.0, (6, DIM))
    new[4] = 25.0  # a photo of something else
    write(root, "Banana", f"{CARRIED_PREFIX}r1-a0.parquet", earlier)
    new_paths = [f"file:///data/Training/Banana/new_{i}.jpg" for i in range(6)]
    write(root, "Banana", "part-00000-r2-a0.parquet", new, new_paths)
    files = sorted(f"{class_folder(root, 'Banana')}/{name}" for name in
                   [f"{CARRIED_PREFIX}r1-a0.parquet", "part-00000-r2-a0.parquet"])
    [(fruit_class, mode, checked, flagged)] = review_new_images(spark, [("Banana", files)])
    assert (fruit_class, mode, checked) == ("Banana", "against earlier images", 6)
    assert [row[0] for row in flagged] == [new_paths[4]]
    path, distance, threshold, vector = flagged[0]
    assert distance > threshold > 0
    np.testing.assert_array_equal(np.frombuffer(vector, np.float32), new[4].astype(np.float32))


def test_few_earlier_images_mean_leave_one_out_and_only_new_images_are_reported(spark, root):
    rng = np.random.default_rng(4)
    earlier = rng.normal(0.0, 1.0, (3, DIM))
    earlier[0] = -30.0  # an old outlier: not this run's to report
    new = rng.normal(0.0, 1.0, (20, DIM))
    new[7] = 30.0
    paths = [f"file:///data/Training/Kiwi/{i}.jpg" for i in range(20)]
    carried = write(root, "Kiwi", f"{CARRIED_PREFIX}r1-a0.parquet", earlier)
    fresh = write(root, "Kiwi", "part-00000-r2-a0.parquet", new, paths)
    only_old = write(root, "Pepper Red", f"{CARRIED_PREFIX}r1-a0.parquet", earlier)
    results = review_new_images(spark, [("Kiwi", [carried, fresh]), ("Pepper Red", [only_old])])
    by_class = {r[0]: r for r in results}
    _c, mode, checked, flagged = by_class["Kiwi"]
    assert (mode, checked) == ("leave-one-out", 20)
    assert [row[0] for row in flagged] == [paths[7]]
    assert by_class["Pepper Red"] == ("Pepper Red", "none", 0, [])
    assert review_new_images(spark, []) == []
