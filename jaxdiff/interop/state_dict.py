"""Read and write PyTorch-style state dicts as ``{name: numpy.ndarray}``.

``.safetensors`` files are read with ``safetensors.numpy`` and never import torch.
``.pt`` / ``.pth`` / ``.bin`` files need torch and are loaded with
``torch.load(weights_only=True)``, which refuses pickles holding arbitrary Python
objects (code execution risk); ``allow_pickle=True`` lifts that for trusted files.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["SAFETENSORS_SUFFIXES", "TORCH_SUFFIXES", "load_state_dict", "save_safetensors"]

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


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
        if allow_pickle:
            raise
        raise ValueError(
            f"{path} holds Python objects beyond tensors, which torch.load(weights_only=True) "
            "refuses (unpickling them can run arbitrary code). If you trust the file, pass "
            "allow_pickle=True."
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
        allow_pickle: let ``torch.load`` unpickle arbitrary objects (only for trusted
            files; by default ``weights_only=True`` refuses them with a ``ValueError``).

    Returns:
        ``{name: numpy.ndarray}``; bfloat16 tensors from torch files become float32.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"state dict file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    if suffix in TORCH_SUFFIXES:
        return _load_torch(path, allow_pickle)
    raise ValueError(
        f"unknown state dict format {suffix!r} for {path}; allowed suffixes: "
        f"{list(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}"
    )


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
    """
    from safetensors.numpy import save_file

    path = Path(path)
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"state_dict keys must be str, got {type(name).__name__}: {name!r}")
        arrays[name] = np.ascontiguousarray(np.asarray(value))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(arrays, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
