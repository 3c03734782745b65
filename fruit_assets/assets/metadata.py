"""Turns step reports into Dagster metadata.

A run of a partitioned asset usually covers many classes (a backfill, or the CLI's one ranged
run), and Dagster writes one materialization per partition. Each partition's event carries what is
true of that class: its own counts (``num_*``) and what its rows were made with. What describes the
run (its totals ``run_num_*``, timings, CPU, per-class tables, pictures, Spark facts) is recorded
once, on the run's last partition (the end of its range; Dagster may write the partitions' events
in another order, so readers look for ``RUN_FIGURES_MARK``): the event log then grows with runs, not with runs x classes
(210 copies of the pictures per Fruits-360 run otherwise), the UI's plots of run figures get one
point per run, and a one-class run (the sensor's) shows both on its one partition.
"""

from collections.abc import Mapping, Sequence

from dagster import AssetExecutionContext, AssetKey, DagsterEventType, DagsterInstance, MetadataValue

from fruit_assets.steps.reports import ClassCounts, StepReport


def class_table(rows: dict[str, dict], columns: tuple[str, ...] | None = None) -> MetadataValue:
    """{class: {column: value}} as a Markdown table, classes sorted; columns sorted unless given."""
    columns = columns or tuple(sorted({key for row in rows.values() for key in row}))
    header = "| class | " + " | ".join(columns) + " |\n|---|" + "---:|" * len(columns) + "\n"
    body = "".join(
        f"| {name} | " + " | ".join(str(row.get(column, "")) for column in columns) + " |\n"
        for name, row in sorted(rows.items())
    )
    return MetadataValue.md(header + body)


def per_class_table(
    report: StepReport, columns: tuple[str, ...] = ("images", "embedded", "quarantined")
) -> MetadataValue:
    return class_table(
        {name: {c: getattr(counts, c) for c in columns} for name, counts in report.per_class.items()}, columns
    )


def spark_metadata(spark) -> dict:
    """The Spark application a step ran in: its id, where its jobs stay visible after the run (the
    History Server), the executors it had and the task attempts that failed (retried)."""
    facts = spark.application_facts()
    if facts is None:
        return {}
    return {
        "spark_application_id": facts.application_id,
        "spark_history": MetadataValue.url(facts.history_url),
        "spark_executors": facts.executors,
        "spark_failed_task_attempts": facts.failed_task_attempts,
    }


def class_counts(report: StepReport, fruit_class: str, counts: Sequence[str]) -> dict:
    """One class's own counts, ``num_<count>``: zeros for a class the step had nothing for."""
    of_class = report.per_class.get(fruit_class, ClassCounts())
    return {f"num_{count}": getattr(of_class, count) for count in counts}


# The one key every run-wide record has: how a reader finds the partition that carries them.
RUN_FIGURES_MARK = "run_num_classes"


def latest_run_figures(instance: DagsterInstance, asset_key: AssetKey) -> dict[str, MetadataValue]:
    """The metadata describing the latest run that materialized the asset: its partition's event
    that carries the run's figures (of an unpartitioned asset, its latest materialization)."""
    latest = instance.get_latest_materialization_event(asset_key)
    if latest is None or latest.asset_materialization is None:
        return {}
    if latest.asset_materialization.partition is None or RUN_FIGURES_MARK in latest.asset_materialization.metadata:
        return dict(latest.asset_materialization.metadata)
    for entry in instance.all_logs(latest.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is not None and materialization.asset_key == asset_key:
            if RUN_FIGURES_MARK in materialization.metadata:
                return dict(materialization.metadata)
    return {}


def run_metadata(report: StepReport, counts: Sequence[str]) -> dict:
    """The run's totals over every class it handled (``run_num_*``) and its timings."""
    return {
        RUN_FIGURES_MARK: len(report.per_class),
        **{f"run_num_{count}": report.total(count) for count in counts},
        "elapsed_seconds": round(report.seconds, 3),
        "images_per_second": round(report.images_per_second, 1),
    }


def record_by_partition(context: AssetExecutionContext, of_partition: Mapping[str, dict], of_run: dict) -> None:
    """Each partition's own metadata on its own materialization, the run's on its last partition
    (module docstring). A single MaterializeResult's metadata would be copied to every partition."""
    keys = list(context.partition_keys)
    for key in keys:
        context.add_asset_metadata(
            {**of_partition.get(key, {}), **(of_run if key == keys[-1] else {})}, partition_key=key
        )
