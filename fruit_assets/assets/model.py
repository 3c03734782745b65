from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from fruit_assets.assets.failures import RERUN_POLICY, reported_as_one_line
from fruit_assets.concurrency import DATA_ROOT_POOL
from fruit_assets.featurize.engines import FP32
from fruit_assets.featurize.onnx_model import PARITY_TOLERANCE
from fruit_assets.models.build import build_embedding_model, gated_precision
from fruit_assets.resources import EmbeddingModelResource, FruitStorage

MODEL_CHECKS = [
    AssetCheckSpec(
        "onnx_matches_tensorflow",
        asset="embedding_model",
        description=f"ONNX Runtime's embeddings equal TensorFlow's on fixed images: relative L2 error per image <= {PARITY_TOLERANCE:g}.",
    ),
    # Blocking: a refused precision stops the run before image_embeddings embeds anything with it.
    AssetCheckSpec(
        "reduced_precision_keeps_fidelity",
        asset="embedding_model",
        blocking=True,
        description="With FRUIT_INFERENCE_PRECISION other than fp32: the reduced precision's embeddings of a "
        "sample of the dataset keep the kNN class accuracy (drop <= FRUIT_PRECISION_MAX_ACCURACY_DROP) "
        "and the median relative L2 from fp32 (<= FRUIT_PRECISION_MAX_MEDIAN_RELATIVE_L2).",
    ),
]


@asset(
    pool=DATA_ROOT_POOL,
    retry_policy=RERUN_POLICY,
    kinds={"onnx", "tensorflow"},
    check_specs=MODEL_CHECKS,
    description="MobileNetV2 with the configured weights, converted to ONNX once per weights "
    "(models/embedding/<fingerprint>.onnx); its parity with TensorFlow is measured on every materialization.",
)
def embedding_model(
    context: AssetExecutionContext, storage: FruitStorage, embedding_settings: EmbeddingModelResource
) -> MaterializeResult:
    with reported_as_one_line():
        precision = embedding_settings.precision_name
        limits = embedding_settings.fidelity_limits
        engine = embedding_settings.engine_name
        if precision != FP32:
            from fruit_assets.featurize.openvino_model import require_native

            require_native(precision)
        report = build_embedding_model(
            storage.layout, embedding_settings.weights, embedding_settings.random_seed, verify=True
        )
        # Measured on every materialization: the dataset may have changed since the last one.
        gate = (
            gated_precision(
                storage.layout, report, precision, limits, embedding_settings.fidelity_sample_images, remeasure=True
            )
            if precision != FP32
            else None
        )
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
            "embedding_engine_in_use": engine,
            "inference_precision": precision,
            "opset": record.opset,
            "sha256": record.sha256,
            "size_bytes": len(report.model.payload),
            "converted_now": report.converted,
            "from_image": report.adopted,
            "parity_max_abs": record.parity_max_abs,
            "parity_max_rel": record.parity_max_rel,
            "versions": MetadataValue.json(record.versions),
            **(
                {}
                if gate is None
                else {
                    **gate.metadata(),
                    "fidelity_verdict": "admitted" if gate.admitted else f"refused: {gate.refusal}",
                }
            ),
        },
        check_results=[
            AssetCheckResult(
                check_name="onnx_matches_tensorflow",
                passed=record.parity_ok,
                description=(
                    f"max difference {record.parity_max_abs:.2e} absolute; relative L2 error per image "
                    f"up to {record.parity_max_rel:.2e} (limit {PARITY_TOLERANCE:g})"
                ),
                metadata={
                    "parity_max_abs": record.parity_max_abs,
                    "parity_max_rel": record.parity_max_rel,
                    "images": record.parity_images,
                },
            ),
            fidelity_check(context, gate),
        ],
    )


def fidelity_check(context: AssetExecutionContext, gate) -> AssetCheckResult:
    if gate is None:
        return AssetCheckResult(
            check_name="reduced_precision_keeps_fidelity",
            passed=True,
            description="fp32: the embeddings are the model's own, nothing to gate",
        )
    context.log.info(f"fidelity gate: {gate.summary()}")
    if not gate.admitted:
        context.log.error(str(gate.refused_error()))
    return AssetCheckResult(
        check_name="reduced_precision_keeps_fidelity",
        passed=gate.admitted,
        severity=AssetCheckSeverity.ERROR,
        description=(f"{gate.summary()}: admitted" if gate.admitted else str(gate.refused_error())),
        metadata=gate.metadata(),
    )
