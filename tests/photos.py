"""Photo-like test images for the JPEG decoder tests: smooth colour fields plus sensor-like noise, which
is what photos look like to a JPEG codec (and what makes entropy decoding a large share of the work)."""

import numpy as np


def photo(size: tuple[int, int], seed: int) -> np.ndarray:
    """A ``size`` = (width, height) uint8 RGB array, the same for the same seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    base = 128 + 90 * np.sin(rng.uniform(-6, 6, 3) * xx[..., None] + rng.uniform(-6, 6, 3) * yy[..., None]
                             + rng.uniform(0, 6, 3))
    return np.clip(base + rng.normal(0, 18, (h, w, 3)), 0, 255).astype(np.uint8)
