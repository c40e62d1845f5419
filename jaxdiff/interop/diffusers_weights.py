"""diffusers weights <-> Flax parameters: paths, names, layouts and where weights come from.

The pieces every diffusers importer shares (:mod:`jaxdiff.interop.diffusers_unet`,
:mod:`jaxdiff.interop.diffusers_vae`):

* parameter paths: :func:`flatten_params` / :func:`unflatten_params` turn nested Flax
  ``params`` into ``{("a", "b", "kernel"): array}`` and back;
* names: :func:`torch_name` maps the path ``("down_blocks_0", "resnets_1", "conv1",
  "kernel")`` to diffusers' ``down_blocks.0.resnets.1.conv1.weight``;
* layouts: :func:`to_torch_layout` / :func:`from_torch_layout` / :func:`torch_shape`
  convert convolution kernels HWIO <-> OIHW and dense kernels ``[in, out]`` <->
  ``[out, in]`` (optionally a 1x1 convolution ``[out, in, 1, 1]``);
* sources: :func:`resolve_diffusers_source` reads a diffusers model object, a state
  dict plus config, a weights file with ``config.json`` beside it, or a
  ``save_pretrained`` / pipeline directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxdiff._validation import check_bool, check_real
from jaxdiff.interop.state_dict import load_state_dict

__all__ = [
    "config_flag",
    "config_number",
    "flatten_params",
    "from_torch_layout",
    "read_json_object",
    "resolve_diffusers_source",
    "to_torch_layout",
    "torch_name",
    "torch_shape",
    "unflatten_params",
]

ParamPath = tuple[str, ...]

# Flax list-element module names (``down_blocks_0``) that diffusers writes ``down_blocks.0``
_LIST_NAME = re.compile(
    r"^(down_blocks|up_blocks|resnets|attentions|downsamplers|upsamplers|"
    r"transformer_blocks|to_out|net)_(\d+)$"
)
_LEAF = {"kernel": "weight", "scale": "weight", "embedding": "weight", "weight": "weight"}
# looked for in this order in a model directory; the first present is read
_WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
)


def flatten_params(tree: Mapping, prefix: ParamPath = ()) -> dict[ParamPath, object]:
    """Nested parameter dicts -> ``{path: leaf}``.

    Args:
        tree: nested mappings (e.g. Flax ``params``); anything that is not a mapping is
            a leaf (an array of any shape and dtype, kept as it is).
        prefix: path prepended to every key (used by the recursion).

    Returns:
        ``{("down_blocks_0", "resnets_1", "conv1", "kernel"): leaf, ...}`` in the
        mapping's iteration order. Inverse of :func:`unflatten_params`.
    """
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten_params(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def unflatten_params(flat: Mapping[ParamPath, object]) -> dict:
    """``{path: leaf}`` -> nested dicts (the inverse of :func:`flatten_params`).

    Args:
        flat: ``{(name, ..., leaf_name): leaf}``; leaves are kept as they are.

    Returns:
        Nested ``dict`` s, one level per path element.
    """
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def torch_name(path: ParamPath) -> str:
    """The diffusers (PyTorch) state-dict name of a Flax parameter path.

    Module names ``<list>_<i>`` (``down_blocks``, ``resnets``, ``attentions``, ...,
    ``to_out``, ``net``) become ``<list>.<i>``; the leaf ``kernel`` / ``scale`` /
    ``embedding`` becomes ``weight`` (``bias`` and others are kept); parts are joined
    with ``.``. E.g. ``("down_blocks_0", "resnets_1", "conv1", "kernel")`` ->
    ``"down_blocks.0.resnets.1.conv1.weight"``.
    """
    *modules, leaf = path
    parts = [_LIST_NAME.sub(r"\1.\2", m) for m in modules]
    return ".".join([*parts, _LEAF.get(leaf, leaf)])


def to_torch_layout(path: ParamPath, value: np.ndarray, *, conv_1x1: bool = False) -> np.ndarray:
    """A Flax parameter in PyTorch's layout (a view where possible, not a copy).

    Only leaves named ``kernel`` change: a convolution kernel HWIO ``[kh, kw, in, out]``
    becomes OIHW ``[out, in, kh, kw]``; a dense kernel ``[in, out]`` becomes
    ``[out, in]``, or ``[out, in, 1, 1]`` when ``conv_1x1`` (PyTorch stores that layer
    as a 1x1 convolution). Everything else (biases, norm scales, embeddings) is returned
    unchanged. The dtype is kept.

    Args:
        path: the parameter's Flax path (its last element is the leaf name).
        value: the Flax array.
        conv_1x1: the caller's per-parameter flag; only read for 2-D kernels.
    """
    if path[-1] == "kernel" and value.ndim == 4:
        return np.transpose(value, (3, 2, 0, 1))
    if path[-1] == "kernel" and value.ndim == 2:
        value = value.T
        return value[:, :, None, None] if conv_1x1 else value
    return value


def from_torch_layout(path: ParamPath, value: np.ndarray, *, conv_1x1: bool = False) -> np.ndarray:
    """A PyTorch parameter in Flax's layout (the inverse of :func:`to_torch_layout`).

    For leaves named ``kernel``: OIHW ``[out, in, kh, kw]`` -> HWIO ``[kh, kw, in,
    out]``; ``[out, in]`` -> ``[in, out]``; with ``conv_1x1`` the 1x1 convolution
    ``[out, in, 1, 1]`` -> dense ``[in, out]``. Other leaves are returned unchanged; the
    dtype is kept.

    Args:
        path: the parameter's Flax path (its last element is the leaf name).
        value: the PyTorch array (numpy).
        conv_1x1: the Flax parameter is a dense kernel that PyTorch stores as a 1x1
            convolution.
    """
    if path[-1] == "kernel" and value.ndim == 4 and not conv_1x1:
        return np.transpose(value, (2, 3, 1, 0))
    if path[-1] == "kernel":
        return value.reshape(value.shape[:2]).T
    return value


def torch_shape(path: ParamPath, shape: tuple[int, ...], *, conv_1x1: bool = False):
    """The PyTorch shape of a Flax parameter of ``shape`` (see :func:`to_torch_layout`).

    Returns:
        ``tuple[int, ...]``; no array data is touched.
    """
    return tuple(to_torch_layout(path, np.empty(shape, np.float32), conv_1x1=conv_1x1).shape)


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor
        return value.detach().cpu().float().numpy()
    return np.asarray(value)


def _diffusers_config_of(obj) -> dict:
    cfg = dict(obj.config)
    cfg.setdefault("_class_name", type(obj).__name__)
    return cfg


def config_flag(cfg: Mapping, name: str) -> bool:
    """A diffusers config's bool option; a string such as ``"false"`` raises, never truthy."""
    return check_bool(f"diffusers config {name!r}", cfg[name])


def config_number(cfg: Mapping, name: str) -> float:
    """A diffusers config's real option as a float; strings and bools raise ``TypeError``."""
    return check_real(f"diffusers config {name!r}", cfg[name])


def read_json_object(path: Path, what: str) -> dict:
    """The JSON object stored at ``path``; ``what`` names the file in messages.

    Raises:
      ValueError: the file is not valid JSON or holds something other than an object.
    """
    try:
        with open(path) as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({what}): {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not an object ({what})")
    return value


def _is_model(source) -> bool:
    return hasattr(source, "state_dict") and hasattr(source, "config")


def _weights_and_config_path(path: Path, subfolder: str) -> tuple[Path, Path]:
    if path.is_dir():
        if not (path / "config.json").is_file() and (path / subfolder / "config.json").is_file():
            path = path / subfolder
        files = [path / name for name in _WEIGHT_FILES if (path / name).is_file()]
        if not files:
            raise FileNotFoundError(f"no weights in {path}; expected one of {list(_WEIGHT_FILES)}")
        return files[0], path / "config.json"
    if path.is_file():
        return path, path.parent / "config.json"
    raise FileNotFoundError(f"no such file or directory: {path}")


def resolve_diffusers_source(
    source, config: Mapping | None, *, subfolder: str, caller: str, model: str
) -> tuple[dict, dict[str, np.ndarray], str]:
    """The diffusers config, the state dict and a description, from any weights source.

    Args:
        source: a diffusers model object (anything with ``.state_dict()`` and
            ``.config``); a state dict ``{name: torch tensor or array}``; a weights file
            (``.safetensors`` / ``.bin`` / ``.pt``) with ``config.json`` beside it; or a
            ``save_pretrained`` directory, or a pipeline directory whose ``subfolder``
            holds the model (used when the directory has no ``config.json`` itself).
        config: the diffusers config dict; overrides the one found with ``source``.
            Required with a state dict.
        subfolder: the pipeline folder of this model, e.g. ``"unet"`` or ``"vae"``.
        caller: the public function's name, for the error messages.
        model: the diffusers class name(s), for the error messages.

    Returns:
        ``(diffusers config dict, {diffusers name: numpy array}, description)``; tensors
        come back as float32 numpy arrays, arrays as ``np.asarray`` of themselves; the
        description names the source in mismatch messages.

    Raises:
        ValueError: a state dict without ``config``, or a ``config.json`` that is not
            a JSON object (named).
        FileNotFoundError: no such path, no weights file in the directory, or no
            ``config.json`` beside the weights when ``config`` is not given.
        TypeError: ``source`` is none of the above, or ``config`` is not a mapping.
    """
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(
            f"config must be None or the diffusers config (a mapping), got "
            f"{type(config).__name__}: {config!r:.80}"
        )
    if _is_model(source):
        state = {k: _as_numpy(v) for k, v in source.state_dict().items()}
        cfg = dict(config) if config is not None else _diffusers_config_of(source)
        return cfg, state, f"{type(source).__name__} state dict"
    if isinstance(source, Mapping):
        if config is None:
            raise ValueError(
                f"{caller}(state_dict) needs config= (the diffusers {model} config dict, "
                "e.g. model.config or the contents of config.json) to know the architecture"
            )
        state = {k: _as_numpy(v) for k, v in source.items()}
        return dict(config), state, "state dict"
    if isinstance(source, str | os.PathLike):
        weights, config_path = _weights_and_config_path(Path(source), subfolder)
        if config is None:
            if not config_path.is_file():
                raise FileNotFoundError(
                    f"{config_path} not found: put the diffusers config.json beside the "
                    "weights or pass config="
                )
            config = read_json_object(config_path, "a diffusers config.json")
        return dict(config), load_state_dict(weights), str(weights)
    raise TypeError(
        f"source must be a diffusers {model}, a state dict (mapping), a weights file or a "
        f"model directory; got {type(source).__name__}"
    )
