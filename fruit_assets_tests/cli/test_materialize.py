"""`fruit-assets materialize` plans its runs: embeddings per contiguous block of the selected classes,
then one run of the PCA and the projection of every class (one basis in the published table)."""

from fruit_assets.cli.materialize import PlannedRun, plan_runs

ORDER = ["Apple Red 1", "Banana", "Kiwi", "Pepper Red"]


def test_every_class_is_one_run_per_partitioned_job():
    runs = plan_runs(ORDER, ORDER, convert_model=True)
    assert runs == [
        PlannedRun("convert_model"),
        PlannedRun("embed_classes", ("Apple Red 1", "Pepper Red")),
        PlannedRun("fit_and_reduce", ("Apple Red 1", "Pepper Red")),
    ]
    assert [run.label for run in runs] == [
        "convert_model", "embed_classes [Apple Red 1 .. Pepper Red]", "fit_and_reduce [Apple Red 1 .. Pepper Red]"]


def test_the_model_conversion_runs_only_when_needed():
    assert [run.job_name for run in plan_runs(ORDER, ORDER, convert_model=False)] == [
        "embed_classes", "fit_and_reduce"]


def test_a_selection_with_gaps_is_embedded_per_block_in_the_instance_order_and_every_class_reduced():
    runs = plan_runs(["Pepper Red", "Apple Red 1", "Banana"], ORDER, convert_model=False)
    assert [(run.job_name, run.key_range) for run in runs] == [
        ("embed_classes", ("Apple Red 1", "Banana")),
        ("embed_classes", ("Pepper Red", "Pepper Red")),
        ("fit_and_reduce", ("Apple Red 1", "Pepper Red")),
    ]
    assert [run.label for run in runs[:2]] == ["embed_classes [Apple Red 1 .. Banana]", "embed_classes [Pepper Red]"]


def test_one_class_selected_still_reprojects_every_class_after_the_refit():
    runs = plan_runs(["Banana"], ORDER, convert_model=False)
    assert [run.label for run in runs] == ["embed_classes [Banana]", "fit_and_reduce [Apple Red 1 .. Pepper Red]"]


def test_partitioned_runs_carry_dagster_s_partition_range_tags():
    ranged = PlannedRun("embed_classes", ("Apple Red 1", "Kiwi"))
    assert ranged.tags == {"dagster/asset_partition_range_start": "Apple Red 1",
                           "dagster/asset_partition_range_end": "Kiwi"}
    single = PlannedRun("fit_and_reduce", ("Banana", "Banana"))
    assert single.tags == {"dagster/asset_partition_range_start": "Banana",
                           "dagster/asset_partition_range_end": "Banana"}
    assert PlannedRun("convert_model").tags == {}


def test_the_tags_are_the_ones_dagster_reads_a_partition_range_from():
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    assert set(PlannedRun("embed_classes", ("a", "b")).tags) == {ASSET_PARTITION_RANGE_START_TAG,
                                                                  ASSET_PARTITION_RANGE_END_TAG}


def test_a_selection_outside_the_instance_order_embeds_nothing():
    assert [run.job_name for run in plan_runs(["Mango"], ORDER, convert_model=False)] == ["fit_and_reduce"]


def test_the_summary_prints_the_embedding_s_cpu_seconds_and_images_per_cpu_second(capsys, tmp_path):
    from fruit_assets.assets.embeddings import cpu_metadata
    from fruit_assets.cli.console import NORMAL, Terminal
    from fruit_assets.cli.materialize import _print_summary
    from fruit_assets.steps.reports import ClassCounts, StepReport

    report = StepReport(per_class={"Banana": ClassCounts(images=40, embedded=40, featurized=40)},
                        python_cpu_seconds=9.5, jvm_cpu_seconds=0.5, task_seconds=12.0)
    embeddings = {"run_num_images": 40, "run_num_embedded": 40, "run_num_quarantined": 0, "run_num_featurized": 40,
                  "run_num_reused": 0, "images_per_second": 3.3, "inference_engine": "onnxruntime",
                  # As _materializations reads them back from the materialization's metadata.
                  **{key: getattr(value, "value", value) for key, value in cpu_metadata(report).items()}}
    terminal = Terminal(NORMAL, str(tmp_path / "log"))
    _print_summary(terminal, {"image_embeddings": embeddings}, 1, 1, 20.0)
    lines = capsys.readouterr().out.splitlines()
    assert "  embedding CPU        10.0 CPU-s on the executors (Python 9.5, JVM 0.5), 4.00 images per CPU-second" in lines

    # Nothing featurized: no CPU line. The JVM side unread: the Python side, marked.
    _print_summary(terminal, {"image_embeddings": {**embeddings, "run_num_featurized": 0}}, 1, 1, 1.0)
    assert "embedding CPU" not in capsys.readouterr().out
    report.jvm_cpu_seconds = None
    unread = {**embeddings, **{key: getattr(value, "value", value) for key, value in cpu_metadata(report).items()}}
    _print_summary(terminal, {"image_embeddings": unread}, 1, 1, 20.0)
    assert "9.5 CPU-s on the executors (Python 9.5, JVM ?), 4.21 images per CPU-second" in capsys.readouterr().out


def test_the_command_s_spark_start_never_waits_for_the_context_it_lends(spark):
    # The command lends the Future of its own start to the runs; when the runs get there first (a
    # slow JVM launch, as when the class archive is recorded), the start must not wait for that
    # Future: it once did, and the command hung forever.
    import threading
    from concurrent.futures import Future

    from fruit_assets.cli.materialize import _context_of, _start_spark
    from fruit_assets.resources.spark import lend_context

    spark_starting: Future = Future()
    with lend_context(_context_of(spark_starting)) as lent:
        def start():
            try:
                spark_starting.set_result(_start_spark(spark.sparkContext.master, "/tmp/unused-root"))
            except BaseException as error:  # noqa: BLE001 - the assertion below names it
                spark_starting.set_exception(error)

        threading.Thread(target=start, daemon=True).start()
        # The fixture's context has the same master: reused, so the start takes seconds, not minutes.
        assert lent.result(timeout=60) is spark.sparkContext
