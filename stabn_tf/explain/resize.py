"""The one bilinear resize of the explanations: score maps and pictures alike.

Both are resampled with the same triangle filter on half-pixel centres, edges clamped.
Float score maps (`[..., h, w]`: attention, Grad-CAM) go through an exact float64 matrix
product, so the metrics' peaks and ties do not depend on rounding; uint8 pictures
(`[N, h, w, 3]`) go through PIL, which also anti-aliases when it shrinks and rounds to
whole levels. Upscaling, the two agree to within one level.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def _interpolation_matrix(size_in: int, size_out: int) -> np.ndarray:
    """`[size_out, size_in]` bilinear weights, half-pixel centres, edges clamped."""
    pos = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
    pos = np.clip(pos, 0.0, size_in - 1)
    low = np.floor(pos).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    frac = pos - low
    matrix = np.zeros((size_out, size_in))
    matrix[np.arange(size_out), low] += 1.0 - frac
    matrix[np.arange(size_out), high] += frac
    return matrix


def resize(images: np.ndarray, size: tuple[int, int] | int) -> np.ndarray:
    """Bilinear resize to `size` ((height, width), or one side for a square): uint8
    pictures `[N, h, w, 3]` → `[N, H, W, 3]` uint8; anything else is score maps
    `[..., h, w]` → `[..., H, W]` float64."""
    height, width = (size, size) if isinstance(size, int) else size
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR))
                         for f in images])
    maps = images.astype(np.float64)
    rows = _interpolation_matrix(maps.shape[-2], height)
    cols = _interpolation_matrix(maps.shape[-1], width)
    return rows @ maps @ cols.T
