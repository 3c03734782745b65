"""The code location: assembles Definitions from the modules named after what they hold."""

import warnings

from dagster import BetaWarning, Definitions, define_asset_job, in_process_executor

# BackfillPolicy is beta in Dagster 1.13; we rely on it deliberately (single-run backfills).
warnings.filterwarnings("ignore", category=BetaWarning)

from fruit_assets.assets import embedding_model, image_embeddings, pca_model, raw_images, reduced_features
from fruit_assets.partitions import fruit_class_partitions
from fruit_assets.resources import EmbeddingModelResource, FruitStorage, PcaSettings, SparkResource
from fruit_assets.resources.env import env_or_default
from fruit_assets.resources.spark import SparkDeployment
from fruit_assets.schedules import tidy_publications_job, tidy_publications_schedule
from fruit_assets.sensors import downstream_automation_sensor, new_uploads_sensor

embed_classes_job = define_asset_job(
    "embed_classes", selection=[raw_images, image_embeddings], partitions_def=fruit_class_partitions
)
convert_model_job = define_asset_job("convert_model", selection=[embedding_model])
# The refit and the projection it calls for, in one run: the command's fixed cost is per run.
fit_and_reduce_job = define_asset_job(
    "fit_and_reduce", selection=[pca_model, reduced_features], partitions_def=fruit_class_partitions
)
reduce_classes_job = define_asset_job(
    "reduce_classes", selection=[reduced_features], partitions_def=fruit_class_partitions
)

defs = Definitions(
    assets=[embedding_model, raw_images, image_embeddings, pca_model, reduced_features],
    jobs=[convert_model_job, embed_classes_job, fit_and_reduce_job, reduce_classes_job, tidy_publications_job],
    schedules=[tidy_publications_schedule],
    sensors=[new_uploads_sensor, downstream_automation_sensor],
    resources={
        "storage": FruitStorage(data_uri=env_or_default("FRUIT_DATA_URI", "./data")),
        # Master, Kubernetes placement and the standalone secret: this process's environment (the
        # run pod's spec), out of reach of run config; see SparkResource.
        "spark": SparkResource(
            deployment=SparkDeployment.from_environ(), data_uri=env_or_default("FRUIT_DATA_URI", "./data")
        ),
        "embedding_settings": EmbeddingModelResource(
            weights=env_or_default("FRUIT_MODEL_WEIGHTS", "imagenet"),
            engine=env_or_default("FRUIT_INFERENCE_ENGINE", "onnxruntime"),
            precision=env_or_default("FRUIT_INFERENCE_PRECISION", "fp32"),
            max_accuracy_drop=env_or_default("FRUIT_PRECISION_MAX_ACCURACY_DROP", "0.01"),
            max_median_relative_l2=env_or_default("FRUIT_PRECISION_MAX_MEDIAN_RELATIVE_L2", "0.25"),
        ),
        "pca_settings": PcaSettings(variance_target=env_or_default("FRUIT_PCA_VARIANCE", "0.95")),
    },
    # All steps of a run share one process, hence one Spark application and one model per worker.
    executor=in_process_executor,
)
