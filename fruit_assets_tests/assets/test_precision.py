"""Reduced precision through Dagster: the gate on the model asset, bf16 embeddings keyed apart from
fp32 ones, one precision per published table, and a refusal that stops the run in one line."""

import pyarrow.parquet as pq
from dagster import materialize

from fruit_assets.assets import embedding_model, image_embeddings, reduced_features
from fruit_assets.resources import EmbeddingModelResource
from fruit_assets.storage import schemas
from fruit_assets.storage.versions import current_version
from fruit_assets_tests.conftest import requires_native_bf16
from fruit_assets_tests.assets.test_assets import ALL_ASSETS, CLASSES, metadata_of, resources, run_graph


def with_precision(root, weights, precision, **limits):
    res = resources(root, weights)
    res["embedding_settings"] = EmbeddingModelResource(weights=weights, max_images_per_task=8, precision=precision, **limits)
    return res


def range_tags(classes):
    return {"dagster/asset_partition_range_start": classes[0], "dagster/asset_partition_range_end": classes[-1]}


def engines_of(root, dataset="embeddings"):
    version = current_version(root)
    return {schemas.embedding_model_tag(pq.read_schema(uri[len("file://"):]))[0]
            for uri in version.uris(dataset)}


def failure_message(result):
    """The failed step's one line (reported_as_one_line)."""
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert "\n" not in message and "Traceback" not in message
    return message


@requires_native_bf16
def test_bf16_is_gated_keyed_apart_and_never_mixed_with_fp32(spark, sample_root, trained_weights_file, dagster_instance):
    run_graph(dagster_instance, sample_root, trained_weights_file)
    assert engines_of(sample_root) == {"onnxruntime"}

    # The model asset measures the gate on the dataset's own images and records it.
    bf16 = with_precision(sample_root, trained_weights_file, "bf16")
    result = materialize(ALL_ASSETS, selection=[embedding_model], instance=dagster_instance, resources=bf16)
    assert result.success
    model = metadata_of(result, "embedding_model")
    assert model["inference_precision"] == "bf16" and model["embedding_engine_in_use"] == "openvino-bf16"
    assert model["fidelity_verdict"] == "admitted" and model["fidelity_images"] == 36 and model["fidelity_classes"] == 3
    assert 0.01 < model["median_relative_l2"] < 0.25 and model["knn_accuracy_drop"] <= 0.01
    [gate] = [c for c in result.get_asset_check_evaluations() if c.check_name == "reduced_precision_keeps_fidelity"]
    assert gate.passed and gate.metadata["nearest_neighbour_agreement"].value > 0.5

    # Switching precision embeds every image again: bf16 rows are not fp32 rows.
    embedded = materialize(ALL_ASSETS, selection=[image_embeddings], instance=dagster_instance, resources=bf16,
                           tags=range_tags(CLASSES))
    assert embedded.success
    figures = metadata_of(embedded, "image_embeddings")
    assert figures["inference_precision"] == "bf16" and figures["run_num_remodeled"] == 36 == figures["run_num_featurized"]
    assert engines_of(sample_root) == {"openvino-bf16"}

    # One class back to fp32 while the others stay bf16: the table is not published mixed.
    fp32 = with_precision(sample_root, trained_weights_file, "fp32")
    back = materialize(ALL_ASSETS, selection=[image_embeddings], instance=dagster_instance, resources=fp32,
                       tags=range_tags(["Banana", "Banana"]))
    assert back.success and engines_of(sample_root) == {"onnxruntime", "openvino-bf16"}
    before = current_version(sample_root).number
    mixed = materialize(ALL_ASSETS, selection=[reduced_features], instance=dagster_instance, resources=fp32,
                        tags=range_tags(CLASSES), raise_on_error=False)
    assert not mixed.success
    message = failure_message(mixed)
    assert "would mix embeddings of 2 models" in message and "bf16" in message and "fp32" in message
    assert current_version(sample_root).number == before


@requires_native_bf16
def test_a_refused_precision_stops_the_run_before_anything_is_embedded(spark, sample_root, trained_weights_file,
                                                                       dagster_instance):
    strict = with_precision(sample_root, trained_weights_file, "bf16", max_median_relative_l2="0.001")
    dagster_instance.add_dynamic_partitions("fruit_class", CLASSES)
    result = materialize(ALL_ASSETS, selection=[embedding_model, image_embeddings], instance=dagster_instance,
                         resources=strict, tags=range_tags(CLASSES), raise_on_error=False)
    # The blocking check fails, image_embeddings never runs.
    [gate] = [c for c in result.get_asset_check_evaluations() if c.check_name == "reduced_precision_keeps_fidelity"]
    assert not gate.passed and "FRUIT_INFERENCE_PRECISION=fp32" in gate.description
    assert "median relative L2" in gate.description and "> 0.001" in gate.description
    assert not result.success
    assert not any(e.event_specific_data.materialization.asset_key == image_embeddings.key
                   for e in result.get_asset_materialization_events())
    # A run of image_embeddings alone is refused by the same figures, in one line.
    alone = materialize(ALL_ASSETS, selection=[image_embeddings], instance=dagster_instance, resources=strict,
                        tags=range_tags(CLASSES), raise_on_error=False)
    assert not alone.success
    line = failure_message(alone)
    assert "bf16 refused for this dataset" in line and "FRUIT_INFERENCE_PRECISION=fp32" in line
    assert current_version(sample_root).files.get("embeddings", {}) == {}


@requires_native_bf16
def test_the_command_line_says_the_refusal_in_one_line(sample_source, trained_weights_file, tmp_path):
    import os
    import shutil

    from fruit_assets_tests.cli.test_main import BIN, run

    shutil.copytree(os.path.join(sample_source, "Training"), tmp_path / "data" / "Training")
    env = {"FRUIT_DATA_URI": str(tmp_path / "data"), "FRUIT_MODEL_WEIGHTS": trained_weights_file,
           "SPARK_MASTER": "local[2]", "DAGSTER_HOME": str(tmp_path / "home"),
           "FRUIT_INFERENCE_PRECISION": "bf16", "FRUIT_PRECISION_MAX_MEDIAN_RELATIVE_L2": "0.001"}
    result = run([f"{BIN}/fruit-assets", "materialize", "-q"], env)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "bf16 refused for this dataset" in line]
    assert lines and all("FRUIT_INFERENCE_PRECISION=fp32" in line for line in lines), result.stdout[-2000:] + result.stderr[-2000:]
    assert "DagsterAssetCheckFailedError" not in result.stdout + result.stderr
    assert not os.path.exists(tmp_path / "data" / "output")
