"""Two-style digits: separable by mean intensity, edges kept, unpaired split, scaling."""

import numpy as np
import pytest
from scipy.ndimage import sobel

from jaxdiff.data.digit_styles import digit_styles, invert_blur
from jaxdiff.data.digits import load_digits


def _sobel_magnitude(images):
    x = images[..., 0].astype(np.float64)
    return np.hypot(sobel(x, 1, mode="nearest"), sobel(x, 2, mode="nearest"))


def _edge_correlations(a, b):
    ea, eb = _sobel_magnitude(a).reshape(len(a), -1), _sobel_magnitude(b).reshape(len(b), -1)
    ea, eb = ea - ea.mean(1, keepdims=True), eb - eb.mean(1, keepdims=True)
    return (ea * eb).sum(1) / np.sqrt((ea**2).sum(1) * (eb**2).sum(1))


def test_digit_styles_separable_and_edge_preserving():
    data = digit_styles("all", paired=True)
    n = data.images.shape[0] // 2
    assert data.images.shape == (2 * n, 8, 8, 1) and n == 1797
    np.testing.assert_array_equal(data.styles, np.repeat([0, 1], n))
    assert np.abs(data.images).max() <= 1.0
    # a trivial classifier (mean intensity > 0) is exact; measured gap: style 0 means
    # <= -0.154, style 1 means >= +0.154
    means = data.images.mean(axis=(1, 2, 3))
    assert means[:n].max() < -0.15 and means[n:].min() > 0.15
    # edges: per-digit Sobel-magnitude correlation, measured mean 0.985, min 0.954
    corr = _edge_correlations(data.images[:n], data.images[n:])
    assert corr.mean() > 0.98 and corr.min() > 0.95
    # the measure can fail: digits against randomly paired other digits' style 1 give a
    # measured mean of 0.54
    perm = np.random.default_rng(0).permutation(n)
    assert _edge_correlations(data.images[:n], data.images[n:][perm]).mean() < 0.6


def test_digit_styles_unpaired_and_scaled():
    digits, classes = load_digits("test")
    data = digit_styles("test")
    np.testing.assert_array_equal(data.digits, classes)
    assert abs(data.styles.mean() - 0.5) < 0.01
    one = data.styles == 1
    np.testing.assert_array_equal(data.images[~one], digits[~one])
    np.testing.assert_allclose(data.images[one], invert_blur(digits[one]), atol=1e-6)
    big = digit_styles("test", scale=2)
    assert big.images.shape == (len(classes), 16, 16, 1)
    np.testing.assert_array_equal(big.styles, data.styles)
    np.testing.assert_array_equal(big.images[~one][:, ::2, ::2], digits[~one])
    # constant images: blur keeps a constant, so style 1 of c is -c exactly
    flat = np.full((2, 5, 5, 1), 0.3, np.float32)
    np.testing.assert_allclose(invert_blur(flat, sigma=1.7), -flat, atol=1e-6)
    with pytest.raises(ValueError, match="sigma"):
        invert_blur(flat, sigma=-1.0)
    with pytest.raises(ValueError, match="scale"):
        digit_styles(scale=0)
