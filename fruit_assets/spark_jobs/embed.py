"""image_embeddings on Spark: manifest rows -> tasks fetch, decode and embed -> staged Parquet.

Each task writes its own Parquet files (one per class it touched) under the run's staging folder
and returns only a small summary row to the driver; the driver then commits the files reported by
successful task attempts. Neither images nor embeddings ever pass through the driver.
"""

from __future__ import annotations

import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from fruit_assets.featurize.engines import LEGACY_ENGINE
from fruit_assets.featurize.images import MAX_IMAGE_BYTES
from fruit_assets.featurize.model import EMBEDDING_SIZE
from fruit_assets.spark_jobs.files import collect_over_files
from fruit_assets.spark_jobs.progress import JobProgress
from fruit_assets.storage import schemas
from fruit_assets.storage.partitions import class_folder

SUMMARY_FIELDS = ["fruit_class", "kind", "uri", "rows", "seconds"]
# Staged file names: rows carried forward from the class's own previous files (the review's
# reference rows), rows found by content under another path (new to the class, not embedded again).
CARRIED_PREFIX = "part-carry-"
MOVED_PREFIX = "part-moved"  # + the task's index, no dash: projections name their files by it


@dataclass(frozen=True)
class EmbedSettings:
    batch_size: int = 0  # images per inference call; 0: the engine's own best (engines.default_batch_size)
    # Progress is counted in finished tasks; each worker keeps its model across tasks, so a task
    # of a few hundred images costs nothing extra and gives a progress step every few seconds.
    max_images_per_task: int = 500
    threads_per_task: int = 1  # inference threads per task: spark.task.cpus
    fetch_threads: int = 4
    max_image_bytes: int = MAX_IMAGE_BYTES  # objects listed larger are quarantined (too_large) unread


@dataclass
class EmbedOutcome:
    """Files staged per class and per kind ('embeddings' / 'quarantine'), plus counts."""

    staged: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    task_seconds: float = 0.0

    def count(self, fruit_class: str, kind: str) -> int:
        return self.counts.get((fruit_class, kind), 0)


def plan_slices(num_images: int, parallelism: int, max_per_task: int) -> int:
    """Few large tasks (one model warm-up each), at least one per core, a multiple of the cores."""
    if num_images == 0:
        return 1
    tasks = max(parallelism, math.ceil(num_images / max_per_task))
    tasks = math.ceil(tasks / parallelism) * parallelism
    return max(1, min(tasks, num_images))


def embed_images(spark, manifest_rows: list[tuple], model, staging_uri: str,
                 settings: EmbedSettings = EmbedSettings(), file_tag: str = "",
                 on_progress: list | None = None) -> EmbedOutcome:
    """``manifest_rows``: (path, fruit_class, etag, listed size), any order (without the size, no
    object is refused unread for its size); ``model`` an ``InferenceModel``
    (its payload, ONNX bytes or weight arrays, is broadcast once). ``on_progress``: callbacks
    given a ``Progress`` as tasks finish (so are this process's progress listeners). Returns what
    was staged.

    ``file_tag`` (the run's id) goes into every file name: on S3 a commit copies files next to the
    previous version's, so names must never collide with an earlier run's."""
    sc = spark.sparkContext
    rows = sorted(manifest_rows, key=lambda row: (row[1], row[0]))
    outcome = EmbedOutcome()
    if not rows:
        return outcome
    slices = plan_slices(len(rows), sc.defaultParallelism, settings.max_images_per_task)
    payload_broadcast = sc.broadcast(model.payload)
    engine, fingerprint = model.engine, model.fingerprint
    try:
        # Contiguous slices of the sorted manifest: each task's files hold consecutive paths.
        chunk = math.ceil(len(rows) / slices)
        chunks = [rows[i : i + chunk] for i in range(0, len(rows), chunk)]
        rdd = sc.parallelize(chunks, len(chunks))

        def run(partition_index: int, chunks: Iterator[list]) -> Iterator[tuple]:
            task_rows = [row for part in chunks for row in part]
            return embed_partition(
                partition_index, task_rows, engine, fingerprint, lambda: payload_broadcast.value,
                staging_uri, settings, file_tag,
            )

        group = f"fruit_assets-embed-{file_tag}-{uuid.uuid4().hex[:8]}"
        with JobProgress(sc, group, [len(c) for c in chunks], list(on_progress or [])):
            summaries = rdd.mapPartitionsWithIndex(run).collect()
    finally:
        payload_broadcast.unpersist()
    for fruit_class, kind, uri, count, seconds in summaries:
        outcome.staged.setdefault((fruit_class, kind), []).append(uri)
        outcome.counts[(fruit_class, kind)] = outcome.count(fruit_class, kind) + count
        outcome.task_seconds += seconds
    return outcome


def fetch_and_decode(path: str, listed_size: int | None = None, max_bytes: int = MAX_IMAGE_BYTES):
    """-> (uint8 image, None) or (None, (reason, message)); never raises for bad input, nor for an
    object deleted since it was listed. An object listed larger than ``max_bytes`` is not fetched."""
    from fruit_assets.featurize import ImageDecodeError, decode_image
    from fruit_assets.storage import MissingObjectError, open_store

    if listed_size is not None and listed_size > max_bytes:
        return None, ("too_large", f"{listed_size} bytes as listed, over the limit of {max_bytes}: not fetched")
    try:
        data = open_store(path).read_bytes(path)
    except MissingObjectError as error:
        return None, ("vanished", str(error))
    try:
        return decode_image(data), None
    except ImageDecodeError as error:
        return None, (error.reason, str(error))


def _prefetched(items: list, fn, threads: int, lookahead: int) -> Iterator:
    """``map(fn, items)`` in order, computed ``lookahead`` items ahead on a thread pool, so image
    fetching and decoding overlap TensorFlow's inference (both release the GIL)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending = []
        iterator = iter(items)
        for item in iterator:
            pending.append(pool.submit(fn, item))
            if len(pending) >= lookahead:
                break
        while pending:
            result = pending.pop(0).result()
            for item in iterator:
                pending.append(pool.submit(fn, item))
                break
            yield result


def embed_partition(partition_index: int, rows: list, engine: str, fingerprint: str, load_payload,
                    staging_uri: str, settings: EmbedSettings, file_tag: str = "") -> Iterable[tuple]:
    """One task: embeds ``rows`` (path, fruit_class, etag[, listed size]), then stages one embeddings file and one
    quarantine file per class it touched. Returns the summary rows the driver commits from."""
    if not rows:
        return []
    from pyspark import TaskContext

    started = time.perf_counter()
    embeddings, ok, failures = infer_rows(rows, engine, fingerprint, load_payload, settings)
    attempt = TaskContext.get().attemptNumber() if TaskContext.get() else 0
    name = f"part-{partition_index:05d}-{file_tag}-a{attempt}.parquet"
    return stage_class_files(rows, embeddings, ok, failures, engine, fingerprint, staging_uri, name,
                             time.perf_counter() - started)


def infer_rows(rows: list, engine: str, fingerprint: str, load_payload, settings: EmbedSettings
               ) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[str, str]]]:
    """The inference loop: images fetched and decoded ahead on threads, embedded in batches by this
    worker's one embedder. -> (embeddings (n, 1280), embedded mask, {row index: (reason, message)})."""
    from fruit_assets.featurize.engines import cached_embedder, default_batch_size
    from fruit_assets.featurize.images import preprocess_batch

    batch_size = settings.batch_size or default_batch_size(engine)
    embedder = cached_embedder(engine, fingerprint, load_payload, batch_size, settings.threads_per_task)
    embeddings = np.empty((len(rows), EMBEDDING_SIZE), dtype=np.float32)
    ok = np.zeros(len(rows), dtype=bool)
    failures: dict[int, tuple[str, str]] = {}
    batch_images, batch_index = [], []

    def flush():
        if batch_images:
            embeddings[batch_index] = embedder.embed(preprocess_batch(np.stack(batch_images)))
            ok[batch_index] = True
            batch_images.clear()
            batch_index.clear()

    def fetch(row):
        return fetch_and_decode(row[0], row[3] if len(row) > 3 else None, settings.max_image_bytes)

    decoded = _prefetched(rows, fetch, settings.fetch_threads, 2 * batch_size)
    for index, (image, failure) in enumerate(decoded):
        if failure is not None:
            failures[index] = failure
            continue
        batch_images.append(image)
        batch_index.append(index)
        if len(batch_images) == batch_size:
            flush()
    flush()
    return embeddings, ok, failures


def stage_class_files(rows: list, embeddings: np.ndarray, ok: np.ndarray, failures: dict[int, tuple[str, str]],
                      engine: str, fingerprint: str, staging_uri: str, name: str, elapsed: float) -> list[tuple]:
    """Per class of ``rows``: its embedded rows to ``<staging>/embeddings/fruit_class=<c>/<name>``
    (tagged with engine and weights), its failures to ``<staging>/quarantine/...``."""
    import pyarrow as pa

    from fruit_assets.storage.parquet_io import vectors_column, write_table

    paths = np.array([row[0] for row in rows], dtype=object)
    classes = np.array([row[1] for row in rows], dtype=object)
    etags = np.array([row[2] for row in rows], dtype=object)
    summaries = []
    for fruit_class in sorted(set(classes)):
        in_class = classes == fruit_class
        good = in_class & ok
        if good.any():
            table = pa.table(
                [pa.array(paths[good], pa.string()), pa.array(classes[good], pa.string()),
                 pa.array(etags[good], pa.string()), vectors_column(embeddings[good])],
                schema=schemas.embeddings_schema(engine, fingerprint),
            )
            uri = class_folder(f"{staging_uri}/embeddings", fruit_class) + "/" + name
            write_table(uri, table)
            summaries.append((fruit_class, "embeddings", uri, int(good.sum()), elapsed))
            elapsed = 0.0  # the task's time is reported once, on its first file
        bad = [i for i in np.flatnonzero(in_class) if i in failures]
        if bad:
            table = pa.table(
                {
                    "path": [rows[i][0] for i in bad],
                    "fruit_class": [fruit_class] * len(bad),
                    "etag": [rows[i][2] for i in bad],
                    "reason": [failures[i][0] for i in bad],
                    "error": [failures[i][1] for i in bad],
                },
                schema=schemas.QUARANTINE,
            )
            uri = class_folder(f"{staging_uri}/quarantine", fruit_class) + "/" + name
            write_table(uri, table)
            summaries.append((fruit_class, "quarantine", uri, len(bad), 0.0))
    return summaries


def carry_forward(spark, work: list[tuple[str, str, list[str]]], manifest_uris: dict[str, str],
                  engine: str, fingerprint: str, staging_uri: str,
                  file_tag: str = "") -> list[tuple[str, str, str, list[str], int, bool]]:
    """Reuse what an earlier materialization computed, inside Spark tasks.

    ``work``: (kind, fruit_class, committed files) with kind 'embeddings' or 'quarantine'. Each task
    reads one class's previous files and its current manifest, keeps the rows whose (path, etag)
    is still in the manifest (and, for embeddings, were computed with the same engine and weights),
    and stages them as one file. Returns (kind, fruit_class, staged uri or '', kept paths, rows
    dropped because another engine or weights computed them, whether every previous row was kept):
    the driver learns which images need no work from the paths alone; the vectors never leave the
    executors.
    """
    def task(items):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        from pyspark import TaskContext

        from fruit_assets.storage.parquet_io import read_table, write_table

        attempt = TaskContext.get().attemptNumber()
        for kind, fruit_class, uris in items:
            manifest = read_table(manifest_uris[fruit_class], ["path", "etag"])
            current = dict(zip(manifest["path"].to_pylist(), manifest["etag"].to_pylist()))
            kept_tables, remodeled, complete = [], 0, True
            for uri in uris:
                table = read_table(uri)
                if kind == "embeddings" and schemas.embedding_model_tag(table.schema, LEGACY_ENGINE) != (engine, fingerprint):
                    remodeled += table.num_rows  # another engine or weights: embed again
                    complete = False
                    continue
                paths, etags = table["path"].to_pylist(), table["etag"].to_pylist()
                keep = np.fromiter((current.get(p) == e for p, e in zip(paths, etags)), bool, len(paths))
                if kind == "quarantine":
                    # Listed again, a vanished image is back (put again, its delete undone): read it again.
                    keep &= np.array([reason != "vanished" for reason in table["reason"].to_pylist()], bool)
                complete = complete and bool(keep.all())
                if keep.any():
                    kept_tables.append(table.filter(pa.array(keep)))
            if not kept_tables:
                yield kind, fruit_class, "", [], remodeled, complete and not uris
                continue
            kept = pa.concat_tables(kept_tables)
            kept = kept.take(pc.sort_indices(kept, [("path", "ascending")]))
            schema = schemas.embeddings_schema(engine, fingerprint) if kind == "embeddings" else schemas.QUARANTINE
            target = (class_folder(f"{staging_uri}/{kind}", fruit_class)
                      + f"/{CARRIED_PREFIX}{file_tag}-a{attempt}.parquet")  # one per class and run
            write_table(target, kept.select(schema.names).cast(schema))
            yield kind, fruit_class, target, kept["path"].to_pylist(), remodeled, complete

    return collect_over_files(spark, work, task)


def reuse_by_content(spark, sources: list[tuple[str, str]], wanted: dict[str, list[tuple[str, str]]],
                     engine: str, fingerprint: str, staging_uri: str, file_tag: str = "") -> list[tuple[str, str, list[str]]]:
    """Embeddings of identical bytes found under another path (a class renamed, an image moved to
    another class), inside Spark tasks: ``wanted`` maps a content ETag to the (path, fruit_class)
    rows that need it; ``sources`` are (fruit_class, committed embeddings file). Only rows of the
    same engine and weights count. One pass finds which file holds each ETag (the first in name
    order, so no image gets two rows), a second stages the rows under their new path and class.
    Returns (fruit_class, staged uri, paths) per staged file."""
    if not wanted or not sources:
        return []
    sc = spark.sparkContext
    wanted_broadcast = sc.broadcast(wanted)
    try:

        def find(items):
            from fruit_assets.storage.parquet_io import read_table

            for _fruit_class, uri in items:
                table = read_table(uri, ["etag"])
                if schemas.embedding_model_tag(table.schema, LEGACY_ENGINE) != (engine, fingerprint):
                    continue
                found = sorted({e for e in table["etag"].to_pylist() if e in wanted_broadcast.value})
                if found:
                    yield uri, found

        chosen: dict[str, list[str]] = {}
        for uri, etags in sorted(collect_over_files(spark, sources, find)):
            for etag in etags:
                chosen.setdefault(etag, uri)
        by_source: dict[str, list[str]] = {}
        for etag, uri in chosen.items():
            by_source.setdefault(uri, []).append(etag)

        def stage(items):
            import pyarrow as pa
            from pyspark import TaskContext

            from fruit_assets.storage.parquet_io import read_table, vectors_column, write_table

            attempt = TaskContext.get().attemptNumber()
            for number, source, etags in items:
                table = read_table(source, ["etag", "embedding"])
                taken = set(etags)
                row_of = {e: i for i, e in enumerate(table["etag"].to_pylist()) if e in taken}
                targets: dict[str, list[tuple[str, str, int]]] = {}
                for etag, row in row_of.items():
                    for path, fruit_class in wanted_broadcast.value[etag]:
                        targets.setdefault(fruit_class, []).append((path, etag, row))
                vectors = table["embedding"]
                for fruit_class, rows in sorted(targets.items()):
                    rows.sort()
                    picked = vectors.take(pa.array([r for _p, _e, r in rows]))
                    out = pa.table(
                        [pa.array([p for p, _e, _r in rows], pa.string()), pa.array([fruit_class] * len(rows), pa.string()),
                         pa.array([e for _p, e, _r in rows], pa.string()), picked.combine_chunks().cast(pa.list_(pa.float32()))],
                        schema=schemas.embeddings_schema(engine, fingerprint),
                    )
                    target = (class_folder(f"{staging_uri}/embeddings", fruit_class)
                              + f"/{MOVED_PREFIX}{number:05d}-{file_tag}-a{attempt}.parquet")
                    write_table(target, out)
                    yield fruit_class, target, [p for p, _e, _r in rows]

        work = [(number, uri, etags) for number, (uri, etags) in enumerate(sorted(by_source.items()))]
        return collect_over_files(spark, work, stage)
    finally:
        wanted_broadcast.unpersist()
