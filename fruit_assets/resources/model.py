from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from fruit_assets.spark_jobs.embed import EmbedSettings


class EmbeddingModelResource(ConfigurableResource):
    """MobileNetV2 weights and how the Spark tasks run it."""

    weights: str = Field(
        default="imagenet",
        description="'imagenet' (Keras download, cached), 'random' (seeded, calibrated) or a .weights.h5/.h5 path.",
    )
    random_seed: int = 1234
    batch_size: int = Field(default=32, description="Images per TensorFlow call.")
    max_images_per_task: int = Field(default=2000, description="Upper bound on one Spark task's images.")
    tf_threads_per_task: int = Field(
        default=1, description="TensorFlow intra-op threads per task: keep equal to spark.task.cpus."
    )
    fetch_threads: int = Field(default=4, description="Threads per task fetching and decoding images.")
    max_quarantine_rate: float = Field(
        default=0.05, description="The quarantine_rate check warns above this share of quarantined images."
    )

    _resolved = PrivateAttr(default=None)

    def resolve(self):
        """Weights resolved once per run process (driver side); broadcast to workers by the job."""
        from fruit_assets.featurize.model import resolve_weights

        if self._resolved is None:
            self._resolved = resolve_weights(self.weights, self.random_seed)
        return self._resolved

    @property
    def settings(self) -> EmbedSettings:
        return EmbedSettings(
            batch_size=self.batch_size,
            max_images_per_task=self.max_images_per_task,
            tf_threads_per_task=self.tf_threads_per_task,
            fetch_threads=self.fetch_threads,
        )
