"""Latent files of style images: encode once (a VAE or pixel space), train from ``.npz``.

The seed's ``preprocess_latents.py``: :func:`preprocess_to_latents` encodes images
(through :func:`vae_encode_fn`, or none: pixel space) and writes one ``.npz``
atomically; :func:`load_latents` reads and validates it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxdiff._atomic import atomic_write
from jaxdiff._validation import check_bool, check_int_range, check_real
from jaxdiff.data.style_folders import _check_images, _check_labels

__all__ = [
    "StyleLatents",
    "encode_batched",
    "load_latents",
    "preprocess_to_latents",
    "vae_encode_fn",
]

_FORMAT = "jaxdiff.style_latents"
_KEYS = ("latents", "labels", "metadata")


def vae_encode_fn(module, params):
    """``encode`` for :func:`preprocess_to_latents` from a Flax ``AutoencoderKL``.

    A jitted ``images [b, H, W, C] in [-1, 1] -> mean [b, H/f, W/f, latent]``, the
    posterior mean (diffusers' ``latent_dist.mode()``), unscaled. With diffusers weights::

        module, params = jaxdiff.interop.vae_from_diffusers("path/to/vae")
        preprocess_to_latents(
            images, styles, "latents.npz", encode=vae_encode_fn(module, params),
            scaling_factor=module.config.scaling_factor,
            shift_factor=module.config.shift_factor or 0.0)

    ``scaling_factor`` / ``shift_factor`` are the diffusers ``config.json`` values
    (0.18215 and none for Stable Diffusion 1.x/2.x); the file records the encoder as
    ``"autoencoder_kl_mean"``.
    """
    import jax

    def autoencoder_kl_mean(x):
        return module.apply({"params": params}, x, method=module.encode)[0]

    return jax.jit(autoencoder_kl_mean)


def encode_batched(encode, images: np.ndarray, batch_size: int) -> np.ndarray:
    """``encode`` over ``images [N, ...]`` in batches; float32 latents ``[N, ...]``.

    A short last batch of ``batch_size`` is zero-padded (one compiled shape), the padding
    dropped.

    Raises:
      ValueError: ``encode`` returns the wrong leading size or non-finite latents.
    """
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size]
        b = batch.shape[0]
        if images.shape[0] > batch_size and b < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - b, *batch.shape[1:]))])
        z = np.asarray(encode(batch.astype(np.float32)), np.float32)
        if z.ndim < 2 or z.shape[0] != batch.shape[0]:
            raise ValueError(
                f"encode returned shape {z.shape} for images of shape {batch.shape}; it "
                "must return latents [batch, ...]"
            )
        if not np.all(np.isfinite(z)):
            raise ValueError(f"encode returned non-finite latents for images {start}..")
        out.append(z[:b])
    return np.concatenate(out)


def preprocess_to_latents(
    images,
    labels,
    out_path,
    *,
    encode=None,
    encoder_name: str | None = None,
    scaling_factor: float = 1.0,
    shift_factor: float = 0.0,
    batch_size: int = 64,
    overwrite: bool = False,
) -> Path:
    """Write ``latents = (encode(x) - shift) * scale`` to an ``.npz``; returns its path.

    The file holds ``latents`` (float32 ``[N, ...]``), ``labels`` (int32 ``[N]``) and
    ``metadata`` (JSON: format, encoder, scaling/shift factors, image and latent shapes,
    style and image counts). Once every batch is encoded it goes to a temporary file in
    the same folder, renamed over ``out_path`` (``os.replace``): an error or interruption
    leaves no file and no temporary, and an existing ``out_path`` untouched.

    Args:
        images: ``[N, H, W, C]`` in [-1, 1] (as
            :func:`~jaxdiff.data.style_folders.load_style_folders` returns).
        labels: int style labels ``[N]`` covering 0..K-1.
        out_path: destination ``.npz``.
        encode: ``images [b, H, W, C] -> latents [b, ...]`` (e.g. :func:`vae_encode_fn`);
            ``None``: pixel space (the images themselves).
        encoder_name: recorded name; default ``"pixels"`` or ``encode``'s ``__name__``.
        scaling_factor: latent scale applied after ``encode`` (diffusers' config value).
        shift_factor: latent shift subtracted before scaling.
        batch_size: images per ``encode`` call.
        overwrite: replace an existing ``out_path``.
    """
    arr = _check_images("images", images)
    styles = _check_labels(labels, arr.shape[0])
    scaling_factor = check_real("scaling_factor", scaling_factor, 0.0, strict=True)
    shift_factor = check_real("shift_factor", shift_factor)
    batch_size = check_int_range("batch_size", batch_size, 1)
    out_path = Path(out_path)
    if out_path.suffix != ".npz" or out_path.is_dir():
        raise ValueError(f"out_path={str(out_path)!r} must be a .npz file path")
    if out_path.exists() and not check_bool("overwrite", overwrite):
        raise FileExistsError(f"out_path={str(out_path)!r} exists; pass overwrite=True")
    if encode is not None and not callable(encode):
        raise TypeError(f"encode must be callable or None, got {type(encode).__name__}")
    if encoder_name is None:
        encoder_name = "pixels" if encode is None else getattr(encode, "__name__", "encode")
    raw = arr if encode is None else encode_batched(encode, arr, batch_size)
    latents = ((raw - shift_factor) * scaling_factor).astype(np.float32)
    meta = dict(
        format=_FORMAT, encoder=str(encoder_name), scaling_factor=scaling_factor,
        shift_factor=shift_factor, image_shape=list(arr.shape[1:]),
        latent_shape=list(latents.shape[1:]), num_styles=int(styles.max()) + 1,
        num_images=int(arr.shape[0]),
    )  # fmt: skip

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, latents=latents, labels=styles, metadata=np.array(json.dumps(meta)))

    out_path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out_path, write, fsync=True)


class StyleLatents(NamedTuple):
    """A latent file: ``latents [N, ...]`` float32, ``labels [N]`` int32, ``metadata``."""

    latents: np.ndarray
    labels: np.ndarray
    metadata: dict


def load_latents(path) -> StyleLatents:
    """Read and validate a file written by :func:`preprocess_to_latents`.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: not a readable ``.npz`` (corrupt, truncated), a missing key, bad
            metadata, or latents / labels that disagree with each other or the metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r} is not a file (a latent .npz)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in _KEYS if k in data.files}
        meta = json.loads(str(arrays["metadata"])) if "metadata" in arrays else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # JSON errors too
        raise ValueError(f"{path}: not a readable latent .npz file ({err})") from None
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; a latent file holds {list(_KEYS)}")
    latents, labels = arrays["latents"], arrays["labels"]
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{path}: metadata is not a {_FORMAT!r} record")
    n = latents.shape[0] if latents.ndim else -1
    if labels.shape != (n,) or list(latents.shape[1:]) != meta.get("latent_shape"):
        raise ValueError(
            f"{path}: latents {latents.shape} and labels {labels.shape} disagree with each "
            f"other or with metadata latent_shape={meta.get('latent_shape')}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= meta.get("num_styles", 0)):
        raise ValueError(f"{path}: labels outside 0..num_styles-1 ({meta.get('num_styles')})")
    return StyleLatents(latents.astype(np.float32), labels.astype(np.int32), meta)
