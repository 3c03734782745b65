from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

IMAGE_SIZE = (224, 224)
# Pillow's own bomb guard is a warning up to 2x its limit; we make any image past this an error
# before pixels are decoded, so a forged header cannot make a worker allocate gigabytes.
# 25 Mpx admits what image datasets hold (Fruits-360: 100x100) and the photos people take (12 Mpx
# phones, the 24 Mpx default of recent iPhones at 5712x4284, 24 Mpx APS-C cameras), not 48 Mpx and
# larger modes. What one image costs in decode, in bytes a pixel: 4 for the decoded frame of any
# 8-bit PNG, TIFF or WebP (Pillow keeps RGB as 4 bytes a pixel); 8 where a second frame is needed
# (RGBA, LA or CMYK converted to RGB; 16-bit greyscale: frame 2, its bytes 2, float32 copy 4);
# 12 for 32-bit greyscale; up to 8 for a progressive JPEG's coefficients (libjpeg keeps them at
# full size whatever draft() asks), a baseline JPEG almost nothing (draft, below). At the cap:
# 100 MB typical, 200 MB at worst (300 MB for 32-bit), plus the fetched bytes. Measured, the peak
# RSS of decoding one 25 Mpx image before -> after draft, float32 and no needless copies: JPEG
# 294 -> 3 MB, RGB PNG 293 -> 100, RGBA PNG 293 -> 195, 16-bit PNG 670 -> 190; at the old cap of
# 64 Mpx a 16-bit image took 1.7 GB. An executor's Python workers share ~1 GiB of overhead with
# the model (~0.4 GiB each): anything larger must not be decoded at all.
MAX_IMAGE_PIXELS = 25_000_000
# An object larger than this is refused from its listed size, before a byte of it is fetched: no
# image within MAX_IMAGE_PIXELS needs more in a format we embed (uncompressed 8-bit RGBA at the
# cap is 100 MB; PNG and JPEG are far smaller), and a task fetching several at once must not pull
# a stray multi-gigabyte file.
MAX_IMAGE_BYTES = 4 * MAX_IMAGE_PIXELS

# Why an object is in the quarantine instead of the embeddings (its ``reason`` column).
# "out_of_memory": decoding it alone raised MemoryError (a Python worker memory limit,
# spark.executor.pyspark.memory). "worker_killed": its Python worker died twice while decoding it
# alone (killed for memory, or crashed; spark_jobs/embed.py). "vanished": listed in the manifest,
# deleted before its bytes were read. "changed_since_listing": its size is no longer the listed one,
# so the manifest's ETag names other bytes; like "vanished", read again by the next run.
QUARANTINE_REASONS = (
    "empty_file",
    "not_an_image",
    "corrupt_image",
    "too_large",
    "out_of_memory",
    "worker_killed",
    "vanished",
    "changed_since_listing",
)
# Reasons about the object's state at one instant, not its bytes: a later run reads it again.
RETRIED_REASONS = ("vanished", "changed_since_listing")


class ImageDecodeError(ValueError):
    """The bytes are not an image we can embed; ``reason`` is a short machine-readable category."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def decode_image(data: bytes) -> np.ndarray:
    """Bytes of any format Pillow opens -> RGB uint8 array of shape (224, 224, 3).

    The resize is ``Image.resize((224, 224), BILINEAR)`` on the RGB image, as specified; EXIF
    orientation is applied first so a rotated phone photo is embedded the way it is displayed.
    """
    if not data:
        raise ImageDecodeError("empty_file", "zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageDecodeError(
                        "too_large",
                        f"{width}x{height} pixels exceeds the limit of {MAX_IMAGE_PIXELS}",
                    )
                # JPEG only (other decoders ignore it): libjpeg scales the DCT by 1/2, 1/4 or 1/8, the
                # most that keeps both sides >= 448 px, so a 6000x4000 photo is decoded as 750x500
                # (1.5 MB, not 96 MB) and the BILINEAR resize below still reduces at least 2x (its
                # antialiasing, not libjpeg's 8x8 box, shapes the result). An image under 896 px
                # on a side is decoded as without it, bit for bit (tested), so Fruits-360 does not
                # move. Larger JPEGs do, slightly: measured on noisy 4032x3024 and 6000x4000 JPEGs,
                # a mean absolute change of 0.2-0.55 levels (at most 5) on the 224x224 input; the
                # relative L2 change of the test suite's random-weights embedding, 0.24-0.27, is
                # that of saving the same photo at JPEG quality 95 instead of 90 (0.21-0.27): a
                # random network amplifies any pixel change (no ImageNet weights offline here).
                image.draft("RGB", (2 * IMAGE_SIZE[0], 2 * IMAGE_SIZE[1]))
                image.load()
                ImageOps.exif_transpose(image, in_place=True)  # not in place, it copies every image
                rgb = _to_rgb(image)
                resized = rgb.resize(IMAGE_SIZE, Image.Resampling.BILINEAR)
                return np.asarray(resized, dtype=np.uint8)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise ImageDecodeError("too_large", str(error)) from error
    except Image.UnidentifiedImageError as error:
        raise ImageDecodeError("not_an_image", "not an image format Pillow can open") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError("corrupt_image", f"{type(error).__name__}: {error}") from error


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: Pillow's plain convert("RGB") clips to 255; scale to 8 bits instead.
        # float32 in place: half float64's memory and no temporaries; the same bytes, since
        # x * 255 / 65535 = x / 257 is never within float32's error (1e-5 here) of a .5 tie.
        array = np.asarray(image, dtype=np.float32)
        array *= np.float32(255.0 / (65535.0 if array.max() > 255 else 255.0))
        np.rint(array, out=array)
        image = Image.fromarray(array.astype(np.uint8))
        del array
    # An RGB image is resized as it is: convert("RGB") would copy the whole frame.
    return image if image.mode == "RGB" else image.convert("RGB")


def preprocess_batch(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 224, 224, 3) -> float32 in [-1, 1]: Keras' ``mobilenet_v2.preprocess_input``
    ("tf" mode: ``x / 127.5 - 1``) written out in numpy, so that Spark workers running ONNX Runtime
    never import TensorFlow. Same float32 operations in the same order: bit-identical (tested)."""
    batch = images.astype(np.float32, copy=True)
    batch /= np.float32(127.5)
    batch -= np.float32(1.0)
    return batch
