from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

IMAGE_SIZE = (224, 224)
# Pillow's own bomb guard is a warning up to 2x its limit; we make any image past this an error
# before pixels are decoded, so a forged header cannot make a worker allocate gigabytes.
MAX_IMAGE_PIXELS = 64_000_000
# An object larger than this is refused from its listed size, before a byte of it is fetched: no
# image within MAX_IMAGE_PIXELS needs more in a format we embed (64 Mpx of uncompressed 8-bit RGB
# is 192 MB), and a task fetching several at once must not pull a stray multi-gigabyte file.
MAX_IMAGE_BYTES = 256 * 1024 * 1024

# Why an object is in the quarantine instead of the embeddings (its ``reason`` column). "vanished":
# listed in the manifest, deleted before its bytes were read.
QUARANTINE_REASONS = ("empty_file", "not_an_image", "corrupt_image", "too_large", "vanished")


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
                image.load()
                image = ImageOps.exif_transpose(image)
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
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray((array * (255.0 / peak)).round().astype(np.uint8))
    return image.convert("RGB")


def preprocess_batch(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 224, 224, 3) -> float32 in [-1, 1]: Keras' ``mobilenet_v2.preprocess_input``
    ("tf" mode: ``x / 127.5 - 1``) written out in numpy, so that Spark workers running ONNX Runtime
    never import TensorFlow. Same float32 operations in the same order: bit-identical (tested)."""
    batch = images.astype(np.float32, copy=True)
    batch /= np.float32(127.5)
    batch -= np.float32(1.0)
    return batch
