from dagster import ConfigurableResource
from pydantic import Field

from fruit_assets.featurize.engines import ONNXRUNTIME, check_engine
from fruit_assets.featurize.model import DEFAULT_RANDOM_SEED
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
        return check_engine(self.engine)

    @property
    def settings(self) -> EmbedSettings:
        return EmbedSettings(
            batch_size=self.batch_size,
            max_images_per_task=self.max_images_per_task,
            threads_per_task=self.threads_per_task,
            fetch_threads=self.fetch_threads,
        )
