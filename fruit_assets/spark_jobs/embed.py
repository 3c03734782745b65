"""image_embeddings on Spark: manifest rows -> tasks fetch, decode and embed -> staged Parquet.

Each task writes its own Parquet files (one per class it touched) under the run's staging folder
and returns only a small summary row to the driver; the driver then commits the files reported by
successful task attempts. Neither images nor embeddings ever pass through the driver.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from fruit_assets.errors import UserFacingError
from fruit_assets.featurize.images import MAX_IMAGE_BYTES, RETRIED_REASONS
from fruit_assets.featurize.model import EMBEDDING_SIZE
from fruit_assets.spark_jobs.files import collect_over_files
from fruit_assets.spark_jobs.progress import JobProgress
from fruit_assets.spark_jobs.session import spark_context
from fruit_assets.spark_jobs.task_metrics import group_task_time, python_cpu_time
from fruit_assets.storage import schemas
from fruit_assets.storage.class_folders import class_folder

# "seconds" and "cpu_seconds" (the Python worker's CPU time: spark_jobs/task_metrics.py) are the
# task's, reported once, on its first row.
SUMMARY_FIELDS = ["fruit_class", "kind", "uri", "rows", "seconds", "cpu_seconds"]
# Staged file names: rows carried forward from the class's own previous files (the review's
# reference rows), rows found by content under another path (new to the class, not embedded again).
CARRIED_PREFIX = "part-carry-"
MOVED_PREFIX = "part-moved"  # + the task's index, no dash: projections name their files by it
# A task whose Python worker died is run again one image at a time (``Isolation``); an image is
# quarantined as worker_killed once the worker died this many times while decoding it alone: one
# death can be a neighbour's fault or bad luck, the second with it alone and first is its own.
DEATHS_TO_QUARANTINE = 2
# How Spark reports a task whose Python worker died (killed by the kernel's or the container's OOM
# killer, or crashed), whose executor went with it (a container OOM-killed as a whole), or that ran
# out of memory under a Python worker memory limit (spark.executor.pyspark.memory: RLIMIT_AS). The
# last is not always raised in the decode that exhausted it: measured, with a 25 Mpx image decoding
# in one thread, the MemoryError came from numpy's preprocessing, ONNX Runtime's arena or Arrow's
# writer in another. Either way the worker process is gone (PySpark ends a worker after a task's
# exception) and the task's images are run again one at a time in a fresh one.
_LOST_TO_MEMORY = re.compile(
    r"Python worker exited unexpectedly|ExecutorLostFailure|MemoryError"
    r"|Failed to allocate memory"
)


class WorkerDeathsError(UserFacingError):
    """A task's Python workers kept dying on different images: not one poison image."""


@dataclass(frozen=True)
class EmbedSettings:
    batch_size: int = 0  # images per inference call; 0: the engine's own best (engines.default_batch_size)
    # Progress is counted in finished tasks; each worker keeps its model across tasks, so a task
    # of a few hundred images costs nothing extra and gives a progress step every few seconds.
    max_images_per_task: int = 500
    threads_per_task: int = 1  # inference threads per task: spark.task.cpus
    fetch_threads: int = 4
    max_image_bytes: int = MAX_IMAGE_BYTES  # objects listed larger are quarantined (too_large) unread
    # Images of one task that may be quarantined as worker_killed; past it the step fails: workers
    # dying on image after image lack memory, and quarantining them all would hide it.
    max_killed_per_task: int = 3


@dataclass
class EmbedOutcome:
    """Files staged per class and per kind ('embeddings' / 'quarantine'), plus counts and what the
    tasks cost (all 0 when there was nothing to embed: no task ran)."""

    staged: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    task_seconds: float = 0.0  # wall time of the successful tasks, as they measured it
    # CPU time of the Python workers during the successful tasks (they measure it themselves).
    python_cpu_seconds: float = 0.0
    # From Spark's task metrics (every attempt): the executor JVM task threads' CPU time and the
    # tasks' run time; None where Spark's status store could not be read (task_metrics.py).
    jvm_cpu_seconds: float | None = 0.0
    jvm_run_seconds: float | None = 0.0

    def count(self, fruit_class: str, kind: str) -> int:
        return self.counts.get((fruit_class, kind), 0)


def plan_slices(num_images: int, parallelism: int, max_per_task: int) -> int:
    """Few large tasks (one model warm-up each), at least one per core, a multiple of the cores."""
    if num_images == 0:
        return 1
    tasks = max(parallelism, math.ceil(num_images / max_per_task))
    tasks = math.ceil(tasks / parallelism) * parallelism
    return max(1, min(tasks, num_images))


def embed_images(
    spark,
    manifest_rows: list[tuple],
    model,
    staging_uri: str,
    settings: EmbedSettings = EmbedSettings(),
    file_tag: str = "",
    on_progress: list | None = None,
) -> EmbedOutcome:
    """``manifest_rows``: (path, fruit_class, etag, listed size), any order (without the size, no
    object is refused unread for its size); ``model`` an ``InferenceModel``
    (its payload, ONNX bytes or weight arrays, is broadcast once). ``on_progress``: callbacks
    given a ``Progress`` as tasks finish (so are this process's progress listeners). Returns what
    was staged.

    ``file_tag`` (the run's id) goes into every file name: on S3 a commit copies files next to the
    previous version's, so names must never collide with an earlier run's."""
    sc = spark_context(spark)
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

        def job(index: int, isolation_round: int) -> list[tuple]:
            def run(partition_index: int, chunks: Iterator[list]) -> Iterable[tuple]:
                task_rows = [row for part in chunks for row in part]
                return embed_partition(
                    partition_index,
                    task_rows,
                    engine,
                    fingerprint,
                    lambda: payload_broadcast.value,
                    staging_uri,
                    settings,
                    file_tag,
                    isolation_round,
                )

            return sc.runJob(rdd.mapPartitionsWithIndex(run), lambda summaries: summaries, [index])

        group = f"fruit_assets-embed-{file_tag}-{uuid.uuid4().hex[:8]}"
        with JobProgress(sc, group, [len(c) for c in chunks], list(on_progress or [])):
            labels = [f"{c[0][0]} .. {c[-1][0]}" for c in chunks]
            summaries = run_contained(spark, group, labels, job, 2 * settings.max_killed_per_task + 1)
    finally:
        payload_broadcast.unpersist()
    for fruit_class, kind, uri, count, seconds, cpu_seconds in summaries:
        outcome.staged.setdefault((fruit_class, kind), []).append(uri)
        outcome.counts[(fruit_class, kind)] = outcome.count(fruit_class, kind) + count
        outcome.task_seconds += seconds
        outcome.python_cpu_seconds += cpu_seconds
    jvm = group_task_time(sc, group)
    outcome.jvm_cpu_seconds = jvm.cpu_seconds if jvm else None
    outcome.jvm_run_seconds = jvm.run_seconds if jvm else None
    return outcome


def lost_to_memory(error: BaseException) -> bool:
    """Whether a failed Spark job says that a task's Python worker (or its executor) died, or that
    the task ran out of memory."""
    return bool(_LOST_TO_MEMORY.search(str(error)))


MAX_JOBS_IN_FLIGHT = 64


def run_contained(spark, group: str, labels: list[str], job, max_rounds: int) -> list[tuple]:
    """``job(index, 0)`` for every task (``labels[index]`` names its images), each its own Spark
    job so that one task's failure loses no other task's work; up to MAX_JOBS_IN_FLIGHT submitted
    at once (the scheduler, and dynamic allocation, see that many pending tasks). A job
    whose worker died or ran out of memory is run again as ``job(index, round)``, round 1, 2, ...
    up to ``max_rounds`` (its task then goes one image at a time and finds the image at fault).
    Any other failure cancels the rest and is raised. -> every job's results, in task order."""
    sc = spark_context(spark)

    def contained(index: int) -> list[tuple]:
        last: Exception | None = None  # set by every round that does not return (max_rounds >= 0: one at least)
        for isolation_round in range(max_rounds + 1):
            try:
                return job(index, isolation_round)
            except Exception as error:  # noqa: BLE001 - Py4JJavaError and friends: sorted below
                if not lost_to_memory(error):
                    raise
                last = error
        raise WorkerDeathsError(
            f"the Python workers embedding {labels[index]} died or ran out of memory {max_rounds + 1} times, "
            "image after image: not one bad image; give them more memory "
            "(spark.executor.memoryOverhead, or spark.executor.pyspark.memory where it is set)"
        ) from last

    # The job group and any other local property of this thread go with every job (what
    # pyspark.util.inheritable_thread_target does, which wants a SQL session for it).
    properties = sc._jsc.sc().getLocalProperties().clone()

    def target(index: int) -> list[tuple]:
        sc._jsc.sc().setLocalProperties(properties)
        return contained(index)

    # Bounded: a 150,000-image run has 300 tasks, and a driver thread (and a py4j connection) per
    # job in flight. 64 pending tasks already ask dynamic allocation for more executors than
    # helm-values allow (maxExecutors 10 x 2 cores).
    with ThreadPoolExecutor(max_workers=min(len(labels), MAX_JOBS_IN_FLIGHT), thread_name_prefix="embed-job") as pool:
        futures = [pool.submit(target, index) for index in range(len(labels))]
        done, _pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [error for error in (f.exception() for f in futures if f in done) if error is not None]
        if failed:
            sc.cancelJobGroup(group)
            raise failed[0]
    return [summary for future in futures for summary in future.result()]


def fetch_and_decode(path: str, listed_size: int | None = None, max_bytes: int = MAX_IMAGE_BYTES):
    """-> (uint8 image, None) or (None, (reason, message)); never raises for bad input, nor for an
    object deleted or changed since it was listed. An object listed larger than ``max_bytes`` is
    not fetched. A MemoryError is raised: whose fault it is, only decoding alone tells."""
    from fruit_assets.featurize import ImageDecodeError, decode_image
    from fruit_assets.storage import MissingObjectError, open_store

    if listed_size is not None and listed_size > max_bytes:
        return None, ("too_large", f"{listed_size} bytes as listed, over the limit of {max_bytes}: not fetched")
    try:
        # Never more than was listed (or, unlisted, than the limit), plus the one byte that tells.
        data = open_store(path).read_bytes(path, max_bytes=max_bytes if listed_size is None else listed_size)
        if listed_size is None and len(data) > max_bytes:
            return None, ("too_large", f"over the limit of {max_bytes} bytes: not read further")
        if listed_size is not None and len(data) != listed_size:
            # The manifest's ETag names the listed bytes: these are others, which must not be
            # embedded under it. Quarantined for this run only; the next listing has the new ETag.
            read = (
                f"more than the {listed_size} bytes listed (not read further)"
                if len(data) > listed_size
                else f"{len(data)} bytes read, {listed_size} listed"
            )
            return None, (
                "changed_since_listing",
                f"{read}: the object changed after the manifest was made; read again once listed again",
            )
        return decode_image(data), None
    except MissingObjectError as error:
        return None, ("vanished", str(error))
    except ImageDecodeError as error:
        return None, (error.reason, str(error))


class Isolation:
    """A task run one image at a time because its Python worker died (or ran out of memory) before:
    before each image it names the image in a marker under the run's staging folder, so the next
    attempt, on whatever executor (Spark's own retry, or the driver's next round), knows which image
    the worker died on. An image the worker died on once goes first, alone, next time; twice, it is
    quarantined unread (worker_killed). An image whose decode, alone, raises MemoryError is
    quarantined at once (out_of_memory), and the marker keeps it so, should the worker not survive.
    Object storage, not executor-local disk: a retry may land on any executor. One small write
    per image, only on this path; the normal one writes nothing."""

    def __init__(self, uri: str):
        from fruit_assets.storage import MissingObjectError, open_store

        self.uri, self.store = uri, open_store(uri)
        try:
            state = json.loads(self.store.read_bytes(uri))
        except MissingObjectError:
            state = {}
        self.deaths: dict[str, int] = dict(state.get("deaths", {}))
        self.out_of_memory: dict[str, str] = dict(state.get("out_of_memory", {}))
        if state.get("decoding"):  # the previous attempt died with it in flight
            self.deaths[state["decoding"]] = self.deaths.get(state["decoding"], 0) + 1
        self.decoding(None)  # counted once: a death before the first image blames none

    def decoding(self, path: str | None) -> None:
        state = {"deaths": self.deaths, "out_of_memory": self.out_of_memory, "decoding": path}
        self.store.write_bytes(self.uri, json.dumps(state).encode())

    def ran_out_of_memory(self, path: str, error: MemoryError) -> tuple[str, str]:
        self.out_of_memory[path] = (
            f"MemoryError decoding it alone{': ' + str(error) if str(error) else ''}: it needs more than "
            "the Python worker's memory limit (spark.executor.pyspark.memory) allows"
        )
        self.decoding(None)
        _release_freed_memory()
        return "out_of_memory", self.out_of_memory[path]

    def verdict(self, path: str) -> tuple[str, str] | None:
        """(reason, message) for an image not to decode again, else None."""
        if path in self.out_of_memory:
            return "out_of_memory", self.out_of_memory[path]
        if self.deaths.get(path, 0) >= DEATHS_TO_QUARANTINE:
            return "worker_killed", (
                f"its Python worker died {self.deaths[path]} times while decoding it alone "
                "(killed for memory, or crashed): not read again until the file changes"
            )
        return None

    def order(self, rows: list) -> list[int]:
        """Row indices to decode: the suspects first (right after the model is loaded, nothing else
        in flight), then the rest in order; those with a verdict not at all."""
        undecided = [i for i, row in enumerate(rows) if self.verdict(row[0]) is None]
        return [i for i in undecided if rows[i][0] in self.deaths] + [
            i for i in undecided if rows[i][0] not in self.deaths
        ]


def _release_freed_memory() -> None:
    """After a MemoryError: what the failed decode freed goes back to the system (glibc keeps it in
    its arenas, where an address-space limit still counts it), so the rest of the task has it."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


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


def embed_partition(
    partition_index: int,
    rows: list,
    engine: str,
    fingerprint: str,
    load_payload,
    staging_uri: str,
    settings: EmbedSettings,
    file_tag: str = "",
    isolation_round: int = 0,
) -> Iterable[tuple]:
    """One task: embeds ``rows`` (path, fruit_class, etag[, listed size]), then stages one embeddings file and one
    quarantine file per class it touched. Returns the summary rows the driver commits from.

    A task that ran before and failed (a Spark retry, or the driver's ``isolation_round`` > 0 after
    its worker died) goes one image at a time (``Isolation``)."""
    if not rows:
        return []
    from pyspark import TaskContext

    started, cpu_started = time.perf_counter(), python_cpu_time()
    task_context = TaskContext.get()
    attempt = task_context.attemptNumber() if task_context else 0
    isolation = None
    if isolation_round or attempt:
        isolation = Isolation(f"{staging_uri}/_isolation/part-{partition_index:05d}.json")
    embeddings, ok, failures = infer_rows(rows, engine, fingerprint, load_payload, settings, isolation)
    killed = sum(1 for reason, _message in failures.values() if reason == "worker_killed")
    if killed > settings.max_killed_per_task:
        raise WorkerDeathsError(
            f"the Python workers embedding {rows[0][0]} .. {rows[-1][0]} died on {killed} different images "
            f"(over {settings.max_killed_per_task}): not a few bad images; give them more memory "
            "(spark.executor.memoryOverhead, or spark.executor.pyspark.memory where it is set)"
        )
    round_tag = f"i{isolation_round}" if isolation_round else ""
    name = f"part-{partition_index:05d}-{file_tag}-{round_tag}a{attempt}.parquet"
    summaries = stage_class_files(
        rows, embeddings, ok, failures, engine, fingerprint, staging_uri, name, time.perf_counter() - started
    )
    # The worker's CPU time over the whole task, writing its files included: on the first row.
    cpu_seconds = python_cpu_time() - cpu_started
    return [(*summary, cpu_seconds if number == 0 else 0.0) for number, summary in enumerate(summaries)]


def infer_rows(
    rows: list, engine: str, fingerprint: str, load_payload, settings: EmbedSettings, isolation: Isolation | None = None
) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[str, str]]]:
    """The inference loop: images fetched and decoded ahead on threads, embedded in batches by this
    worker's one embedder (with ``isolation``: one at a time, each named first, nothing ahead).
    -> (embeddings (n, 1280), embedded mask, {row index: (reason, message)})."""
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
            if isolation is not None:
                isolation.decoding(None)  # a death in inference is no image's
            embeddings[batch_index] = embedder.embed(preprocess_batch(np.stack(batch_images)))
            ok[batch_index] = True
            batch_images.clear()
            batch_index.clear()

    def fetch(index):
        row = rows[index]
        return fetch_and_decode(row[0], row[3] if len(row) > 3 else None, settings.max_image_bytes)

    if isolation is None:
        order = list(range(len(rows)))
        decoded = _prefetched(order, fetch, settings.fetch_threads, 2 * batch_size)
    else:

        def fetch_alone(index):
            isolation.decoding(rows[index][0])
            try:
                return fetch(index)
            except MemoryError as error:
                return None, isolation.ran_out_of_memory(rows[index][0], error)

        order = isolation.order(rows)
        failures.update({i: verdict for i, row in enumerate(rows) if (verdict := isolation.verdict(row[0]))})
        decoded = map(fetch_alone, order)  # in this thread: nothing else in flight while an image decodes
    try:
        for (image, failure), index in zip(decoded, order):  # decoded first: its thread pool ends with it
            if failure is not None:
                failures[index] = failure
                continue
            batch_images.append(image)
            batch_index.append(index)
            if len(batch_images) == batch_size:
                flush()
        if isolation is not None and not batch_images:
            isolation.decoding(None)  # staging next: no image's either
        flush()
    except BaseException:
        if isolation is not None:
            isolation.decoding(None)  # an exception, not a death: blame no image for it
        raise
    return embeddings, ok, failures


def stage_class_files(
    rows: list,
    embeddings: np.ndarray,
    ok: np.ndarray,
    failures: dict[int, tuple[str, str]],
    engine: str,
    fingerprint: str,
    staging_uri: str,
    name: str,
    elapsed: float,
) -> list[tuple]:
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
                [
                    pa.array(paths[good], pa.string()),
                    pa.array(classes[good], pa.string()),
                    pa.array(etags[good], pa.string()),
                    vectors_column(embeddings[good]),
                ],
                schema=schemas.embeddings_schema(engine, fingerprint),
            )
            uri = class_folder(f"{staging_uri}/embeddings", fruit_class) + "/" + name
            write_table(uri, table)
            summaries.append((fruit_class, "embeddings", uri, int(good.sum()), elapsed))
            elapsed = 0.0  # the task's time is reported once, on its first file
        bad = [i for i in np.flatnonzero(in_class).tolist() if i in failures]
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


def carry_forward(
    spark,
    work: list[tuple[str, str, list[str]]],
    manifest_uris: dict[str, str],
    engine: str,
    fingerprint: str,
    staging_uri: str,
    file_tag: str = "",
) -> list[tuple[str, str, str, list[str], int, bool]]:
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

        task_context = TaskContext.get()
        assert task_context is not None  # set in every Spark task, and this runs in one
        attempt = task_context.attemptNumber()
        for kind, fruit_class, uris in items:
            manifest = read_table(manifest_uris[fruit_class], ["path", "etag"])
            current = dict(zip(manifest["path"].to_pylist(), manifest["etag"].to_pylist()))
            kept_tables, remodeled, complete = [], 0, True
            for uri in uris:
                table = read_table(uri)
                if kind == "embeddings" and schemas.embedding_model_tag(table.schema) != (engine, fingerprint):
                    remodeled += table.num_rows  # another engine or weights: embed again
                    complete = False
                    continue
                paths, etags = table["path"].to_pylist(), table["etag"].to_pylist()
                keep = np.fromiter((current.get(p) == e for p, e in zip(paths, etags)), bool, len(paths))
                if kind == "quarantine":
                    # Listed again, a vanished image is back (put again, its delete undone), a changed
                    # one may be listed as it is now: read it again.
                    keep &= np.array([reason not in RETRIED_REASONS for reason in table["reason"].to_pylist()], bool)
                complete = complete and bool(keep.all())
                if keep.any():
                    kept_tables.append(table.filter(pa.array(keep)))
            if not kept_tables:
                yield kind, fruit_class, "", [], remodeled, complete and not uris
                continue
            kept = pa.concat_tables(kept_tables)
            # Generated into pyarrow.compute at import from the C++ function registry: the stubs miss it.
            order = pc.sort_indices(kept, [("path", "ascending")])  # pyright: ignore[reportAttributeAccessIssue]
            kept = kept.take(order)
            schema = schemas.embeddings_schema(engine, fingerprint) if kind == "embeddings" else schemas.QUARANTINE
            target = (
                class_folder(f"{staging_uri}/{kind}", fruit_class) + f"/{CARRIED_PREFIX}{file_tag}-a{attempt}.parquet"
            )  # one per class and run
            write_table(target, kept.select(schema.names).cast(schema))
            yield kind, fruit_class, target, kept["path"].to_pylist(), remodeled, complete

    return collect_over_files(spark, work, task)


def reuse_by_content(
    spark,
    sources: list[tuple[str, str]],
    wanted: dict[str, list[tuple[str, str]]],
    engine: str,
    fingerprint: str,
    staging_uri: str,
    file_tag: str = "",
) -> list[tuple[str, str, list[str]]]:
    """Embeddings of identical bytes found under another path (a class renamed, an image moved to
    another class), inside Spark tasks: ``wanted`` maps a content ETag to the (path, fruit_class)
    rows that need it; ``sources`` are (fruit_class, committed embeddings file). Only rows of the
    same engine and weights count. One pass finds which file holds each ETag (the first in name
    order, so no image gets two rows), a second stages the rows under their new path and class.
    Returns (fruit_class, staged uri, paths) per staged file."""
    if not wanted or not sources:
        return []
    sc = spark_context(spark)
    wanted_broadcast = sc.broadcast(wanted)
    try:

        def find(items):
            from fruit_assets.storage.parquet_io import read_table

            for _fruit_class, uri in items:
                table = read_table(uri, ["etag"])
                if schemas.embedding_model_tag(table.schema) != (engine, fingerprint):
                    continue
                found = sorted({e for e in table["etag"].to_pylist() if e in wanted_broadcast.value})
                if found:
                    yield uri, found

        chosen: dict[str, str] = {}  # etag -> the file it is taken from
        for uri, etags in sorted(collect_over_files(spark, sources, find)):
            for etag in etags:
                chosen.setdefault(etag, uri)
        by_source: dict[str, list[str]] = {}
        for etag, uri in chosen.items():
            by_source.setdefault(uri, []).append(etag)

        def stage(items):
            import pyarrow as pa
            from pyspark import TaskContext

            from fruit_assets.storage.parquet_io import read_table, write_table

            task_context = TaskContext.get()
            assert task_context is not None  # set in every Spark task, and this runs in one
            attempt = task_context.attemptNumber()
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
                        [
                            pa.array([p for p, _e, _r in rows], pa.string()),
                            pa.array([fruit_class] * len(rows), pa.string()),
                            pa.array([e for _p, e, _r in rows], pa.string()),
                            picked.combine_chunks().cast(pa.list_(pa.float32())),
                        ],
                        schema=schemas.embeddings_schema(engine, fingerprint),
                    )
                    target = (
                        class_folder(f"{staging_uri}/embeddings", fruit_class)
                        + f"/{MOVED_PREFIX}{number:05d}-{file_tag}-a{attempt}.parquet"
                    )
                    write_table(target, out)
                    yield fruit_class, target, [p for p, _e, _r in rows]

        work = [(number, uri, etags) for number, (uri, etags) in enumerate(sorted(by_source.items()))]
        return collect_over_files(spark, work, stage)
    finally:
        wanted_broadcast.unpersist()
