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
Names and shapes are checked all at once (:mod:`jaxdiff.interop.keys`); the name, layout
and source helpers are shared with the VAE (:mod:`jaxdiff.interop.diffusers_weights`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._keys import as_key
from jaxdiff._validation import check_bool, check_choice, check_real
from jaxdiff.interop.diffusers_config import config_from_diffusers
from jaxdiff.interop.diffusers_weights import (
    flatten_params,
    from_torch_layout,
    resolve_diffusers_source,
    to_torch_layout,
    torch_name,
    torch_shape,
    unflatten_params,
)
from jaxdiff.interop.keys import check_state_dict
from jaxdiff.nets.config import HighResModelConfig
from jaxdiff.nets.lora import init_adapters, merge_lora, strip_lora
from jaxdiff.nets.unet import UNet

__all__ = ["unet_from_diffusers", "unet_to_diffusers_state_dict"]


def _is_conv_proj(path: tuple[str, ...], config: HighResModelConfig) -> bool:
    """Transformer ``proj_in``/``proj_out`` that diffusers stores as a 1x1 conv."""
    return (
        len(path) >= 2
        and path[-2] in ("proj_in", "proj_out")
        and path[-1] == "kernel"
        and not config.use_linear_projection
    )


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
    return {p: tuple(v.shape) for p, v in flatten_params(shapes["params"]).items()}


_OVERRIDES = ("dropout", "dtype", "lora_alpha", "lora_rank", "use_checkpointing")
_DTYPES = ("float32", "bfloat16", "float16")


def _check_overrides(overrides: dict) -> None:
    """Reject unknown overrides and values of the wrong type (before any weights load)."""
    unknown = sorted(set(overrides) - set(_OVERRIDES))
    if unknown:
        raise ValueError(f"unsupported overrides {unknown}; allowed: {list(_OVERRIDES)}")
    if "dtype" in overrides:
        overrides["dtype"] = check_choice("dtype", overrides["dtype"], _DTYPES)
    if "use_checkpointing" in overrides:
        check_bool("use_checkpointing", overrides["use_checkpointing"])
    if "lora_alpha" in overrides:
        check_real("lora_alpha", overrides["lora_alpha"], 0.0, strict=True)
    if "dropout" in overrides:
        check_real("dropout", overrides["dropout"], 0.0)


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
        ValueError: an unsupported diffusers option or override (named), or names /
            shapes that do not match (:class:`~jaxdiff.interop.keys.StateDictMismatchError`).
        TypeError: an override or ``key`` of the wrong type (a string for a bool or a
            number), or a ``source`` / ``config`` of the wrong kind.
    """
    _check_overrides(overrides)
    dcfg, state, what = resolve_diffusers_source(
        source,
        config,
        subfolder="unet",
        caller="unet_from_diffusers",
        model="UNet2DModel / UNet2DConditionModel",
    )
    cfg = dataclasses.replace(config_from_diffusers(dcfg), **overrides)
    shapes = _param_shapes(cfg)
    expected = {
        torch_name(p): torch_shape(p, s, conv_1x1=_is_conv_proj(p, cfg))
        for p, s in shapes.items()
        if p[-1] not in ("lora_A", "lora_B")
    }
    check_state_dict(expected, state, what=what)
    flat = {}
    for path in shapes:
        if path[-1] in ("lora_A", "lora_B"):
            continue
        value = np.asarray(state[torch_name(path)], dtype=np.float32)
        flat[path] = jnp.asarray(from_torch_layout(path, value, conv_1x1=_is_conv_proj(path, cfg)))
    if cfg.lora_rank > 0:
        if key is None:
            raise ValueError("lora_rank > 0 needs key= to initialise the LoRA adapters")
        key = as_key(key, "key")
        lora = {p: s for p, s in shapes.items() if p[-1] in ("lora_A", "lora_B")}
        flat.update(init_adapters(key, lora, cfg.lora_rank))
    return UNet(cfg), unflatten_params(flat)


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
    flat = flatten_params(params)
    shapes = {p: s for p, s in _param_shapes(config).items() if p[-1] not in ("lora_A", "lora_B")}
    check_state_dict(
        {"/".join(p): s for p, s in shapes.items()},
        {"/".join(p): v for p, v in flat.items()},
        what="params",
    )
    return {
        torch_name(p): np.ascontiguousarray(
            to_torch_layout(p, np.asarray(v, np.float32), conv_1x1=_is_conv_proj(p, config))
        )
        for p, v in flat.items()
    }
