"""Style image folders: ``root/style_0/*.jpg``, ``root/style_1/*.png``, ... and back.

The layout of the OT-CFM style-transfer seed's ``raw_data/style_k/*.jpg``:
:func:`load_style_folders` reads it, :func:`write_style_folders` writes it.

Pixels: an 8-bit value ``v`` is ``v / 127.5 - 1`` (0 -> -1, 255 -> 1); writing rounds
``(x + 1) * 127.5``, so a write/read round trip moves a value by at most ``1 / 255``.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np

from jaxdiff._validation import check_bool, check_int_range

__all__ = ["load_style_folders", "read_image", "write_style_folders"]

_STYLE_DIR = re.compile(r"style_(\d+)")
_SUFFIXES = (".jpg", ".jpeg", ".png")
_MODES = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "PA": "RGBA", "RGBA": "RGBA"}
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")  # 16-bit grayscale PNG
_PNG_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _style_dirs(root: Path) -> list[Path]:
    """``[root/style_0, root/style_1, ...]``; raises unless indices run 0..K-1."""
    if not root.is_dir():
        raise FileNotFoundError(f"root={str(root)!r} is not a directory (root/style_k/*.jpg)")
    found = {}
    for entry in root.iterdir():
        match = _STYLE_DIR.fullmatch(entry.name)
        if match is None or not entry.is_dir():
            continue
        k = int(match.group(1))
        if str(k) != match.group(1) or k in found:
            raise ValueError(f"{entry}: style folders are named style_<k> without leading zeros")
        found[k] = entry
    if not found:
        raise ValueError(
            f"root={str(root)!r} has no style_<k> folders; expected root/style_0/, "
            "root/style_1/, ... holding *.jpg, *.jpeg or *.png images"
        )
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        raise ValueError(
            f"root={str(root)!r} has style folders {sorted(found)} but no style_{missing[0]}; "
            "style indices must run 0, 1, ..., K-1 without a gap"
        )
    return [found[k] for k in range(len(found))]


def _image_files(folder: Path) -> list[Path]:
    """Image files of one style folder, sorted by name (hidden files skipped)."""
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in _SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise ValueError(f"{folder} holds no *.jpg, *.jpeg or *.png image; each style needs one")
    return files


def read_image(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image file as ``[H, W, C]`` float64 in [0, 1], resized to ``size`` if given.

    Grey, RGB or RGBA as stored (16-bit greys scaled by 65535); ``size = (H, W)`` resizes
    by Lanczos (no 8-bit rounding, overshoot clipped).

    Raises:
      ValueError: naming ``path`` when the file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in _SIXTEEN_BIT:
                arr = np.asarray(img, np.float64)[..., None] / 65535.0
            else:
                mode = _MODES.get(img.mode, "RGB")
                if img.mode == "P" and "transparency" in img.info:
                    mode = "RGBA"
                arr = np.asarray(img.convert(mode), np.float64).reshape(img.height, img.width, -1)
                arr = arr / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: not a readable image file ({err})") from None
    if size is None or arr.shape[:2] == size:
        return arr
    channels = [  # float ("F") images: no 8-bit rounding; Lanczos overshoot clipped
        np.asarray(
            Image.fromarray(c.astype(np.float32)).resize(size[::-1], Image.Resampling.LANCZOS)
        )
        for c in np.moveaxis(arr, -1, 0)
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


def _check_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int | np.integer) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if not isinstance(image_size, tuple | list) or len(image_size) != 2:
        raise TypeError(f"image_size must be an int or (height, width), got {image_size!r}")
    return tuple(check_int_range(f"image_size[{i}]", s, 1) for i, s in enumerate(image_size))


def load_style_folders(root, *, image_size=None, channels=None, resize=False):
    """Images and style labels from ``root/style_0/``, ``root/style_1/``, ...

    The style index is the folder's suffix (0..K-1, no gap). Each folder's ``*.jpg``,
    ``*.jpeg``, ``*.png`` (any case; hidden and other files skipped) are read in name
    order. Channels: 1 grayscale, 2 grayscale + alpha, 3 colour (palette, CMYK, YCbCr
    convert to RGB), 4 colour + alpha; 16-bit grayscale PNG scales by 1/65535.

    Args:
        root: the folder holding ``style_k`` sub-folders.
        image_size: ``int`` or ``(height, width)`` every image must have; ``None``: the
            first image's.
        channels: channels every image must have; ``None``: the first image's.
        resize: resize other sizes to ``image_size`` (required then) with Lanczos (PIL's
            ``LANCZOS``, diffusers' ``VaeImageProcessor`` default) on the float image,
            aspect ratio not kept. Channel counts are never converted.

    Returns:
        ``(images, styles)``: float32 ``[N, H, W, C]`` in [-1, 1] and int32 ``[N]``.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
        ValueError: no style folders, a gap, an empty folder, a corrupt image (named), an
            image of another shape (file, shape and expected shape named).
    """
    size = _check_size(image_size)
    if channels is not None:
        channels = check_int_range("channels", channels, 1, 4)
    if check_bool("resize", resize) and size is None:
        raise ValueError("resize=True needs image_size=(height, width) to resize to")
    expected = None
    source = "" if size is None and channels is None else " (image_size=/channels= arguments)"
    images, styles = [], []
    for k, folder in enumerate(_style_dirs(Path(root))):
        for path in _image_files(folder):
            arr = read_image(path, size if resize else None)
            if expected is None:
                expected = (*(size or arr.shape[:2]), channels or arr.shape[2])
                source = source or f" (the shape of the first image, {path})"
            if arr.shape != expected:
                hint = "; pass resize=True to resize" if arr.shape[2] == expected[2] else ""
                raise ValueError(
                    f"{path}: image has shape (height, width, channels) = {arr.shape}; "
                    f"expected {expected}{source}{hint}"
                )
            images.append(arr)
            styles.append(k)
    return (np.stack(images) * 2.0 - 1.0).astype(np.float32), np.asarray(styles, np.int32)


def _check_images(field: str, images) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype.kind not in "fiu" or arr.ndim != 4 or 0 in arr.shape:
        raise ValueError(
            f"{field} must be a real [N, H, W, C] array, got dtype {arr.dtype}, shape {arr.shape}"
        )
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)) or arr.min() < -1.0 - 1e-6 or arr.max() > 1.0 + 1e-6:
        raise ValueError(
            f"{field} must be finite and lie in [-1, 1], got range [{arr.min()}, {arr.max()}]"
        )
    return np.clip(arr, -1.0, 1.0)


def _check_labels(labels, n: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu" or arr.shape != (n,):
        raise ValueError(
            f"labels must be an int array of shape ({n},) (one per image), got dtype "
            f"{arr.dtype}, shape {arr.shape}"
        )
    missing = sorted(set(range(int(arr.max()) + 1)) - set(arr.tolist()))
    if arr.min() < 0 or missing:
        raise ValueError(
            f"labels must cover styles 0..K-1 without a gap, got values {sorted(set(arr.tolist()))}"
        )
    return arr.astype(np.int32)


def write_style_folders(root, images, labels) -> Path:
    """Write ``root/style_k/<i>.png`` (8-bit) for :func:`load_style_folders`; returns ``root``.

    Image ``i`` goes to ``style_{labels[i]}/{i:06d}.png``: reading back groups the images
    by style, input order kept within one. Built beside ``root`` and renamed into place,
    so ``root`` (absent or an empty directory before) is complete or absent.

    Args:
        root: destination folder.
        images: ``[N, H, W, C]`` in [-1, 1], ``C`` in 1..4 (L, LA, RGB, RGBA).
        labels: int ``[N]`` covering 0..K-1.
    """
    from PIL import Image

    arr = _check_images("images", images)
    if arr.shape[-1] not in _PNG_MODES:
        raise ValueError(f"images must have 1 to 4 channels, got shape {arr.shape}")
    styles = _check_labels(labels, arr.shape[0])
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"root={str(root)!r} exists and is not an empty directory")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex[:8]}"
    width = max(6, len(str(arr.shape[0] - 1)))
    pixels = np.rint((arr + 1.0) * 127.5).astype(np.uint8)
    try:
        for k in range(int(styles.max()) + 1):
            (tmp / f"style_{k}").mkdir(parents=True)
        for i, (img, k) in enumerate(zip(pixels, styles, strict=True)):
            img = img[..., 0] if img.shape[-1] == 1 else img
            Image.fromarray(img, _PNG_MODES[arr.shape[-1]]).save(
                tmp / f"style_{k}" / f"{i:0{width}d}.png"
            )
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return root
