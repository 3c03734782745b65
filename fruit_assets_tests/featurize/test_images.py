import io

import numpy as np
import pytest
from PIL import Image

from fruit_assets.featurize import ImageDecodeError, decode_image, preprocess_batch


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def gradient(mode="RGB", size=(100, 80)) -> Image.Image:
    x = np.linspace(0, 255, size[0], dtype=np.uint8)
    rgb = np.stack([np.tile(x, (size[1], 1)), np.tile(x[::-1], (size[1], 1)), np.full((size[1], size[0]), 90, np.uint8)], -1)
    return Image.fromarray(rgb).convert(mode)


def test_decode_matches_the_specified_pillow_pipeline():
    image = gradient()
    data = encode(image, "JPEG", quality=95)
    expected = np.asarray(
        Image.open(io.BytesIO(data)).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    )
    decoded = decode_image(data)
    assert decoded.shape == (224, 224, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize("mode, fmt", [("RGBA", "PNG"), ("L", "PNG"), ("CMYK", "JPEG"), ("P", "GIF"), ("RGB", "WEBP")])
def test_decode_converts_any_mode_to_rgb(mode, fmt):
    decoded = decode_image(encode(gradient(mode), fmt))
    assert decoded.shape == (224, 224, 3)
    assert decoded.std() > 10  # real content, not a blank frame


def test_sixteen_bit_png_is_scaled_not_clipped():
    ramp = (np.tile(np.linspace(0, 65535, 64), (64, 1))).astype(np.uint16)
    decoded = decode_image(encode(Image.fromarray(ramp), "PNG"))
    assert decoded[:, 0].mean() < 10 and decoded[:, -1].mean() > 245
    assert 100 < decoded[:, 112].mean() < 155  # mid-grey in the middle, not saturated white


def test_exif_orientation_is_applied():
    image = gradient(size=(120, 60))  # landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    rotated = decode_image(encode(image, "JPEG", exif=exif))
    plain = decode_image(encode(image, "JPEG"))
    # the displayed image is portrait: its left-right gradient becomes top-bottom
    assert abs(int(rotated[0, :, 0].mean()) - int(rotated[-1, :, 0].mean())) > 100
    assert abs(int(plain[:, 0, 0].mean()) - int(plain[:, -1, 0].mean())) > 100


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty_file"),
        (b"\x00\x00\x00\x01Bud1" + b"\x00" * 100, "not_an_image"),  # a .DS_Store
        (b"just some text\n", "not_an_image"),
    ],
)
def test_bad_bytes_raise_a_categorised_error(data, reason):
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(data)
    assert raised.value.reason == reason


def test_truncated_jpeg_is_corrupt_not_a_crash():
    data = encode(gradient(), "JPEG")
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(data[: len(data) // 2])
    assert raised.value.reason == "corrupt_image"


def test_decompression_bomb_is_refused_before_decoding():
    # A tiny PNG whose header claims 100k x 100k pixels.
    data = encode(Image.new("L", (10000, 10000)), "PNG", optimize=True)
    assert len(data) < 200_000
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(data)
    assert raised.value.reason == "too_large"


def test_preprocess_is_bit_identical_to_keras_mobilenet_v2_preprocess_input():
    """Written in numpy so ONNX Runtime workers never import TensorFlow; it must not drift."""
    from keras.applications.mobilenet_v2 import preprocess_input

    images = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    out = preprocess_batch(images)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, preprocess_input(images.astype(np.float32)))
    assert images.dtype == np.uint8  # input untouched


def test_every_quarantine_reason_is_documented_in_the_readme():
    import os
    import re

    from fruit_assets.featurize.images import QUARANTINE_REASONS
    from fruit_assets_tests.harness import REPO

    with open(os.path.join(REPO, "README.md")) as handle:
        [row] = [line for line in handle if line.startswith("| quarantine |")]
    listed = re.findall(r"`(\w+)`", row.split("`reason` (", 1)[1].split(")", 1)[0])
    assert sorted(listed) == sorted(QUARANTINE_REASONS)
    assert {"empty_file", "not_an_image", "corrupt_image", "too_large"} <= set(QUARANTINE_REASONS)  # decode's
