"""New image content for tests that need work to do: a copy of an existing image is not new work
any more (its embedding is found by content), so "new uploads" are fresh renders."""

from __future__ import annotations

import numpy as np

from fruit_assets.featurize.synthetic import CLASS_STYLES, jpeg_bytes, render_fruit


def fresh_jpeg(seed: int, style: int = 1) -> bytes:
    """A synthetic fruit (Banana-like by default) no sample dataset contains: the seed space is
    offset far from the sample writer's."""
    _name, colour, aspect = CLASS_STYLES[style % len(CLASS_STYLES)]
    return jpeg_bytes(render_fruit(np.random.default_rng([987_654, seed]), colour, aspect))
