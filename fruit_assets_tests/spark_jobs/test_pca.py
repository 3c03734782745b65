"""pca_model's moments and reduced_features' projections computed in real Spark tasks, against numpy."""

import numpy as np
import pyarrow as pa
import pytest

from fruit_assets.pca import Moments, fit_from_moments, project, save_pca
from fruit_assets.spark_jobs.pca import embedding_moments, project_files
from fruit_assets.storage import normalize_uri, open_store
from fruit_assets.storage.parquet_io import column_matrix, read_table, vectors_column, write_table
from fruit_assets.storage.class_folders import class_folder
from fruit_assets.storage.schemas import REDUCED_FEATURES, embeddings_schema, pca_fingerprint_of

DIM = 1280


def embeddings_file(uri: str, fruit_class: str, vectors: np.ndarray) -> str:
    paths = [f"file:///data/Training/{fruit_class}/{uri.rsplit('/', 1)[-1]}-{i}.jpg" for i in range(len(vectors))]
    write_table(uri, pa.table({"path": paths, "fruit_class": [fruit_class] * len(paths), "etag": ["e"] * len(paths),
                               "embedding": vectors_column(vectors)}, schema=embeddings_schema("onnxruntime", "w1")))
    return uri


@pytest.fixture
def dataset(tmp_path) -> tuple[str, dict[str, np.ndarray]]:
    """Embedding files (three classes, one of them empty) named as embed and carry-forward name them."""
    rng = np.random.default_rng(11)
    root = normalize_uri(str(tmp_path / "embeddings"))
    vectors = {
        ("Banana", "part-00003-r1-a0.parquet"): rng.normal(0.5, 2.0, (9, DIM)).astype(np.float32),
        ("Banana", "part-carry-r1-a0.parquet"): rng.normal(3.0, 1.0, (14, DIM)).astype(np.float32),
        ("Kiwi", "part-00000-r1-a1.parquet"): rng.normal(-1.0, 0.5, (6, DIM)).astype(np.float32),
        ("Kiwi", "part-00001-r1-a0.parquet"): np.zeros((0, DIM), np.float32),
    }
    files = {}
    for (fruit_class, name), matrix in vectors.items():
        files[embeddings_file(f"{class_folder(root, fruit_class)}/{name}", fruit_class, matrix)] = matrix
    return root, files


def test_moments_over_files_equal_numpy_on_all_the_rows(spark, dataset):
    _root, files = dataset
    everything = np.concatenate(list(files.values()))
    expected = Moments.of(everything)
    got = embedding_moments(spark, list(files))
    assert got.count == len(everything) == 29
    np.testing.assert_allclose(got.mean, everything.astype(np.float64).mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.scatter, expected.scatter, rtol=1e-6, atol=1e-6 * np.abs(expected.scatter).max())


def test_no_files_is_no_rows(spark):
    empty = embedding_moments(spark, [])
    assert empty.count == 0 and empty.mean.shape == (DIM,) and empty.scatter.shape == (DIM, DIM)


def test_each_file_is_projected_into_one_staged_file_named_after_its_source(spark, dataset, tmp_path):
    _root, files = dataset
    model = fit_from_moments(Moments.of(np.concatenate(list(files.values()))), 0.9)
    assert 1 < model.k < 29
    staging = normalize_uri(str(tmp_path / "_staging" / "r2" / "reduced"))
    work = [(uri.split("fruit_class=")[1].split("/")[0], uri) for uri in files]
    staged = project_files(spark, work, save_pca(model, with_basis=False), staging, file_tag="r2")

    assert {tag for _c, _u, _n, tag, _sample, _head in staged} == {"onnxruntime/w1"}  # each file's engine/weights
    assert {sample for *_rest, sample, _head in staged} == {None}  # no rates, no sample
    # The PC plot's sample: what sample_first_components reads back of each staged file.
    for _c, uri, n, _tag, _sample, head in staged:
        written = column_matrix(read_table(uri)["features"], model.k).reshape(n, model.k)[:300, :2]
        assert np.frombuffer(head, np.float32).reshape(-1, 2).tolist() == written.tolist()
    staged = [(c, u, n) for c, u, n, _tag, _sample, _head in staged]
    assert sorted((c, u.rsplit("/", 1)[-1], n) for c, u, n in staged) == [
        ("Banana", "part-00003-r2-a0.parquet", 9),
        ("Banana", "part-carry-r2-a0.parquet", 14),
        ("Kiwi", "part-00000-r2-a0.parquet", 6),
        ("Kiwi", "part-00001-r2-a0.parquet", 0),
    ]
    sources = {(c, u.rsplit("/", 1)[-1].split("-")[1]): u for c, u in work}
    for fruit_class, uri, rows in staged:
        assert uri.startswith(class_folder(staging, fruit_class) + "/")
        source = sources[(fruit_class, uri.rsplit("/", 1)[-1].split("-")[1])]
        table = read_table(uri)
        assert table.schema.remove_metadata() == REDUCED_FEATURES
        assert pca_fingerprint_of(table.schema) == model.fingerprint
        assert table["path"].to_pylist() == read_table(source, ["path"])["path"].to_pylist()
        assert set(table["fruit_class"].to_pylist()) <= {fruit_class}
        np.testing.assert_allclose(column_matrix(table["features"], model.k).reshape(rows, model.k),
                                   project(files[source], model), rtol=1e-5, atol=1e-5)
    assert project_files(spark, [], save_pca(model, with_basis=False), staging) == []
    assert len(list(open_store(staging).list_objects(staging))) == 4


def test_with_rates_each_file_also_gives_its_hash_chosen_sample(spark, dataset, tmp_path):
    """What the separability measurement takes from the projection's pass: per file, the rows a
    sample pass would keep (none for a class at rate 0, every row at rate 1, an empty file too)."""
    _root, files = dataset
    model = fit_from_moments(Moments.of(np.concatenate(list(files.values()))), 0.9)
    staging = normalize_uri(str(tmp_path / "_staging" / "r3" / "reduced"))
    work = [(uri.split("fruit_class=")[1].split("/")[0], uri) for uri in files]
    staged = project_files(spark, work, save_pca(model, with_basis=False), staging, "r3", {"Banana": 0.0, "Kiwi": 1.0})
    by_source_rows = {}
    for fruit_class, _uri, rows, _tag, (paths, vectors), _head in staged:
        by_source_rows.setdefault(fruit_class, []).append((rows, len(paths), len(vectors)))
    assert sorted(by_source_rows["Banana"]) == [(9, 0, 0), (14, 0, 0)]
    assert sorted(by_source_rows["Kiwi"]) == [(0, 0, 0), (6, 6, 6 * DIM * 4)]
