"""The assembled code location: what `dagster dev` and the code server load."""

import os
import subprocess
import sys

import dagster as dg

from fruit_assets.definitions import defs
from fruit_assets_tests.harness import REPO


def test_the_code_location_loads_as_dagster_dev_and_the_code_server_load_it(tmp_path):
    """`dagster definitions validate` on the repository's workspace.yaml: what `dagster dev`, the
    webserver and the code server do first. A broken import or an invalid definition fails it."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    result = subprocess.run([dagster, "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Validation successful for code location fruit_assets" in result.stdout + result.stderr


def test_the_graph_runs_from_the_model_to_the_features_per_class():
    graph = defs.resolve_asset_graph()
    parents = {key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
               for key in graph.get_all_asset_keys()}
    assert parents == {
        "embedding_model": set(), "raw_images": set(),
        "image_embeddings": {"raw_images", "embedding_model"},
        "pca_model": {"image_embeddings"},
        "reduced_features": {"pca_model", "image_embeddings"},
    }
    # One partition per class for what is per class; one PCA and one model for all classes.
    partitioned = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).partitions_def}
    assert partitioned == {"raw_images", "image_embeddings", "reduced_features"}


def test_changed_data_flows_downstream_through_automation_and_unchanged_data_does_not(dagster_instance):
    instance = dagster_instance
    instance.add_dynamic_partitions("fruit_class", ["A", "B", "C"])
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert result.total_requested == 0  # nothing upstream yet: nothing to do

    def materialized(asset, data_version, partition=None):
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset, partition=partition, tags={"dagster/data_version": data_version}))

    for partition in ("A", "B", "C"):
        materialized("image_embeddings", f"files-{partition}-1", partition)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_requested_partitions(dg.AssetKey("pca_model")) == {None}
    assert result.get_requested_partitions(dg.AssetKey("reduced_features")) == set()

    materialized("pca_model", "basis-1")
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_requested_partitions(dg.AssetKey("reduced_features")) == {"A", "B", "C"}
    assert result.get_requested_partitions(dg.AssetKey("pca_model")) == set()
    for partition in ("A", "B", "C"):
        materialized("reduced_features", "projected-1", partition)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.total_requested == 0

    # Materialized again with the same data: image_embeddings kept its files, the refit gave the
    # same basis. Eager would request everything downstream again; nothing is requested.
    materialized("image_embeddings", "files-B-1", "B")
    materialized("pca_model", "basis-1")
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.total_requested == 0

    # New files for B: the PCA refits; a new basis: every partition is projected again.
    materialized("image_embeddings", "files-B-2", "B")
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_requested_partitions(dg.AssetKey("pca_model")) == {None}
    with_the_refit = result.get_requested_partitions(dg.AssetKey("reduced_features"))  # B, after pca_model
    materialized("pca_model", "basis-2")
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert with_the_refit | result.get_requested_partitions(dg.AssetKey("reduced_features")) == {"A", "B", "C"}


def test_every_asset_writes_through_the_one_data_root_pool_limited_to_one():
    from fruit_assets.concurrency import DATA_ROOT_POOL

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert graph.get(key).pools == {DATA_ROOT_POOL}, key


def test_repository_dagster_yaml_limits_the_pool_and_the_run_queue(tmp_path):
    import shutil

    shutil.copy(os.path.join(REPO, "dagster.yaml"), tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        assert config.run_queue_config.max_concurrent_runs == 2
        # No run holds the pool forever: bounded runtime, slots of dead runs freed.
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 21600
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60
