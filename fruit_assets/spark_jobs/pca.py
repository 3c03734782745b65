"""pca_model and reduced_features on Spark: moments and projections computed inside tasks."""

from __future__ import annotations

from fruit_assets.featurize.model import EMBEDDING_SIZE
from fruit_assets.pca import Moments
from fruit_assets.spark_jobs.files import collect_over_files, over_files
from fruit_assets.spark_jobs.session import spark_context
from fruit_assets.storage import schemas
from fruit_assets.storage.class_folders import class_folder


def file_moments(uris) -> Moments:
    """The moments of the embeddings files' rows, read here: in a task, or on the driver for a few files."""
    from fruit_assets.storage.parquet_io import column_matrix, read_table

    moments = Moments.empty(EMBEDDING_SIZE)
    for uri in uris:
        moments = moments.merge(Moments.of(column_matrix(read_table(uri, ["embedding"])["embedding"], EMBEDDING_SIZE)))
    return moments


def embedding_moments(spark, file_uris: list[str]) -> Moments:
    """One pass over the embedding files: each task reduces its files to (n, mean, M2); the
    partial moments are merged on executors (treeReduce), so the driver receives one 13 MB
    matrix whatever the number of files."""
    if not file_uris:
        return Moments.empty(EMBEDDING_SIZE)

    def task(uris):
        yield file_moments(uris).to_bytes()

    def merge(left: bytes, right: bytes) -> bytes:
        return Moments.from_bytes(left).merge(Moments.from_bytes(right)).to_bytes()

    return Moments.from_bytes(over_files(spark, file_uris, task).treeReduce(merge, depth=2))


def project_files(
    spark,
    work: list[tuple[str, str]],
    pca_bytes: bytes,
    staging_dataset: str,
    file_tag: str = "",
    sample_rates: dict[str, float] | None = None,
    head_rows: int = 300,
) -> list[tuple]:
    """``work``: (fruit_class, embeddings file). Each task projects its files and stages one reduced
    file per input file; returns (fruit_class, staged uri, rows, "engine/weights fingerprint" of the
    embeddings it projected, sample, head) per file. With ``sample_rates`` (class -> share), the
    sample is what ``quality.sample_embeddings`` would take of the file, (paths, float32 vector
    bytes), taken while the rows are read anyway; otherwise None. ``head``: the first two
    components of the file's first ``head_rows`` rows, float32 bytes (the PC plot's sample)."""
    if not work:
        return []
    pca_broadcast = spark_context(spark).broadcast(pca_bytes)
    try:

        def task(index: int, items):
            import pyarrow as pa
            from pyspark import TaskContext

            from fruit_assets.pca import load_pca, project
            from fruit_assets.quality.separability import sampled_indices
            from fruit_assets.storage.parquet_io import column_matrix, read_table, vectors_column, write_table

            model = load_pca(pca_broadcast.value)
            task_context = TaskContext.get()
            assert task_context is not None  # set in every Spark task, and this runs in one
            attempt = task_context.attemptNumber()
            for fruit_class, uri in items:
                table = read_table(uri, ["path", "fruit_class", "embedding"])
                engine, weights = schemas.embedding_model_tag(table.schema)
                embeddings = column_matrix(table["embedding"], EMBEDDING_SIZE)
                features = project(embeddings, model)
                reduced = pa.table(
                    [table["path"], table["fruit_class"], vectors_column(features.reshape(len(table), model.k))],
                    schema=schemas.reduced_features_schema(model.fingerprint),
                )
                source_index = uri.rsplit("/", 1)[-1].split("-")[1]  # part-<index>-<tag>-a<n>.parquet
                name = f"part-{source_index}-{file_tag}-a{attempt}.parquet"
                target = class_folder(staging_dataset, fruit_class) + "/" + name
                write_table(target, reduced)
                sample = None
                if sample_rates is not None and fruit_class in sample_rates:
                    paths = table["path"].to_pylist()
                    keep = sampled_indices(paths, sample_rates[fruit_class])
                    sample = ([paths[i] for i in keep], embeddings[keep].tobytes())
                head = features.reshape(len(table), model.k)[:head_rows, :2].astype("float32").tobytes()
                yield fruit_class, target, len(reduced), f"{engine}/{weights}", sample, head

        return collect_over_files(spark, work, task, with_index=True)
    finally:
        pca_broadcast.unpersist()
