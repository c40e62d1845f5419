"""Read and write PyTorch-style state dicts as ``{name: numpy.ndarray}``.

``.safetensors`` files are read with ``safetensors.numpy`` and never import torch.
``.pt`` / ``.pth`` / ``.bin`` files need torch and are loaded with
``torch.load(weights_only=True)``, which refuses pickles holding arbitrary Python
objects (code execution risk); ``allow_pickle=True`` lifts that for trusted files. The
flag must be a real ``bool``: a string such as ``"False"`` is truthy and is refused.

A file that cannot be parsed (empty, truncated, random bytes) raises ``ValueError``
naming the file, never the parser's internal error alone.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxdiff._atomic import atomic_write
from jaxdiff._validation import check_bool

__all__ = ["SAFETENSORS_SUFFIXES", "TORCH_SUFFIXES", "load_state_dict", "save_safetensors"]

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# safetensors dtypes that NumPy does not give kind "b", "i", "u" or "f" (ml_dtypes ones)
_EXTRA_DTYPES = frozenset({"bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "complex64"})


def _flatten(tree, prefix: str = "") -> dict:
    """Nested dicts of tensors -> ``{"a.b.c": tensor}``."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _to_numpy(name: str, tensor) -> np.ndarray:
    if isinstance(tensor, np.ndarray):
        return tensor
    if hasattr(tensor, "detach"):  # torch.Tensor
        tensor = tensor.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        return tensor.numpy()
    raise TypeError(f"state_dict entry {name!r} is a {type(tensor).__name__}, not a tensor")


def _as_path(field: str, path) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"{field} must be a str or os.PathLike path, got {type(path).__name__}: {path!r}"
        )
    return Path(path)


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return dict(load_file(str(path)))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own SafetensorError
        raise ValueError(
            f"{path} is not a readable .safetensors file (empty, truncated or corrupt): {err}"
        ) from err


def _load_torch(path: Path, allow_pickle: bool) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"loading {path.name} needs torch (install jaxdiff[torch]); "
            "or convert the file to .safetensors"
        ) from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as err:
        if allow_pickle or not zipfile.is_zipfile(path):
            raise ValueError(
                f"{path} is not a readable torch file (empty, truncated or corrupt): {err}"
            ) from err
        raise ValueError(
            f"{path} holds Python objects beyond tensors, which torch.load(weights_only=True) "
            "refuses (unpickling them can run arbitrary code). If you trust the file, pass "
            "allow_pickle=True."
        ) from err
    except Exception as err:  # noqa: BLE001 - torch's parsers raise anything on garbage
        raise ValueError(
            f"{path} is not a readable torch file (empty, truncated or corrupt): "
            f"{type(err).__name__}: {str(err)[:200]}"
        ) from err
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict (a mapping)")
    return {name: _to_numpy(name, t) for name, t in _flatten(obj).items()}


def load_state_dict(path, *, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """Load a state dict file into ``{name: numpy array}`` (PyTorch layouts kept).

    Args:
        path: a ``.safetensors`` file (read without torch) or a ``.pt`` / ``.pth`` /
            ``.bin`` / ``.ckpt`` torch pickle (needs torch). A pickle holding
            ``{"state_dict": ...}`` is unwrapped; nested dicts are flattened with ``.``.
        allow_pickle: a ``bool``; True lets ``torch.load`` unpickle arbitrary objects
            (only for trusted files; by default ``weights_only=True`` refuses them with a
            ``ValueError``).

    Returns:
        ``{name: numpy.ndarray}``; bfloat16 tensors from torch files become float32.

    Raises:
        TypeError: ``path`` is not a path, or ``allow_pickle`` is not a bool (checked
            before the file is opened).
        FileNotFoundError: no such file.
        ValueError: unknown suffix, or a file that cannot be parsed (named).
    """
    allow_pickle = check_bool("allow_pickle", allow_pickle)
    path = _as_path("path", path)
    if not path.is_file():
        raise FileNotFoundError(f"state dict file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _load_safetensors(path)
    if suffix in TORCH_SUFFIXES:
        return _load_torch(path, allow_pickle)
    raise ValueError(
        f"unknown state dict format {suffix!r} for {path}; allowed suffixes: "
        f"{list(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}"
    )


def _check_metadata(metadata) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise TypeError(f"metadata must be None or a {{str: str}} mapping, got {metadata!r:.200}")


def save_safetensors(state_dict: Mapping[str, np.ndarray], path, *, metadata=None) -> Path:
    """Write ``{name: array}`` to ``path`` as safetensors, atomically.

    The file is written to a temporary file in the same directory and renamed over
    ``path``, so readers never see a half-written file.

    Args:
        state_dict: names to arrays (numpy, or anything ``numpy.asarray`` accepts).
        path: destination file.
        metadata: optional ``{str: str}`` header metadata.

    Returns:
        The destination path.

    Raises:
        TypeError: ``state_dict`` is not a mapping, a key is not a str, a value is not a
            numeric array, ``path`` is not a path or ``metadata`` is not ``{str: str}``
            (all checked before anything is written).
    """
    from safetensors.numpy import save_file

    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}"
        )
    path = _as_path("path", path)
    _check_metadata(metadata)
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"state_dict keys must be str, got {type(name).__name__}: {name!r}")
        arr = np.ascontiguousarray(np.asarray(value))
        if arr.dtype.kind not in "biuf" and arr.dtype.name not in _EXTRA_DTYPES:
            raise TypeError(
                f"state_dict[{name!r}] has dtype {arr.dtype}; safetensors stores bool, "
                f"integer and float arrays, and {sorted(_EXTRA_DTYPES)}"
            )
        arrays[name] = arr
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata=metadata))
