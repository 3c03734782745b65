"""Small PNG figures for asset metadata (Markdown with an embedded data URI). No Dagster."""

from __future__ import annotations

import base64
import io

import numpy as np

MAX_BYTES = 200_000


def load_plotting():
    """matplotlib with its file-only backend: half a second to import, which a caller that waits
    for something else anyway (the CLI, for Spark's start) can spend there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(width=5.0, height=3.2):
    plt = load_plotting()
    return plt, plt.figure(figsize=(width, height), dpi=90)


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    if len(png) > MAX_BYTES:
        raise ValueError(f"{alt}: {len(png)} bytes is over the {MAX_BYTES}-byte budget for metadata images")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def explained_variance_curve(ratios_all: np.ndarray, k: int, target: float) -> bytes:
    plt, fig = _figure()
    axis = fig.add_subplot()
    cumulative = np.cumsum(ratios_all)
    shown = min(len(cumulative), max(2 * k, 50))
    axis.plot(np.arange(1, shown + 1), cumulative[:shown], color="#2b6cb0")
    axis.axhline(target, color="#c05621", linestyle="--", linewidth=1, label=f"target {target:g}")
    axis.axvline(k, color="#2f855a", linestyle=":", linewidth=1.5, label=f"k = {k}")
    axis.set_xlabel("number of components")
    axis.set_ylabel("cumulative explained variance")
    axis.set_ylim(0, 1.01)
    axis.legend(loc="lower right")
    return _png(plt, fig)


def pc_scatter(points: np.ndarray, labels: list[str], max_points: int = 2000) -> bytes:
    plt, fig = _figure(5.5, 4.0)
    axis = fig.add_subplot()
    if len(points) > max_points:
        keep = np.random.default_rng(0).choice(len(points), max_points, replace=False)
        points, labels = points[keep], [labels[i] for i in keep]
    classes = sorted(set(labels))
    cmap = plt.get_cmap("tab20")
    for index, name in enumerate(classes):
        mask = np.array([label == name for label in labels])
        axis.scatter(points[mask, 0], points[mask, 1], s=8, color=cmap(index % 20), label=name)
    axis.set_xlabel("PC 1")
    axis.set_ylabel("PC 2")
    if len(classes) <= 12:
        axis.legend(fontsize=7, markerscale=1.5, loc="best")
    return _png(plt, fig)


def confusion_picture(
    confusion: dict[tuple[str, str], int], per_class: dict[str, tuple[int, int]], classes: list[str]
) -> bytes:
    """Row-normalised confusion matrix of the k-NN predictions among ``classes`` (the most confused
    ones): the diagonal is each class's accuracy, off-diagonal cells where its images went."""
    plt, fig = _figure(5.2, 4.4)
    axis = fig.add_subplot()
    n = len(classes)
    matrix = np.zeros((n, n))
    for i, true in enumerate(classes):
        correct, total = per_class.get(true, (0, 0))
        if total:
            matrix[i, i] = correct / total
            for j, predicted in enumerate(classes):
                if j != i:
                    matrix[i, j] = confusion.get((true, predicted), 0) / total
    image = axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    names = [c[:16] for c in classes]
    axis.set_xticks(range(n), names, rotation=60, ha="right", fontsize=7)
    axis.set_yticks(range(n), names, fontsize=7)
    axis.set_xlabel("predicted (k-NN on reduced features)")
    axis.set_ylabel("true class")
    fig.colorbar(image, fraction=0.046, pad=0.04)
    return _png(plt, fig)


def class_counts_bars(per_class: dict[str, tuple[int, int]]) -> bytes:
    """{class: (embedded, quarantined)} -> stacked horizontal bars."""
    names = sorted(per_class)[:40]
    plt, fig = _figure(5.0, max(1.8, 0.28 * len(names) + 0.8))
    axis = fig.add_subplot()
    embedded = [per_class[n][0] for n in names]
    quarantined = [per_class[n][1] for n in names]
    axis.barh(names, embedded, color="#2b6cb0", label="embedded")
    axis.barh(names, quarantined, left=embedded, color="#c53030", label="quarantined")
    axis.invert_yaxis()
    axis.set_xlabel("images")
    axis.legend(fontsize=7, loc="lower right")
    return _png(plt, fig)


def thumbnails(images_by_class: dict[str, list[bytes]], size: int = 48) -> bytes:
    """A grid: one row per class (at most 12), a few thumbnails each."""
    from PIL import Image, ImageDraw

    from fruit_assets.featurize.images import ImageDecodeError, decode_image

    rows = sorted(images_by_class)[:12]
    per_row = max((len(images_by_class[r]) for r in rows), default=0)
    label_width = 110
    sheet = Image.new("RGB", (label_width + per_row * (size + 4), max(1, len(rows)) * (size + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(rows):
        draw.text((4, row * (size + 4) + size // 2 - 6), name[:18], fill=(40, 40, 40))
        for column, data in enumerate(images_by_class[name]):
            try:
                # The embedding path's bounded decoder: a bomb is refused from its header, not decoded.
                thumb = Image.fromarray(decode_image(data))
            except ImageDecodeError:
                continue  # an empty cell; the file is quarantined by image_embeddings
            thumb.thumbnail((size, size))
            sheet.paste(thumb, (label_width + column * (size + 4), row * (size + 4)))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
