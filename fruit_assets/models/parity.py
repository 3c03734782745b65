"""Whether a converted model may be used: the parity rule applied where a model is chosen.

The rule itself (relative L2 error per image, ``featurize.onnx_model.within_parity``) is written
once; this module says what happens when a stored model breaks it, and which images it is
measured on.
"""

from __future__ import annotations

from fruit_assets.errors import UserFacingError
from fruit_assets.featurize.onnx_model import PARITY_TOLERANCE


class ModelParityError(UserFacingError):
    """The converted model does not compute what TensorFlow computes with the same weights."""


def parity_images():
    """Fixed preprocessed images the converted model is compared on (odd sizes and colours
    included: the synthetic sample's fruit on varied backgrounds)."""
    from fruit_assets.featurize.images import preprocess_batch
    from fruit_assets.featurize.synthetic import synthetic_images

    return preprocess_batch(synthetic_images(8, seed=2024))


def require_parity(record, location: str, remedy: str) -> None:
    """Raises ``ModelParityError`` (saying ``remedy``) unless ``record``'s recorded parity with
    TensorFlow is within the rule."""
    if not record.parity_ok:
        raise ModelParityError(
            f"the converted model {location} differs from TensorFlow by "
            f"{record.parity_max_rel:.2g} (relative; limit {PARITY_TOLERANCE:g}): {remedy}"
        )
