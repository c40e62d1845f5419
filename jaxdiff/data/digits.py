"""scikit-learn's handwritten digits (8 x 8, 1,797 images) as NHWC arrays in [-1, 1].

The images ship inside scikit-learn (UCI ML "Optical Recognition of Handwritten Digits";
Alpaydin & Kaynak 1998), so nothing is downloaded. Pixel values 0..16 are mapped
linearly to [-1, 1]. The train / held-out split is a fixed permutation of a seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["digits_to_pixels", "load_digits"]


def load_digits(split: str = "train", *, test_fraction: float = 0.2, seed: int = 0):
    """Digit images and labels.

    Args:
        split: ``"train"``, ``"test"`` (held out) or ``"all"``.
        test_fraction: share of the images held out, in (0, 1).
        seed: seed of the split's permutation.

    Returns:
        ``(images, labels)``: float32 ``[N, 8, 8, 1]`` in [-1, 1] and int32 ``[N]``.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    data = sk_load_digits()
    images = (data.images.astype(np.float32) / 8.0 - 1.0)[..., None]
    labels = data.target.astype(np.int32)
    if split == "all":
        return images, labels
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    idx = order[:n_test] if split == "test" else order[n_test:]
    return images[idx], labels[idx]


def digits_to_pixels(images) -> np.ndarray:
    """``[N, 8, 8, 1]`` model-space images in [-1, 1] -> ``[N, 64]`` pixels in [0, 16]."""
    arr = np.clip(np.asarray(images, dtype=np.float64), -1.0, 1.0)
    return ((arr + 1.0) * 8.0).reshape(arr.shape[0], -1)
