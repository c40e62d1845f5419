"""diffusers ``AutoencoderKL`` <-> :class:`jaxdiff.nets.vae.AutoencoderKL`.

:func:`vae_from_diffusers` reads the same sources as
:func:`~jaxdiff.interop.diffusers_unet.unet_from_diffusers` (a model object, a state dict
plus config, a weights file with ``config.json`` beside it, a ``save_pretrained``
directory, or a pipeline directory with a ``vae/`` folder) and returns the Flax module
and its parameters; :func:`vae_to_diffusers_state_dict` goes back. Names and layouts
follow the UNet importer (``encoder.down_blocks.0.resnets.1.conv1.weight`` is
``encoder/down_blocks_0/resnets_1/conv1/kernel``; OIHW <-> HWIO, ``[out, in]`` <->
``[in, out]``). State dicts saved by diffusers < 0.15 name the middle attention
``query/key/value/proj_attn``; those names are accepted on import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._validation import check_choice
from jaxdiff.interop.diffusers_weights import (
    config_flag,
    config_number,
    flatten_params,
    from_torch_layout,
    resolve_diffusers_source,
    to_torch_layout,
    torch_name,
    torch_shape,
    unflatten_params,
)
from jaxdiff.interop.keys import check_state_dict
from jaxdiff.nets.vae import AutoencoderKL, VAEConfig

__all__ = [
    "vae_config_from_diffusers",
    "vae_config_to_diffusers",
    "vae_from_diffusers",
    "vae_to_diffusers_state_dict",
]

_CLASS = "AutoencoderKL"
_DOWN, _UP = "DownEncoderBlock2D", "UpDecoderBlock2D"
# diffusers' AutoencoderKL defaults for the options read here
_DEFAULTS = dict(
    in_channels=3, out_channels=3, block_out_channels=(64,), layers_per_block=1,
    act_fn="silu", latent_channels=4, norm_num_groups=32, scaling_factor=0.18215,
    shift_factor=None, use_quant_conv=True, use_post_quant_conv=True,
    mid_block_add_attention=True,
)  # fmt: skip
_LEGACY_ATTN = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _unsupported(name: str, value, allowed) -> ValueError:
    return ValueError(
        f"diffusers option {name}={value!r} is not supported by jaxdiff's AutoencoderKL; "
        f"supported: {allowed}"
    )


def vae_config_from_diffusers(dcfg: Mapping) -> VAEConfig:
    """The :class:`~jaxdiff.nets.vae.VAEConfig` of a diffusers ``AutoencoderKL`` config.

    Args:
        dcfg: ``vae.config`` or the parsed ``config.json``.

    Raises:
        ValueError: another ``_class_name``, or an option jaxdiff does not reproduce
            (named, with what is supported).
    """
    name = dcfg.get("_class_name", _CLASS)
    if name != _CLASS:
        raise _unsupported("_class_name", name, _CLASS)
    cfg = {**_DEFAULTS, **{k: v for k, v in dcfg.items() if not k.startswith("_")}}
    if cfg["act_fn"] not in ("silu", "swish"):
        raise _unsupported("act_fn", cfg["act_fn"], "silu")
    levels = len(cfg["block_out_channels"])
    for field, block in (("down_block_types", _DOWN), ("up_block_types", _UP)):
        types = list(cfg.get(field, (block,) * levels))
        if types != [block] * levels:
            raise _unsupported(field, types, f"{levels} x {block!r}")
    return VAEConfig(
        in_channels=cfg["in_channels"],
        out_channels=cfg["out_channels"],
        latent_channels=cfg["latent_channels"],
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        norm_num_groups=cfg["norm_num_groups"],
        mid_attention=config_flag(cfg, "mid_block_add_attention"),
        use_quant_conv=config_flag(cfg, "use_quant_conv"),
        use_post_quant_conv=config_flag(cfg, "use_post_quant_conv"),
        scaling_factor=config_number(cfg, "scaling_factor"),
        shift_factor=None if cfg["shift_factor"] is None else config_number(cfg, "shift_factor"),
    )


def vae_config_to_diffusers(config: VAEConfig) -> dict:
    """The diffusers ``AutoencoderKL`` config dict (``config.json``) of ``config``."""
    levels = len(config.block_out_channels)
    return {
        "_class_name": _CLASS,
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "down_block_types": [_DOWN] * levels,
        "up_block_types": [_UP] * levels,
        "block_out_channels": list(config.block_out_channels),
        "layers_per_block": config.layers_per_block,
        "act_fn": "silu",
        "latent_channels": config.latent_channels,
        "norm_num_groups": config.norm_num_groups,
        "scaling_factor": config.scaling_factor,
        "shift_factor": config.shift_factor,
        "use_quant_conv": config.use_quant_conv,
        "use_post_quant_conv": config.use_post_quant_conv,
        "mid_block_add_attention": config.mid_attention,
    }


def _param_shapes(config: VAEConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Flax parameter paths -> shapes, without allocating parameters."""
    f = config.downsample_factor
    x = jnp.zeros((1, f, f, config.in_channels))
    shapes = jax.eval_shape(lambda k: AutoencoderKL(config).init(k, x), jax.random.key(0))
    return {p: tuple(v.shape) for p, v in flatten_params(shapes["params"]).items()}


def _rename_legacy(state: Mapping) -> dict:
    """Diffusers < 0.15 attention names (``...attentions.0.query.weight``) -> current."""
    out = {}
    for name, value in state.items():
        parts = name.split(".")
        if len(parts) >= 2 and parts[-2] in _LEGACY_ATTN and "attentions" in parts:
            name = ".".join([*parts[:-2], _LEGACY_ATTN[parts[-2]], parts[-1]])
        out[name] = value
    return out


def vae_from_diffusers(source, config: Mapping | None = None, *, dtype: str = "float32"):
    """Build the Flax :class:`~jaxdiff.nets.vae.AutoencoderKL` from diffusers weights.

    Args:
        source: a diffusers ``AutoencoderKL`` object; a state dict ``{name: tensor or
            array}`` (then ``config`` is required); a ``.safetensors`` / ``.bin`` /
            ``.pt`` file with diffusers' ``config.json`` beside it; or a
            ``save_pretrained`` directory (or a pipeline directory with ``vae/``).
        config: the diffusers config dict; overrides the one found with ``source``.
        dtype: compute dtype (``"float32"``, ``"bfloat16"``, ``"float16"``; checked before
            any weights are read); the
            parameters are float32 whatever it is.

    Returns:
        ``(module, params)``; ``module.apply({"params": params}, x, method=module.encode)``
        gives ``(mean, logvar)`` (NHWC), ``method=module.decode`` gives images.

    Raises:
        ValueError: an unsupported diffusers option (named), or names / shapes that do
            not match (:class:`~jaxdiff.interop.keys.StateDictMismatchError`).
    """
    # no layer of the VAE is a dense kernel stored as a 1x1 conv: layouts take no flag
    dtype = check_choice("dtype", dtype, ("float32", "bfloat16", "float16"))
    dcfg, state, what = resolve_diffusers_source(
        source, config, subfolder="vae", caller="vae_from_diffusers", model="AutoencoderKL"
    )
    cfg = dataclasses.replace(vae_config_from_diffusers(dcfg), dtype=dtype)
    state = _rename_legacy(state)
    shapes = _param_shapes(cfg)
    expected = {torch_name(p): torch_shape(p, s) for p, s in shapes.items()}
    check_state_dict(expected, state, what=what)
    flat = {
        p: jnp.asarray(from_torch_layout(p, np.asarray(state[torch_name(p)], np.float32)))
        for p in shapes
    }
    return AutoencoderKL(cfg), unflatten_params(flat)


def vae_to_diffusers_state_dict(params, config: VAEConfig) -> dict[str, np.ndarray]:
    """Flax VAE parameters -> diffusers ``AutoencoderKL`` state dict.

    Load the result with ``vae.load_state_dict({k: torch.from_numpy(v)})`` into the
    model built from :func:`vae_config_to_diffusers`, or save it with
    :func:`~jaxdiff.interop.state_dict.save_safetensors`.

    Args:
        params: the module's ``params`` (nested dicts).
        config: the :class:`~jaxdiff.nets.vae.VAEConfig` they belong to.

    Returns:
        ``{diffusers name: float32 numpy array}`` in PyTorch layouts.
    """
    flat = flatten_params(jax.tree.map(np.asarray, dict(params)))
    check_state_dict(
        {"/".join(p): s for p, s in _param_shapes(config).items()},
        {"/".join(p): v for p, v in flat.items()},
        what="params",
    )
    return {
        torch_name(p): np.array(to_torch_layout(p, np.asarray(v, np.float32)), order="C")
        for p, v in flat.items()  # np.array copies: writable, as torch.from_numpy wants
    }
