from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from fruit_assets.assets.failures import RERUN_POLICY, reported_as_one_line
from fruit_assets.concurrency import DATA_ROOT_POOL
from fruit_assets.featurize.onnx_model import PARITY_TOLERANCE
from fruit_assets.models.build import build_embedding_model
from fruit_assets.resources import EmbeddingModelResource, FruitStorage

MODEL_CHECKS = [
    AssetCheckSpec("onnx_matches_tensorflow", asset="embedding_model",
                   description=f"ONNX Runtime's embeddings equal TensorFlow's on fixed images: relative L2 error per image <= {PARITY_TOLERANCE:g}."),
]


@asset(
    pool=DATA_ROOT_POOL,
    retry_policy=RERUN_POLICY,
    kinds={"onnx", "tensorflow"},
    check_specs=MODEL_CHECKS,
    description="MobileNetV2 with the configured weights, converted to ONNX once per weights "
                "(models/embedding/<fingerprint>.onnx); its parity with TensorFlow is measured on every materialization.",
)
def embedding_model(context: AssetExecutionContext, storage: FruitStorage,
                    embedding_model: EmbeddingModelResource) -> MaterializeResult:
    with reported_as_one_line():
        report = build_embedding_model(storage.layout, embedding_model.weights, embedding_model.random_seed, verify=True)
    record = report.record
    how = "converted" if report.converted else "adopted the image's baked model as" if report.adopted else "reused"
    context.log.info(
        f"{how} {report.model.location} (weights {record.source}, "
        f"{record.fingerprint}); parity with TensorFlow on {record.parity_images} images: max abs "
        f"{record.parity_max_abs:.2e}, relative {record.parity_max_rel:.2e}"
    )
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(report.model.location),
            "weights": record.source,
            "weights_fingerprint": record.fingerprint,
            "engine": "onnxruntime",
            "embedding_engine_in_use": embedding_model.engine_name,
            "opset": record.opset,
            "sha256": record.sha256,
            "size_bytes": len(report.model.payload),
            "converted_now": report.converted,
            "from_image": report.adopted,
            "parity_max_abs": record.parity_max_abs,
            "parity_max_rel": record.parity_max_rel,
            "versions": MetadataValue.json(record.versions),
        },
        check_results=[
            AssetCheckResult(
                check_name="onnx_matches_tensorflow", passed=record.parity_ok,
                description=(f"max difference {record.parity_max_abs:.2e} absolute; relative L2 error per image "
                             f"up to {record.parity_max_rel:.2e} (limit {PARITY_TOLERANCE:g})"),
                metadata={"parity_max_abs": record.parity_max_abs, "parity_max_rel": record.parity_max_rel,
                          "images": record.parity_images},
            )
        ],
    )
