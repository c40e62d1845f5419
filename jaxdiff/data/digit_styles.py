"""Two-style digits: scikit-learn's digits as they are and inverted + blurred.

An offline two-style set for the OT-CFM style-transfer pipeline: :func:`digit_styles`
(built on :func:`invert_blur`) needs no download and no image folder.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxdiff._validation import check_bool, check_int_range, check_real
from jaxdiff.data.digits import load_digits
from jaxdiff.data.style_folders import _check_images

__all__ = ["DigitStyles", "digit_styles", "invert_blur"]


def invert_blur(images, *, sigma: float = 0.5) -> np.ndarray:
    """Style 1 of :func:`digit_styles`: ``-(G_sigma * x)``, inverted contrast, soft blur.

    ``images [N, H, W, C]`` in [-1, 1] -> float32, same shape, in [-1, 1] (the blur is a
    convex average). ``G_sigma``: Gaussian blur over height and width, standard deviation
    ``sigma >= 0`` pixels (``scipy.ndimage.gaussian_filter``, ``mode="nearest"``). Edges
    stay in place: inversion keeps gradient magnitudes and the blur is small.
    """
    from scipy.ndimage import gaussian_filter

    arr = _check_images("images", images)
    sigma = check_real("sigma", sigma, 0.0)
    return -gaussian_filter(arr, (0.0, sigma, sigma, 0.0), mode="nearest").astype(np.float32)


class DigitStyles(NamedTuple):
    """Two-style digits: ``images [N, 8s, 8s, 1]`` in [-1, 1], ``styles [N]``, ``digits [N]``."""

    images: np.ndarray
    styles: np.ndarray
    digits: np.ndarray


def digit_styles(
    split: str = "train",
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    paired: bool = False,
    scale: int = 1,
    sigma: float = 0.5,
) -> DigitStyles:
    """scikit-learn's digits in two styles: as they are (0) and :func:`invert_blur` (1).

    Style 0: :func:`jaxdiff.data.digits.load_digits` (light strokes on dark); style 1:
    ``invert_blur(x, sigma=sigma * scale)`` (dark, softened strokes on light). On all
    1,797 digits at ``sigma=0.5`` mean intensity separates them (style 0 <= -0.154 <
    0.154 <= style 1) and the Sobel edge maps of a digit's two styles correlate >= 0.954.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"`` (``load_digits``' split).
        test_fraction: ``load_digits``' held-out share.
        seed: seed of the split and of the unpaired style assignment.
        paired: ``True``: every digit in both styles (``2 N`` images, styles 0 then 1);
            ``False``: each digit in one style, a seeded random half in style 1 (``N``
            images, unpaired, as two photo folders are).
        scale: integer nearest-neighbour upsampling of the 8 x 8 digits (side ``8 scale``),
            applied before the style; the blur scales with it.
        sigma: blur of style 1 in pixels of the 8 x 8 digit.

    Returns:
        :class:`DigitStyles` with float32 images, int32 styles and digit classes.
    """
    paired = check_bool("paired", paired)
    scale = check_int_range("scale", scale, 1)
    sigma = check_real("sigma", sigma, 0.0)
    images, digits = load_digits(split, test_fraction=test_fraction, seed=seed)
    images = np.repeat(np.repeat(images, scale, axis=1), scale, axis=2)
    styled = invert_blur(images, sigma=sigma * scale)
    n = images.shape[0]
    if paired:
        styles = np.repeat(np.arange(2, dtype=np.int32), n)
        return DigitStyles(np.concatenate([images, styled]), styles, np.tile(digits, 2))
    styles = (np.random.default_rng(seed).permutation(n) % 2).astype(np.int32)
    mixed = np.where(styles[:, None, None, None] == 1, styled, images)
    return DigitStyles(mixed.astype(np.float32), styles, digits)
