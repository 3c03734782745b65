from dagster import ConfigurableResource
from pydantic import Field

from fruit_assets.featurize.engines import FP32, ONNXRUNTIME, check_precision, engine_for
from fruit_assets.featurize.model import DEFAULT_RANDOM_SEED
from fruit_assets.models.fidelity import DEFAULT_SAMPLE_IMAGES, FidelityLimits
from fruit_assets.spark_jobs.embed import EmbedSettings


class EmbeddingModelResource(ConfigurableResource):
    """MobileNetV2 weights, the engine that runs them, and how the Spark tasks run it."""

    weights: str = Field(
        default="imagenet",
        description="'imagenet' (Keras download, cached), 'random' (seeded, calibrated) or a .weights.h5/.h5 path.",
    )
    engine: str = Field(
        default=ONNXRUNTIME,
        description="FRUIT_INFERENCE_ENGINE: 'onnxruntime' (the converted model, ~2x faster) or 'tensorflow' (the reference).",
    )
    precision: str = Field(
        default=FP32,
        description="FRUIT_INFERENCE_PRECISION: 'fp32' (exact, the default) or 'bf16' (OpenVINO, ~2x images per "
        "CPU-second on CPUs with AMX or AVX-512 BF16), admitted per dataset by the fidelity gate.",
    )
    # Strings because Dagster's EnvVar feeds str fields; parsed by FidelityLimits.parse.
    max_accuracy_drop: str = Field(
        default="0.01",
        description="FRUIT_PRECISION_MAX_ACCURACY_DROP: the reduced precision is refused if the kNN class accuracy "
        "of the dataset's sample drops by more than this against fp32.",
    )
    max_median_relative_l2: str = Field(
        default="0.25",
        description="FRUIT_PRECISION_MAX_MEDIAN_RELATIVE_L2: ... or if the median image's embedding moves by more "
        "than this (relative L2) from its fp32 embedding.",
    )
    fidelity_sample_images: int = Field(
        default=DEFAULT_SAMPLE_IMAGES, description="Images of the dataset, spread over its classes, the gate compares."
    )
    random_seed: int = DEFAULT_RANDOM_SEED
    batch_size: int = Field(
        default=0, description="Images per inference call; 0: the engine's best (8 for onnxruntime, 32 for tensorflow)."
    )
    max_images_per_task: int = Field(
        default=500, description="Upper bound on one Spark task's images: progress advances a task at a time."
    )
    threads_per_task: int = Field(
        default=1, description="Inference intra-op threads per task: keep equal to spark.task.cpus."
    )
    fetch_threads: int = Field(default=4, description="Threads per task fetching and decoding images.")
    max_quarantine_rate: float = Field(
        default=0.05, description="The quarantine_rate check warns above this share of quarantined images."
    )

    @property
    def engine_name(self) -> str:
        """The engine that runs the configured precision (the precision is part of the name)."""
        return engine_for(self.engine, self.precision)

    @property
    def precision_name(self) -> str:
        return check_precision(self.precision)

    @property
    def fidelity_limits(self) -> FidelityLimits:
        return FidelityLimits.parse(self.max_accuracy_drop, self.max_median_relative_l2)

    @property
    def settings(self) -> EmbedSettings:
        return EmbedSettings(
            batch_size=self.batch_size,
            max_images_per_task=self.max_images_per_task,
            threads_per_task=self.threads_per_task,
            fetch_threads=self.fetch_threads,
        )
