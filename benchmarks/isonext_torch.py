"""PyTorch twin of :class:`jaxdiff.nets.IsoNext` (and the style CLI's ``StyleVelocity``).

The peer of ``benchmarks/flow_train.py``: the same isotropic ConvNeXt with AdaGN as
:mod:`jaxdiff.nets.isonext` (Liu et al. 2022; AdaGN as in Dhariwal & Nichol 2021), written
the way the PyTorch original is (NCHW modules, ``Conv2d`` 1x1 pointwise layers, run
``channels_last`` under bf16 autocast). Module names mirror the Flax parameter tree, so
:func:`load_flax_params` copies jaxdiff's parameters in and the two forward passes can be
compared number for number (float32).

    x [B, C, H, W], t [B] in [0, 1], style ids [B] in 0..K (K: null) -> v [B, C, H, W]

Not part of jaxdiff: a benchmark helper (torch is only the ``dev`` / ``torch`` extra).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from jaxdiff.nets import IsoNextConfig

__all__ = ["IsoNextTorch", "StyleVelocityTorch", "load_flax_params", "num_params"]


def _sinusoidal(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``[cos(t w_k), sin(t w_k)]``, ``w_k = 10000^(-k / (dim / 2))`` (jaxdiff's features
    with ``flip_sin_to_cos=True``, ``downscale_freq_shift=0``); ``[B]`` -> ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return nn.functional.pad(emb, (0, dim % 2))


class _TimestepMLP(nn.Module):
    """``linear_1 -> SiLU -> linear_2`` (jaxdiff's ``TimestepMLP``)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(nn.functional.silu(self.linear_1(x)))


class _AdaGN(nn.Module):
    """``GroupNorm(x) * (1 + scale(c)) + shift(c)``, the modulation zero-initialised."""

    def __init__(self, channels: int, cond_dim: int, groups: int, eps: float):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=eps)
        self.modulation = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x, cond):
        scale, shift = self.modulation(nn.functional.silu(cond))[:, :, None, None].chunk(2, 1)
        return self.norm(x) * (1 + scale) + shift


class _Block(nn.Module):
    """``x + gamma * pw_project(GELU(pw_expand(AdaGN(dwconv(x), c))))``."""

    def __init__(self, cfg: IsoNextConfig):
        super().__init__()
        d, k = cfg.hidden_dim, cfg.kernel_size
        mode = "zeros" if cfg.padding == "zeros" else "circular"
        self.dwconv = nn.Conv2d(d, d, k, padding=k // 2, groups=d, padding_mode=mode)
        self.adagn = _AdaGN(d, cfg.cond_dim, cfg.groups, cfg.norm_eps)
        self.pw_expand = nn.Conv2d(d, cfg.expansion * d, 1)
        self.pw_project = nn.Conv2d(cfg.expansion * d, d, 1)
        init = cfg.layer_scale_init
        self.gamma = None if init is None else nn.Parameter(torch.full((d,), float(init)))

    def forward(self, x, cond):
        h = self.adagn(self.dwconv(x), cond)
        h = self.pw_project(nn.functional.gelu(self.pw_expand(h)))
        if self.gamma is not None:
            h = h * self.gamma[None, :, None, None]
        return x + h


class IsoNextTorch(nn.Module):
    """jaxdiff's IsoNext in PyTorch (NCHW); ``forward(x, t, style=None, style_mask=None)``."""

    def __init__(self, cfg: IsoNextConfig):
        super().__init__()
        self.cfg = cfg
        d, mode = cfg.hidden_dim, "zeros" if cfg.padding == "zeros" else "circular"
        self.time_embedding = _TimestepMLP(d, cfg.cond_dim)
        self.style_embedding = (
            None if cfg.style_dim is None else _TimestepMLP(cfg.style_dim, cfg.cond_dim)
        )
        self.input_proj = nn.Conv2d(cfg.in_channels, d, 3, padding=1, padding_mode=mode)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.num_layers))
        self.norm_out = nn.GroupNorm(cfg.groups, d, eps=cfg.norm_eps)
        self.output_proj = nn.Conv2d(d, cfg.out_channels, 3, padding=1, padding_mode=mode)

    def forward(self, x, t, style=None, style_mask=None):
        """``x [B, C, H, W]``, ``t [B]`` in [0, 1], ``style [B, style_dim]``, ``style_mask [B]``."""
        cfg = self.cfg
        cond = self.time_embedding(_sinusoidal(cfg.time_scale * t, cfg.hidden_dim))
        if self.style_embedding is not None and style is not None:
            keep = torch.ones_like(t) if style_mask is None else style_mask
            cond = cond + keep.to(cond.dtype)[:, None] * self.style_embedding(style)
        h = self.input_proj(x.contiguous(memory_format=torch.channels_last))
        for block in self.blocks:
            h = block(h, cond)
        return self.output_proj(self.norm_out(h))


class StyleVelocityTorch(nn.Module):
    """``jaxdiff.nets.StyleVelocity`` in PyTorch: one-hot style ids, id ``K``
    (``num_styles``) the null style (mask 0); the IsoNext is the attribute ``isonext``."""

    def __init__(self, cfg: IsoNextConfig, num_styles: int):
        super().__init__()
        self.num_styles = num_styles
        self.isonext = IsoNextTorch(cfg)

    def forward(self, x, t, ids):
        ids = ids.long()
        vector = nn.functional.one_hot(ids, self.num_styles + 1)[:, : self.num_styles].float()
        keep = (ids < self.num_styles).float()
        return self.isonext(x, t, vector, style_mask=keep)


def num_params(module: nn.Module) -> int:
    """Number of parameters (all trainable)."""
    return sum(p.numel() for p in module.parameters())


def _flat(tree, prefix=()):
    for name, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, prefix + (name,))
        else:
            yield prefix + (name,), value


def load_flax_params(module: nn.Module, params) -> None:
    """Copy jaxdiff's IsoNext / StyleVelocity ``params`` into ``module`` (in place).

    Names map one to one (``blocks_3/adagn/modulation/kernel`` ->
    ``blocks.3.adagn.modulation.weight``); Dense kernels ``[in, out]`` become ``[out, in]``
    (``[out, in, 1, 1]`` for the 1x1 convolutions), conv kernels ``[kh, kw, in, out]``
    become ``[out, in, kh, kw]``, GroupNorm ``scale`` becomes ``weight``.

    Raises:
      ValueError: a parameter missing on either side or of another shape.
    """
    state = module.state_dict()
    seen = set()
    for path, value in _flat(dict(params)):
        *parts, leaf = (p.replace("blocks_", "blocks.") for p in path)
        leaf = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
        key = ".".join([*parts, leaf])
        if key not in state:
            raise ValueError(f"flax parameter {'/'.join(path)} has no torch twin {key!r}")
        arr = np.asarray(value, np.float32)
        if arr.ndim == 4:
            arr = arr.transpose(3, 2, 0, 1)
        elif arr.ndim == 2:
            arr = arr.T
        want = tuple(state[key].shape)
        arr = arr.reshape(want) if arr.size == int(np.prod(want)) else arr
        if arr.shape != want:
            raise ValueError(f"{key}: flax shape {np.shape(value)} does not fit torch {want}")
        state[key] = torch.tensor(arr)
        seen.add(key)
    missing = sorted(set(state) - seen)
    if missing:
        raise ValueError(f"torch parameters without a flax value: {missing[:5]}")
    module.load_state_dict(state)
