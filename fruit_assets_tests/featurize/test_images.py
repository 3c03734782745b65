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


def test_the_pixel_cap_admits_an_image_at_it_and_refuses_one_pixel_row_more():
    from fruit_assets.featurize.images import MAX_IMAGE_PIXELS

    side = int(MAX_IMAGE_PIXELS**0.5)
    assert side * side == MAX_IMAGE_PIXELS  # 5000 x 5000: a 24 Mpx photo is in, a 48 Mpx one out
    at_cap = encode(Image.new("L", (side, side), 128), "PNG", optimize=True)
    assert decode_image(at_cap).shape == (224, 224, 3)
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(encode(Image.new("L", (side, side + 1), 128), "PNG", optimize=True))
    assert raised.value.reason == "too_large" and f"{side}x{side + 1}" in str(raised.value)


def test_sixteen_bit_scaling_is_float32_exact_and_a_quarter_of_the_memory():
    """Every 16-bit value maps to the byte the float64 formula gave, with 6 traced bytes per pixel
    at the peak (the frame's bytes and one float32 copy) where float64 and its temporaries took 24."""
    import tracemalloc

    every_value = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    data = encode(Image.fromarray(every_value), "PNG")
    scaled = (every_value.astype(np.float64) * (255.0 / 65535.0)).round().astype(np.uint8)
    expected = np.asarray(Image.fromarray(scaled).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(decode_image(data), expected)

    large = encode(Image.fromarray(np.tile(every_value, (4, 4))), "PNG")  # 1024 x 1024
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        decode_image(large)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak / 1024**2 < 7, f"{peak / 1024**2:.1f} traced bytes per pixel"


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth gradient under sensor-like noise: what a JPEG of a photo holds."""
    rng = np.random.default_rng(seed)
    base = np.asarray(gradient(size=(width, height)), dtype=np.float32)
    return Image.fromarray(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("size", [(100, 100), (447, 600), (895, 1400)])
def test_jpegs_under_896_px_on_a_side_decode_bit_for_bit_as_without_draft(size):
    data = encode(photo(*size), "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as image:
        expected = np.asarray(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(decode_image(data), expected)


def test_a_large_jpeg_is_decoded_at_reduced_scale_close_to_the_full_decode(tmp_path):
    """A 6000 x 4000 JPEG (24 Mpx) is decoded at 1/8 scale: 750 x 500, never the 96 MB frame; the
    224 x 224 input moves by half a grey level on average from the full decode's."""
    import subprocess
    import sys

    data = encode(photo(6000, 4000), "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as image:
        full = np.asarray(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), dtype=np.int16)
    drafted = decode_image(data)
    assert drafted.shape == (224, 224, 3)
    change = np.abs(drafted.astype(np.int16) - full)
    assert change.mean() < 1.0 and change.max() <= 8

    path = tmp_path / "large.jpg"
    path.write_bytes(data)
    script = f"""
import resource
from fruit_assets.featurize import decode_image
data = open({str(path)!r}, "rb").read()
decode_image(open({str(tmp_path / 'warm.jpg')!r}, "rb").read())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
decode_image(data)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    (tmp_path / "warm.jpg").write_bytes(encode(photo(300, 200), "JPEG"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) < 24, f"peak RSS grew {done.stdout.strip()} MB decoding a 24 Mpx JPEG"
