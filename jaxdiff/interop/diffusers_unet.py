"""diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` <-> :class:`jaxdiff.nets.unet.UNet`.

:func:`unet_from_diffusers` reads a diffusers model object, a state dict plus its config,
a weights file with ``config.json`` beside it, or a ``save_pretrained`` directory, and
returns the Flax module and its parameters. :func:`unet_to_diffusers_state_dict` goes
back (diffusers names, PyTorch layouts), so weights trained here load into diffusers
with ``model.load_state_dict`` (diffusers issue #1161 asks for this direction).

Layouts: convolutions OIHW <-> HWIO, linear ``[out, in]`` <-> ``[in, out]``, norm
``weight`` <-> ``scale``, embedding ``weight`` <-> ``embedding``; the transformers'
``proj_in``/``proj_out`` 1x1 convolutions become dense layers. Names: diffusers'
``down_blocks.0.resnets.1.conv1.weight`` is ``down_blocks_0/resnets_1/conv1/kernel``.
Names and shapes are checked all at once (:mod:`jaxdiff.interop.keys`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.interop.diffusers_config import config_from_diffusers
from jaxdiff.interop.keys import check_state_dict
from jaxdiff.interop.state_dict import load_state_dict
from jaxdiff.nets.config import HighResModelConfig
from jaxdiff.nets.lora import init_adapters, merge_lora, strip_lora
from jaxdiff.nets.unet import UNet

__all__ = ["unet_from_diffusers", "unet_to_diffusers_state_dict"]

_LIST_NAME = re.compile(
    r"^(down_blocks|up_blocks|resnets|attentions|downsamplers|upsamplers|"
    r"transformer_blocks|to_out|net)_(\d+)$"
)
_LEAF = {"kernel": "weight", "scale": "weight", "embedding": "weight", "weight": "weight"}
_WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
)


def _torch_name(path: tuple[str, ...]) -> str:
    *modules, leaf = path
    parts = [_LIST_NAME.sub(r"\1.\2", m) for m in modules]
    return ".".join([*parts, _LEAF.get(leaf, leaf)])


def _is_conv_proj(path: tuple[str, ...], config: HighResModelConfig) -> bool:
    """Transformer ``proj_in``/``proj_out`` that diffusers stores as a 1x1 conv."""
    return (
        len(path) >= 2
        and path[-2] in ("proj_in", "proj_out")
        and path[-1] == "kernel"
        and not config.use_linear_projection
    )


def _to_torch(path, value: np.ndarray, config: HighResModelConfig) -> np.ndarray:
    if path[-1] == "kernel" and value.ndim == 4:
        return np.transpose(value, (3, 2, 0, 1))
    if path[-1] == "kernel" and value.ndim == 2:
        value = value.T
        return value[:, :, None, None] if _is_conv_proj(path, config) else value
    return value


def _from_torch(path, value: np.ndarray, config: HighResModelConfig) -> np.ndarray:
    if path[-1] == "kernel" and value.ndim == 4 and not _is_conv_proj(path, config):
        return np.transpose(value, (2, 3, 1, 0))
    if path[-1] == "kernel":
        return value.reshape(value.shape[:2]).T
    return value


def _flatten(tree, prefix=()) -> dict[tuple[str, ...], object]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def _unflatten(flat: Mapping[tuple[str, ...], object]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def _init_args(config: HighResModelConfig):
    size = 2 ** (config.num_levels - 1)
    x = jnp.zeros((1, size, size, config.in_channels))
    t = jnp.ones((1,))
    context = jnp.zeros((1, 1, config.context_dim)) if config.conditional else None
    labels = jnp.zeros((1,), jnp.int32) if config.num_classes is not None else None
    return x, t, context, labels


def _param_shapes(config: HighResModelConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Flax parameter paths -> shapes, without allocating parameters."""
    shapes = jax.eval_shape(lambda k: UNet(config).init(k, *_init_args(config)), jax.random.key(0))
    return {p: tuple(v.shape) for p, v in _flatten(shapes["params"]).items()}


def _torch_shape(path, shape, config) -> tuple[int, ...]:
    return _to_torch(path, np.empty(shape, np.float32), config).shape


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor
        return value.detach().cpu().float().numpy()
    return np.asarray(value)


def _diffusers_config_of(obj) -> dict:
    cfg = dict(obj.config)
    cfg.setdefault("_class_name", type(obj).__name__)
    return cfg


def _read_config(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def _resolve_source(source, config):
    """``(diffusers config dict, {name: numpy array}, description)`` from any source."""
    if hasattr(source, "state_dict") and hasattr(source, "config"):
        state = {k: _as_numpy(v) for k, v in source.state_dict().items()}
        return (
            dict(config) if config is not None else _diffusers_config_of(source),
            state,
            (f"{type(source).__name__} state dict"),
        )
    if isinstance(source, Mapping):
        if config is None:
            raise ValueError(
                "unet_from_diffusers(state_dict) needs config= (the diffusers config dict, "
                "e.g. model.config or the contents of config.json) to know the architecture"
            )
        state = {k: _as_numpy(v) for k, v in source.items()}
        return dict(config), state, "state dict"
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            if not (path / "config.json").is_file() and (path / "unet" / "config.json").is_file():
                path = path / "unet"
            files = [path / name for name in _WEIGHT_FILES if (path / name).is_file()]
            if not files:
                raise FileNotFoundError(
                    f"no weights in {path}; expected one of {list(_WEIGHT_FILES)}"
                )
            weights, config_path = files[0], path / "config.json"
        elif path.is_file():
            weights, config_path = path, path.parent / "config.json"
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
        if config is None:
            if not config_path.is_file():
                raise FileNotFoundError(
                    f"{config_path} not found: put the diffusers config.json beside the "
                    "weights or pass config="
                )
            config = _read_config(config_path)
        return dict(config), load_state_dict(weights), str(weights)
    raise TypeError(
        "source must be a diffusers UNet2DModel / UNet2DConditionModel, a state dict "
        f"(mapping), a weights file or a model directory; got {type(source).__name__}"
    )


def unet_from_diffusers(source, config: Mapping | None = None, *, key=None, **overrides):
    """Build the Flax UNet and its parameters from diffusers weights.

    Args:
        source: a diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` object; a state
            dict ``{name: tensor or array}`` (then ``config`` is required); a
            ``.safetensors`` / ``.bin`` / ``.pt`` file with diffusers' ``config.json``
            beside it; or a ``save_pretrained`` directory (or a pipeline directory with
            a ``unet/`` folder).
        config: the diffusers config dict; overrides the one found with ``source``.
        key: PRNG key to initialise LoRA adapters, needed when ``lora_rank > 0``.
        **overrides: :class:`~jaxdiff.nets.config.HighResModelConfig` fields that do not
            change the weights (``dtype``, ``use_checkpointing``, ``lora_rank``,
            ``lora_alpha``, ``dropout``).

    Returns:
        ``(module, params)``: a :class:`~jaxdiff.nets.unet.UNet` and its float32
        ``params`` (nested dicts); ``module.apply({"params": params}, x_nhwc, t, ...)``.

    Raises:
        ValueError: an unsupported diffusers option (named), or names / shapes that do
            not match (:class:`~jaxdiff.interop.keys.StateDictMismatchError`).
    """
    dcfg, state, what = _resolve_source(source, config)
    allowed = {"dtype", "use_checkpointing", "lora_rank", "lora_alpha", "dropout"}
    if set(overrides) - allowed:
        raise ValueError(
            f"unsupported overrides {sorted(set(overrides) - allowed)}; allowed: {sorted(allowed)}"
        )
    cfg = dataclasses.replace(config_from_diffusers(dcfg), **overrides)
    shapes = _param_shapes(cfg)
    expected = {
        _torch_name(p): _torch_shape(p, s, cfg)
        for p, s in shapes.items()
        if p[-1] not in ("lora_A", "lora_B")
    }
    check_state_dict(expected, state, what=what)
    flat = {}
    for path in shapes:
        if path[-1] in ("lora_A", "lora_B"):
            continue
        value = np.asarray(state[_torch_name(path)], dtype=np.float32)
        flat[path] = jnp.asarray(_from_torch(path, value, cfg))
    if cfg.lora_rank > 0:
        if key is None:
            raise ValueError("lora_rank > 0 needs key= to initialise the LoRA adapters")
        lora = {p: s for p, s in shapes.items() if p[-1] in ("lora_A", "lora_B")}
        flat.update(init_adapters(key, lora, cfg.lora_rank))
    return UNet(cfg), _unflatten(flat)


def unet_to_diffusers_state_dict(params, config: HighResModelConfig) -> dict[str, np.ndarray]:
    """Flax UNet parameters -> diffusers state dict (names and PyTorch layouts).

    LoRA adapters are merged into their base weights first (with ``config.lora_alpha``).
    Load the result with ``diffusers_model.load_state_dict({k: torch.from_numpy(v)})``
    into the model built from the matching diffusers config, or save it with
    :func:`~jaxdiff.interop.state_dict.save_safetensors`.

    Args:
        params: the UNet's ``params`` (nested dicts).
        config: the :class:`~jaxdiff.nets.config.HighResModelConfig` they belong to.

    Returns:
        ``{diffusers name: float32 numpy array}``.
    """
    params = jax.tree.map(np.asarray, dict(params))
    params = strip_lora(merge_lora(params, alpha=config.lora_alpha))
    flat = _flatten(params)
    shapes = {p: s for p, s in _param_shapes(config).items() if p[-1] not in ("lora_A", "lora_B")}
    check_state_dict(
        {"/".join(p): s for p, s in shapes.items()},
        {"/".join(p): v for p, v in flat.items()},
        what="params",
    )
    return {
        _torch_name(p): np.ascontiguousarray(_to_torch(p, np.asarray(v, np.float32), config))
        for p, v in flat.items()
    }
