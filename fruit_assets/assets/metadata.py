"""Turns pipeline reports into Dagster metadata."""

from dagster import MetadataValue

from fruit_assets.pipeline import StepReport


def per_class_table(report: StepReport, columns: tuple[str, ...] = ("images", "embedded", "quarantined")) -> MetadataValue:
    header = "| class | " + " | ".join(columns) + " |\n|---|" + "---:|" * len(columns) + "\n"
    rows = "".join(
        f"| {name} | " + " | ".join(str(getattr(counts, column)) for column in columns) + " |\n"
        for name, counts in sorted(report.per_class.items())
    )
    return MetadataValue.md(header + rows)


def step_metadata(report: StepReport) -> dict:
    return {
        "num_classes": len(report.per_class),
        "num_images": report.images,
        "output_path": MetadataValue.path(report.output),
        "elapsed_seconds": round(report.seconds, 3),
        "images_per_second": round(report.images_per_second, 1),
    }
