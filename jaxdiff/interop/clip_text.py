"""transformers ``CLIPTextModel`` / ``CLIPTextModelWithProjection`` weights -> Flax.

:func:`clip_text_from_transformers` reads a folder written by ``save_pretrained``
(``config.json`` plus ``model.safetensors``, a sharded ``model.safetensors.index.json``,
or ``pytorch_model.bin`` / its index) or an in-memory ``(config dict, state dict)`` pair
and returns :class:`jaxdiff.nets.clip_text.CLIPTextModel` with its parameters. Nothing
is downloaded: a Hub model id must be fetched by the user first.

Names: ``embeddings.token_embedding.weight`` is ``embeddings/token_embedding/embedding``;
``encoder.layers.3.self_attn.q_proj.weight`` is ``encoder/layers_3/self_attn/q_proj/
kernel`` (transposed: PyTorch ``Linear`` stores ``[out, in]``, Flax ``Dense`` ``[in,
out]``); LayerNorm ``weight`` is ``scale``; ``text_projection.weight`` is
``text_projection/kernel``. transformers >= 5 saves ``CLIPTextModel`` without a prefix,
earlier versions (and ``CLIPTextModelWithProjection``, ``CLIPModel``) put the tower under
``text_model.``; both are read. The ``embeddings.position_ids`` buffer that transformers
< 4.31 saved is ignored, and so is the vision tower of a full ``CLIPModel`` checkpoint
(its ``config.json`` has a ``text_config``). Every other name must match exactly.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._validation import check_bool, check_choice
from jaxdiff.interop.diffusers_weights import (
    flatten_params,
    from_torch_layout,
    read_json_object,
    torch_shape,
    unflatten_params,
)
from jaxdiff.interop.keys import check_state_dict
from jaxdiff.interop.state_dict import load_state_dict
from jaxdiff.nets.clip_text import CLIPTextConfig, CLIPTextModel

__all__ = ["clip_text_from_transformers"]

# looked for in this order; the first present is read
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_PREFIX = "text_model."
_VISION = ("vision_model.", "visual_projection.", "logit_scale")  # a full CLIPModel's other tower
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_LEAF = {"kernel": "weight", "scale": "weight", "embedding": "weight"}


def _torch_name(path: tuple[str, ...], prefix: str) -> str:
    """Flax path -> transformers name (``layers_3`` -> ``layers.3``, leaf -> ``weight``)."""
    *modules, leaf = path
    parts = [re.sub(r"^layers_(\d+)$", r"layers.\1", m) for m in modules]
    name = ".".join([*parts, _LEAF.get(leaf, leaf)])
    return name if modules[0] == "text_projection" else prefix + name


def _param_shapes(config: CLIPTextConfig, with_projection: bool) -> dict:
    """Flax parameter paths -> shapes, without allocating parameters."""
    module = CLIPTextModel(config, with_projection=with_projection)
    ids = jnp.zeros((1, 1), jnp.int32)
    shapes = jax.eval_shape(lambda k: module.init(k, ids), jax.random.key(0))
    return {p: tuple(v.shape) for p, v in flatten_params(shapes["params"]).items()}


def _as_numpy(name: str, value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor
        return value.detach().cpu().float().numpy()
    if isinstance(value, np.ndarray | jax.Array):
        return np.asarray(value)
    raise TypeError(f"state_dict[{name!r}] is a {type(value).__name__}, not a tensor or array")


def _load_weights(path: Path) -> dict[str, np.ndarray]:
    """One weights file, or the shards an ``*.index.json`` names (``weight_map``)."""
    if not path.name.endswith(".index.json"):
        return load_state_dict(path)
    weight_map = read_json_object(path, "a sharded checkpoint index").get("weight_map")
    if not isinstance(weight_map, dict):
        raise ValueError(f"{path} has no 'weight_map' object (a sharded checkpoint index)")
    state = {}
    for shard in sorted(set(weight_map.values())):
        state.update(load_state_dict(path.parent / shard))
    return state


def _read_folder(source) -> tuple[dict, dict, str]:
    path = Path(source)
    if not path.is_dir():
        if path.exists():
            raise ValueError(
                f"source {str(path)!r} is a file; pass the folder save_pretrained wrote "
                "(config.json plus the weights), or a (config_dict, state_dict) pair"
            )
        hint = ""
        if isinstance(source, str) and _HUB_ID.match(source):
            hint = (
                "; it looks like a Hugging Face Hub model id, but jaxdiff does not download: "
                f"download it first (e.g. `huggingface-cli download {source}`) and pass the "
                "local folder"
            )
        raise FileNotFoundError(f"no such directory: {str(path)!r}{hint}")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} not found: pass the folder save_pretrained wrote (config.json "
            "plus weights); for a diffusers pipeline, its text_encoder/ folder"
        )
    files = [path / name for name in _WEIGHT_FILES if (path / name).is_file()]
    if not files:
        raise FileNotFoundError(f"no weights in {path}; expected one of {list(_WEIGHT_FILES)}")
    config = read_json_object(config_path, "a transformers config.json")
    return config, _load_weights(files[0]), str(files[0])


def _read_pair(source) -> tuple[dict, dict, str]:
    if not (len(source) == 2 and all(isinstance(part, Mapping) for part in source)):
        raise TypeError(
            "a source pair must be (config_dict, state_dict), two mappings; got "
            f"({', '.join(type(part).__name__ for part in source)})"
        )
    config, state = source
    return dict(config), {k: _as_numpy(k, v) for k, v in state.items()}, "state dict"


def _text_tower(state: dict, full_clip: bool) -> tuple[dict, str]:
    """Drop the position-ids buffer (and a CLIPModel's vision tower); find the prefix."""
    prefix = _PREFIX if any(k.startswith(_PREFIX) for k in state) else ""
    drop = (f"{prefix}embeddings.position_ids",)
    if full_clip:
        drop += _VISION
    return {k: v for k, v in state.items() if not k.startswith(drop)}, prefix


def clip_text_from_transformers(source, *, with_projection=None, dtype: str = "float32"):
    """Build :class:`~jaxdiff.nets.clip_text.CLIPTextModel` from transformers weights.

    Args:
        source: a local folder written by ``save_pretrained`` (``config.json`` and
            ``model.safetensors``, a sharded safetensors index, or ``pytorch_model.bin``),
            or a ``(config_dict, state_dict)`` pair (``model.config.to_dict()`` and
            ``model.state_dict()``; values torch tensors or numpy arrays). A full
            ``CLIPModel`` config / checkpoint gives its text tower.
        with_projection: ``None`` (the default) adds ``text_projection`` exactly when the
            weights hold ``text_projection.weight``; ``True`` / ``False`` demand it or
            its absence.
        dtype: compute dtype (``"float32"``, ``"bfloat16"``, ``"float16"``); parameters
            are float32 whatever it is.

    Returns:
        ``(module, params)``: ``module.apply({"params": params}, input_ids,
        attention_mask)`` gives a :class:`~jaxdiff.nets.clip_text.CLIPTextOutput`.

    Raises:
        FileNotFoundError: no such folder (a Hub model id is not downloaded), or no
            ``config.json`` / weights in it.
        TypeError: ``source`` is neither a path nor a pair of mappings, a state-dict
            value is not an array, or ``with_projection`` is not ``None`` or a bool.
        ValueError: a config field out of range (named), unreadable files, or names /
            shapes that do not match
            (:class:`~jaxdiff.interop.keys.StateDictMismatchError` lists every unknown,
            missing and mis-shaped key).
    """
    dtype = check_choice("dtype", dtype, ("float32", "bfloat16", "float16"))
    if with_projection is not None:
        with_projection = check_bool("with_projection", with_projection)
    if isinstance(source, str | os.PathLike):
        config, state, what = _read_folder(source)
    elif isinstance(source, tuple | list):
        config, state, what = _read_pair(source)
    else:
        raise TypeError(
            "source must be a local save_pretrained folder or a (config_dict, state_dict) "
            f"pair, got {type(source).__name__}"
        )
    cfg = dataclasses.replace(CLIPTextConfig.from_dict(config), dtype=dtype)
    full_clip = "text_config" in config or "text_config_dict" in config
    state, prefix = _text_tower(state, full_clip)
    if with_projection is None:
        with_projection = "text_projection.weight" in state
    shapes = _param_shapes(cfg, with_projection)
    names = {p: _torch_name(p, prefix) for p in shapes}
    check_state_dict({names[p]: torch_shape(p, s) for p, s in shapes.items()}, state, what=what)
    flat = {
        p: jnp.asarray(from_torch_layout(p, np.asarray(state[names[p]], np.float32)))
        for p in shapes
    }
    return CLIPTextModel(cfg, with_projection=with_projection), unflatten_params(flat)
