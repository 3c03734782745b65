"""`fruit-assets materialize` plans its runs: embeddings per contiguous block of the selected classes,
then the PCA, then the projection of every class (one basis in the published table)."""

from fruit_assets.cli.materialize import PlannedRun, plan_runs

ORDER = ["Apple Red 1", "Banana", "Kiwi", "Pepper Red"]


def test_every_class_is_one_run_per_partitioned_job():
    runs = plan_runs(ORDER, ORDER, convert_model=True)
    assert runs == [
        PlannedRun("convert_model"),
        PlannedRun("embed_classes", ("Apple Red 1", "Pepper Red")),
        PlannedRun("fit_pca"),
        PlannedRun("reduce_classes", ("Apple Red 1", "Pepper Red")),
    ]
    assert [run.label for run in runs] == [
        "convert_model", "embed_classes [Apple Red 1 .. Pepper Red]", "fit_pca",
        "reduce_classes [Apple Red 1 .. Pepper Red]"]


def test_the_model_conversion_runs_only_when_needed():
    assert [run.job_name for run in plan_runs(ORDER, ORDER, convert_model=False)] == [
        "embed_classes", "fit_pca", "reduce_classes"]


def test_a_selection_with_gaps_is_embedded_per_block_in_the_instance_order_and_every_class_reduced():
    runs = plan_runs(["Pepper Red", "Apple Red 1", "Banana"], ORDER, convert_model=False)
    assert [(run.job_name, run.key_range) for run in runs] == [
        ("embed_classes", ("Apple Red 1", "Banana")),
        ("embed_classes", ("Pepper Red", "Pepper Red")),
        ("fit_pca", None),
        ("reduce_classes", ("Apple Red 1", "Pepper Red")),
    ]
    assert [run.label for run in runs[:2]] == ["embed_classes [Apple Red 1 .. Banana]", "embed_classes [Pepper Red]"]


def test_one_class_selected_still_reprojects_every_class_after_the_refit():
    runs = plan_runs(["Banana"], ORDER, convert_model=False)
    assert [run.label for run in runs] == ["embed_classes [Banana]", "fit_pca", "reduce_classes [Apple Red 1 .. Pepper Red]"]


def test_partitioned_runs_carry_dagster_s_partition_range_tags():
    ranged = PlannedRun("embed_classes", ("Apple Red 1", "Kiwi"))
    assert ranged.tags == {"dagster/asset_partition_range_start": "Apple Red 1",
                           "dagster/asset_partition_range_end": "Kiwi"}
    single = PlannedRun("reduce_classes", ("Banana", "Banana"))
    assert single.tags == {"dagster/asset_partition_range_start": "Banana",
                           "dagster/asset_partition_range_end": "Banana"}
    assert PlannedRun("fit_pca").tags == {} and PlannedRun("convert_model").tags == {}


def test_the_tags_are_the_ones_dagster_reads_a_partition_range_from():
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    assert set(PlannedRun("embed_classes", ("a", "b")).tags) == {ASSET_PARTITION_RANGE_START_TAG,
                                                                  ASSET_PARTITION_RANGE_END_TAG}


def test_a_selection_outside_the_instance_order_embeds_nothing():
    assert [run.job_name for run in plan_runs(["Mango"], ORDER, convert_model=False)] == ["fit_pca", "reduce_classes"]
