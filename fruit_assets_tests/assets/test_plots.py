import base64

import numpy as np
from PIL import Image
import io

from fruit_assets.assets.plots import MAX_BYTES, class_counts_bars, explained_variance_curve, markdown_image, pc_scatter, thumbnails
from fruit_assets.featurize.synthetic import jpeg_bytes, render_fruit


def decoded(markdown: str) -> Image.Image:
    data = base64.b64decode(markdown.split("base64,", 1)[1].rstrip(")"))
    assert len(data) < MAX_BYTES
    return Image.open(io.BytesIO(data))


def test_plots_are_small_pngs_in_markdown():
    ratios = np.geomspace(0.3, 1e-4, 200)
    ratios /= ratios.sum()
    rng = np.random.default_rng(0)
    figures = [
        explained_variance_curve(ratios, 12, 0.95),
        pc_scatter(rng.normal(size=(5000, 2)), [f"class {i % 7}" for i in range(5000)]),
        class_counts_bars({"Apple Red 1": (40, 2), "Banana": (39, 0)}),
        thumbnails({"Banana": [jpeg_bytes(render_fruit(rng, (235, 205, 60), 2.6))] * 3, "Broken": [b"not an image"]}),
    ]
    for png in figures:
        image = decoded(markdown_image(png, "plot"))
        assert image.format == "PNG" and image.size[0] > 100
        assert np.asarray(image.convert("L")).std() > 5  # something is drawn


def test_thumbnails_refuse_a_bomb_without_decoding_it():
    import warnings

    good = jpeg_bytes(render_fruit(np.random.default_rng(0), (200, 40, 40), 1.0))
    bomb = io.BytesIO()
    Image.new("L", (10000, 10000)).save(bomb, "PNG", optimize=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = thumbnails({"A": [good, bomb.getvalue(), b"", b"not an image"]})
    # Pillow warns as it starts to decode a 100-megapixel image; the bounded decoder never gets there.
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    with Image.open(io.BytesIO(png)) as sheet:
        assert sheet.format == "PNG" and sheet.width > 48
