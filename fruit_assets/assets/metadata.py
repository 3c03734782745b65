"""Turns step reports into Dagster metadata."""

from dagster import MetadataValue

from fruit_assets.steps.reports import StepReport


def class_table(rows: dict[str, dict], columns: tuple[str, ...] | None = None) -> MetadataValue:
    """{class: {column: value}} as a Markdown table, classes sorted; columns sorted unless given."""
    columns = columns or tuple(sorted({key for row in rows.values() for key in row}))
    header = "| class | " + " | ".join(columns) + " |\n|---|" + "---:|" * len(columns) + "\n"
    body = "".join(
        f"| {name} | " + " | ".join(str(row.get(column, "")) for column in columns) + " |\n"
        for name, row in sorted(rows.items())
    )
    return MetadataValue.md(header + body)


def per_class_table(report: StepReport, columns: tuple[str, ...] = ("images", "embedded", "quarantined")) -> MetadataValue:
    return class_table({name: {c: getattr(counts, c) for c in columns} for name, counts in report.per_class.items()},
                       columns)


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


def step_metadata(report: StepReport) -> dict:
    return {
        "num_classes": len(report.per_class),
        "num_images": report.images,
        "output_path": MetadataValue.path(report.output),
        "elapsed_seconds": round(report.seconds, 3),
        "images_per_second": round(report.images_per_second, 1),
    }
