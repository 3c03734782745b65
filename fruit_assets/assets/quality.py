"""Feature-quality figures and checks (review.py's reports as metadata). Both checks warn, never fail:
a suspicious upload or a lossy PCA is for a person to look at, not a reason to stop the pipeline."""

from __future__ import annotations

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from fruit_assets.assets.plots import confusion_picture, markdown_image, thumbnails
from fruit_assets.steps.review import ReviewReport, SeparabilityReport, flagged_images

REVIEW_CHECKS = [
    AssetCheckSpec(
        "new_images_look_like_their_class",
        asset="image_embeddings",
        description="New images lie within their class's robust distance range (else: listed under review/).",
    ),
]
SEPARABILITY_CHECKS = [
    AssetCheckSpec(
        "pca_keeps_class_separability",
        asset="reduced_features",
        description="k-NN accuracy on the reduced features is within 2 points of the full embeddings'.",
    ),
]


def review_metadata(report: ReviewReport, review_root: str, shown: int = 20) -> dict:
    flagged = report.flagged
    metadata = {
        "num_new_images_reviewed": report.num_checked,
        "num_flagged_for_review": len(flagged),
        "review_path": MetadataValue.path(review_root),
        "review_seconds": round(report.seconds, 3),
    }
    if flagged:
        rows = "".join(
            f"| {r['path'].rsplit('/', 1)[-1]} | {r['fruit_class']} | {r['distance'] / r['threshold']:.2f} | {r['nearest_class']} |\n"
            for r in flagged[:shown]
        )
        metadata["flagged_for_review"] = MetadataValue.md(
            "| image | class | distance / class limit | looks more like |\n|---|---|---:|---|\n"
            + rows
            + (f"\n{len(flagged) - shown} more in {review_root}" if len(flagged) > shown else "")
        )
        pictures: dict[str, list[bytes]] = {}
        for row, data in flagged_images(flagged[:8]):
            pictures.setdefault(f"{row['fruit_class'][:8]}~{row['nearest_class'][:8]}", []).append(data)
        if pictures:
            metadata["flagged_thumbnails"] = MetadataValue.md(markdown_image(thumbnails(pictures), "flagged images"))
    return metadata


def review_check(report: ReviewReport) -> AssetCheckResult:
    count = len(report.flagged)
    description = (
        f"{count} of {report.num_checked} new images lie beyond their class's robust distance range"
        if count
        else f"all {report.num_checked} new images lie within their class's range"
    )
    return AssetCheckResult(
        check_name="new_images_look_like_their_class",
        passed=count == 0,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "flagged": count,
            "reviewed": report.num_checked,
            "modes": ", ".join(sorted(set(report.modes.values()))) or "none",
        },
    )


def separability_metadata(report: SeparabilityReport) -> dict:
    result = report.result
    if result is None:
        return {"separability": report.why_not}
    rows = "".join(
        f"| {name} | {full:.2f} | {reduced:.2f} | {total} |\n"
        for name, (full, reduced, total) in sorted(_class_rates(result).items())
    )
    metadata = {
        "knn_accuracy_full_embeddings": round(result.full.overall, 4),
        "knn_accuracy_reduced_features": round(result.reduced.overall, 4),
        "knn_accuracy_lost_by_pca": round(result.loss, 4),
        "separability_sample": f"{result.sample_size} images ({report.sample_per_class} per class at most), "
        f"{result.held_out} held out by path hash; 5-NN, Euclidean",
        "separability_seconds": round(report.seconds, 3),
        # "projection": the sample came with the projection's pass, no embedding was read again.
        "separability_sample_from": report.sample_from,
        "knn_accuracy_per_class": MetadataValue.md(
            "| class | full | reduced | held out |\n|---|---:|---:|---:|\n" + rows
        ),
    }
    confused = result.reduced.most_confused()
    if len(confused) >= 2:
        metadata["most_confused_classes"] = MetadataValue.md(
            markdown_image(
                confusion_picture(result.reduced.confusion, result.reduced.per_class, confused), "k-NN confusion"
            )
        )
    return metadata


def _class_rates(result) -> dict[str, tuple[float, float, int]]:
    """{class: (5-NN accuracy on the full embeddings, on the reduced features, images held out)}."""
    return {
        name: (result.full.per_class.get(name, (0, 0))[0] / max(1, total), correct / max(1, total), total)
        for name, (correct, total) in result.reduced.per_class.items()
    }


def class_separability(report: SeparabilityReport) -> dict[str, dict]:
    """Each class's own 5-NN accuracy on its held-out sample, full embeddings and reduced features."""
    if report.result is None:
        return {}
    return {
        name: {
            "class_knn_accuracy_full_embeddings": round(full, 4),
            "class_knn_accuracy_reduced_features": round(reduced, 4),
            "class_knn_held_out": total,
        }
        for name, (full, reduced, total) in _class_rates(report.result).items()
    }


def separability_check(report: SeparabilityReport, variance_target: float, tolerance: float = 0.02) -> AssetCheckResult:
    result = report.result
    if result is None:
        return AssetCheckResult(
            check_name="pca_keeps_class_separability",
            passed=True,
            severity=AssetCheckSeverity.WARN,
            description=f"not measured: {report.why_not}",
        )
    description = (
        f"5-NN accuracy {result.full.overall:.3f} on the full embeddings, {result.reduced.overall:.3f} "
        f"on the {result.k} components of target {variance_target:g}"
    )
    passed = result.loss <= tolerance
    if not passed:
        description += f": PCA loses {100 * result.loss:.1f} points (limit {100 * tolerance:.0f})"
        if result.keeping_target is not None:
            description += (
                f"; FRUIT_PCA_VARIANCE={result.keeping_target:g} (k={result.keeping_k}) keeps it within "
                f"{100 * tolerance:.0f} points"
            )
        else:
            description += "; no variance target below 1.0 keeps it on this sample"
    return AssetCheckResult(
        check_name="pca_keeps_class_separability",
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "accuracy_full": round(result.full.overall, 4),
            "accuracy_reduced": round(result.reduced.overall, 4),
            "loss": round(result.loss, 4),
            "keeping_target": result.keeping_target or 0.0,
        },
    )
