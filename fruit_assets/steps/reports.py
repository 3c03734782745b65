"""What a step reports back: per-class counts and timings. No Dagster (assets/metadata.py turns
them into metadata)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ClassCounts:
    images: int = 0
    embedded: int = 0
    quarantined: int = 0
    featurized: int = 0  # images decoded (and embedded or quarantined) by this run
    reused: int = 0  # rows not computed now: carried over from the previous materialization, or moved
    moved: int = 0  # of those, rows found by content under another path (a class renamed, an image moved)
    remodeled: int = 0  # previous rows computed with another engine or weights: embedded again


@dataclass
class TakenSample:
    """The separability sample a pass took while reading the embeddings anyway: the rates it
    sampled each class at, and (class, paths, float32 vector bytes) per file read."""

    rates: dict[str, float]
    rows: list[tuple[str, list[str], bytes]]


@dataclass
class StepReport:
    per_class: dict[str, ClassCounts] = field(default_factory=dict)
    seconds: float = 0.0
    output: str = ""
    # Classes asked for whose published rows are already what this step would make: left as they are.
    up_to_date: list[str] = field(default_factory=list)
    # Classes asked for that are gone from Training/ (their outputs removed): nothing to do for them.
    removed: list[str] = field(default_factory=list)
    # Of the embeddings step, when it published: whether it derived the moments of what it
    # published (steps/moments.py), so that the next PCA refit reads no embedding.
    moments_updated: bool | None = None
    # Of reduced_features: the separability sample its projection took (steps/review.py), and the
    # first two components of the first rows of each file it wrote, {class: [[pc1, pc2], ...]}
    # (the PC plot; what validate.sample_first_components reads of a published file).
    sample: TakenSample | None = None
    first_components: dict[str, list[list[float]]] = field(default_factory=dict)
    # Of the embeddings step: what its featurization (the embedding tasks; not the carry-forward
    # of previous rows) cost on the executors (spark_jobs/task_metrics.py). 0.0 when nothing was
    # featurized (no task ran); None where not measured (other steps) or Spark's task metrics
    # could not be read.
    python_cpu_seconds: float | None = None  # the Python workers' CPU: decoding, inference, writing
    jvm_cpu_seconds: float | None = None  # the executor JVM task threads' CPU (Spark's executorCpuTime)
    task_seconds: float | None = None  # the tasks' run time (Spark's executorRunTime), summed

    @property
    def executor_cpu_seconds(self) -> float | None:
        """CPU-seconds the executors spent featurizing: Python workers + JVM task threads (the
        Python side alone when Spark's task metrics could not be read)."""
        if self.python_cpu_seconds is None and self.jvm_cpu_seconds is None:
            return None
        return (self.python_cpu_seconds or 0.0) + (self.jvm_cpu_seconds or 0.0)

    @property
    def images_per_cpu_second(self) -> float | None:
        """Images featurized by this run per executor CPU-second; None when nothing was featurized
        (or nothing measured)."""
        cpu = self.executor_cpu_seconds
        return self.featurized / cpu if self.featurized and cpu else None

    def total(self, count: str) -> int:
        return sum(getattr(c, count) for c in self.per_class.values())

    @property
    def images(self) -> int:
        return self.total("images")

    @property
    def embedded(self) -> int:
        return self.total("embedded")

    @property
    def quarantined(self) -> int:
        return self.total("quarantined")

    @property
    def featurized(self) -> int:
        return self.total("featurized")

    @property
    def reused(self) -> int:
        return self.total("reused")

    @property
    def moved(self) -> int:
        return self.total("moved")

    @property
    def remodeled(self) -> int:
        return self.total("remodeled")

    @property
    def images_per_second(self) -> float:
        """Throughput of the work done: images featurized by this run (all images for steps that
        featurize nothing, such as manifests and projections) per second."""
        done = self.featurized or self.images
        return done / self.seconds if self.seconds > 0 else 0.0
