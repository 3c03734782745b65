"""The assembled code location: what `dagster dev` and the code server load."""

import dagster as dg

from fruit_assets.definitions import defs


def test_definitions_load_with_the_product_assets_and_sensors():
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"embedding_model", "raw_images", "image_embeddings", "pca_model", "reduced_features"}
    assert defs.resolve_sensor_def("new_uploads_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_sensor_def("downstream_automation_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    graph = defs.resolve_asset_graph()
    for key in ("raw_images", "image_embeddings", "reduced_features"):
        node = graph.get(dg.AssetKey(key))
        assert node.partitions_def.name == "fruit_class"
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
    # The converted model is one for all classes, upstream of the embeddings; the default engine
    # is ONNX Runtime.
    assert graph.get(dg.AssetKey("embedding_model")).partitions_def is None
    assert dg.AssetKey("embedding_model") in graph.get(dg.AssetKey("image_embeddings")).parent_keys
    assert defs.resources["embedding_model"].engine == "onnxruntime"


def test_new_embeddings_flow_downstream_through_automation(dagster_instance):
    instance = dagster_instance
    instance.add_dynamic_partitions("fruit_class", ["A", "B", "C"])
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert result.total_requested == 0  # nothing upstream yet: nothing to do

    for partition in ("A", "B", "C"):
        instance.report_runless_asset_event(dg.AssetMaterialization("image_embeddings", partition=partition))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_requested_partitions(dg.AssetKey("pca_model")) == {None}
    assert result.get_requested_partitions(dg.AssetKey("reduced_features")) == set()

    instance.report_runless_asset_event(dg.AssetMaterialization("pca_model"))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_requested_partitions(dg.AssetKey("reduced_features")) == {"A", "B", "C"}
    assert result.get_requested_partitions(dg.AssetKey("pca_model")) == set()


def test_every_asset_writes_through_the_one_data_root_pool_limited_to_one():
    from fruit_assets.concurrency import DATA_ROOT_POOL

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert graph.get(key).pools == {DATA_ROOT_POOL}, key


def test_repository_dagster_yaml_limits_the_pool_and_the_run_queue(tmp_path):
    import os
    import shutil

    shutil.copy(os.path.join(os.path.dirname(os.path.dirname(__file__)), "dagster.yaml"), tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        assert config.run_queue_config.max_concurrent_runs == 2
