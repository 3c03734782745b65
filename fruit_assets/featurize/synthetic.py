"""Synthetic Fruits-360-style images: the demo dataset's renderer, the random model's calibration
images and the parity images. No Dagster, no Spark, no storage (``cli/sample.py`` writes them out)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# (name, RGB colour, aspect ratio of the fruit's ellipse): names as in Fruits-360, with spaces
# and digits, because class names with spaces are what breaks naive pipelines.
CLASS_STYLES = [
    ("Apple Red 1", (190, 30, 40), 1.0),
    ("Banana", (235, 205, 60), 2.6),
    ("Pepper Red", (200, 20, 20), 1.2),
    ("Kiwi", (130, 100, 60), 1.3),
    ("Lemon", (245, 230, 70), 1.35),
    ("Avocado", (60, 90, 40), 1.45),
    ("Grape White 3", (200, 210, 120), 1.1),
    ("Orange", (245, 140, 20), 1.0),
    ("Pear Abate", (190, 160, 80), 1.7),
    ("Plum 2", (90, 30, 80), 1.05),
    ("Cherry 1", (150, 10, 30), 0.95),
    ("Lime", (110, 180, 50), 1.15),
]


def class_styles(count: int) -> list[tuple[str, tuple[int, int, int], float]]:
    styles = []
    for index in range(count):
        name, colour, aspect = CLASS_STYLES[index % len(CLASS_STYLES)]
        generation = index // len(CLASS_STYLES)
        if generation:
            name = f"{name} v{generation + 1}"
            colour = tuple(int((c + 53 * generation) % 256) for c in colour)
        styles.append((name, colour, aspect))
    return styles


def render_fruit(rng: np.random.Generator, colour, aspect: float, size: int = 100) -> Image.Image:
    """A shaded fruit on a white background, varied in size, position, rotation and tint."""
    scale = 4  # draw large, then downsample: smooth edges like a real photo
    canvas = size * scale
    image = Image.new("RGB", (canvas, canvas), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    tint = np.clip(np.array(colour) + rng.normal(0, 14, 3), 0, 255)
    height = canvas * rng.uniform(0.55, 0.75)
    width = height / aspect  # upright, elongated along the vertical axis
    cx = canvas / 2 + rng.normal(0, canvas * 0.03)
    cy = canvas / 2 + rng.normal(0, canvas * 0.03)
    for step in range(12):  # concentric ellipses: a radial shading that reads as a 3-D fruit
        shrink = 1 - step / 14
        shade = np.clip(tint * (0.65 + 0.45 * step / 12), 0, 255).astype(int)
        box = [cx - width / 2 * shrink, cy - height / 2 * shrink, cx + width / 2 * shrink, cy + height / 2 * shrink]
        box[0] -= step * width * 0.01
        box[1] -= step * height * 0.015
        draw.ellipse(box, fill=tuple(shade))
    stem_top = cy - height / 2
    draw.line(
        [cx, stem_top + 8, cx + rng.uniform(-12, 12), stem_top - canvas * 0.06], fill=(80, 50, 20), width=scale * 3
    )
    image = image.rotate(rng.uniform(-40, 40), resample=Image.Resampling.BILINEAR, fillcolor=(255, 255, 255))
    image = image.filter(ImageFilter.GaussianBlur(radius=scale * 0.6))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def sample_dataset(classes: int, images: int, seed: int = 0):
    """Yields (class name, file name, JPEG bytes) in Fruits-360 layout: ``<i>_100.jpg``."""
    for class_index, (name, colour, aspect) in enumerate(class_styles(classes)):
        rng = np.random.default_rng([seed, class_index])
        for image_index in range(images):
            yield name, f"{image_index}_100.jpg", jpeg_bytes(render_fruit(rng, colour, aspect))


def synthetic_images(count: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, 224, 224, 3) fruit images, cycling through the class styles."""
    from fruit_assets.featurize.images import decode_image

    styles = class_styles(len(CLASS_STYLES))
    rng = np.random.default_rng(seed)
    out = np.empty((count, 224, 224, 3), dtype=np.uint8)
    for index in range(count):
        _, colour, aspect = styles[index % len(styles)]
        out[index] = decode_image(jpeg_bytes(render_fruit(rng, colour, aspect)))
    return out
