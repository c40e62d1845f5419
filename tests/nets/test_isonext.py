"""IsoNext: a NumPy reference forward pass, AdaGN vs NumPy GroupNorm, conditioning,
circular-shift equivariance, remat, bf16, validation and a closed-form parameter count."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from jaxdiff.nets.isonext import AdaGN, IsoNext, IsoNextConfig

TINY = IsoNextConfig(
    in_channels=3, out_channels=2, hidden_dim=32, num_layers=2, groups=4, style_dim=5
)


def _init(cfg, shape=(2, 16, 16)):
    x = jnp.zeros((*shape, cfg.in_channels))
    t = jnp.zeros((shape[0],))
    style = None if cfg.style_dim is None else jnp.zeros((shape[0], cfg.style_dim))
    return IsoNext(cfg).init(jax.random.key(0), x, t, style)["params"]


def _perturb(params, seed=0):
    """Training-like parameters: every leaf (zero-init modulation, gamma too) random."""
    rng = np.random.default_rng(seed)

    def fill(path, p):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(p.shape[:-1]))
            return jnp.asarray(rng.standard_normal(p.shape) / np.sqrt(fan_in), jnp.float32)
        if name == "scale":
            return jnp.asarray(1 + 0.2 * rng.standard_normal(p.shape), jnp.float32)
        if name == "gamma":
            return jnp.asarray(0.5 + 0.1 * rng.standard_normal(p.shape), jnp.float32)
        return jnp.asarray(0.1 * rng.standard_normal(p.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, params)


@pytest.fixture(scope="module")
def tiny_params():
    return _perturb(_init(TINY))


def _inputs(cfg, shape=(2, 16, 16), seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*shape, cfg.in_channels)).astype(np.float32)
    t = rng.uniform(size=shape[0]).astype(np.float32)
    style = rng.standard_normal((shape[0], cfg.style_dim)).astype(np.float32)
    return x, t, style


# ----------------------------------------------------------------- NumPy reference


def np_group_norm(x, groups, eps, scale, bias):
    b, h, w, c = x.shape
    g = x.reshape(b, h, w, groups, c // groups).astype(np.float64)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = g.var(axis=(1, 2, 4), keepdims=True)
    return ((g - mean) / np.sqrt(var + eps)).reshape(x.shape) * scale + bias


def np_conv_same(x, kernel, bias, depthwise=False):
    """Zero-padded stride-1 'SAME' conv; kernel [k, k, in (1 if depthwise), out]."""
    k = kernel.shape[0]
    r = k // 2
    xp = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
    _, h, w, _ = x.shape
    out = 0.0
    for i in range(k):
        for j in range(k):
            patch = xp[:, i : i + h, j : j + w, :]
            if depthwise:
                out = out + patch * kernel[i, j, 0]
            else:
                out = out + patch @ kernel[i, j]
    return out + bias


def np_silu(x):
    return x / (1 + np.exp(-x))


def np_mlp(p, x):
    h = np_silu(x @ p["linear_1"]["kernel"] + p["linear_1"]["bias"])
    return h @ p["linear_2"]["kernel"] + p["linear_2"]["bias"]


def np_isonext(cfg, params, x, t, style):
    """Independent float64 forward pass, written from the architecture description."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    half = cfg.hidden_dim // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half) / half)
    args = cfg.time_scale * np.asarray(t, np.float64)[:, None] * freqs[None]
    cond = np_mlp(p["time_embedding"], np.concatenate([np.cos(args), np.sin(args)], -1))
    if style is not None:
        cond = cond + np_mlp(p["style_embedding"], np.asarray(style, np.float64))
    h = np_conv_same(np.asarray(x, np.float64), **p["input_proj"])
    for i in range(cfg.num_layers):
        b = p[f"blocks_{i}"]
        y = np_conv_same(h, **b["dwconv"], depthwise=True)
        y = np_group_norm(y, cfg.groups, cfg.norm_eps, **b["adagn"]["norm"])
        mod = np_silu(cond) @ b["adagn"]["modulation"]["kernel"] + b["adagn"]["modulation"]["bias"]
        scale, shift = np.split(mod[:, None, None, :], 2, axis=-1)
        y = y * (1 + scale) + shift
        y = y @ b["pw_expand"]["kernel"] + b["pw_expand"]["bias"]
        y = 0.5 * y * (1 + erf(y / np.sqrt(2)))
        y = y @ b["pw_project"]["kernel"] + b["pw_project"]["bias"]
        h = h + b["gamma"] * y
    h = np_group_norm(h, cfg.groups, cfg.norm_eps, **p["norm_out"])
    return np_conv_same(h, **p["output_proj"])


# ----------------------------------------------------------------- tests


def test_matches_numpy_reference(tiny_params):
    x, t, style = _inputs(TINY, (2, 9, 11))
    apply = jax.jit(IsoNext(TINY).apply)
    got = apply({"params": tiny_params}, x, t, style)
    want = np_isonext(TINY, tiny_params, x, t, style)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4, atol=2e-4)
    got_uncond = apply({"params": tiny_params}, x, t)
    np.testing.assert_allclose(
        np.asarray(got_uncond), np_isonext(TINY, tiny_params, x, t, None), rtol=2e-4, atol=2e-4
    )


@pytest.mark.parametrize("hw", [(16, 16), (7, 13), (1, 3)])
def test_shape_and_dtype_any_size(tiny_params, hw):
    x, t, style = _inputs(TINY, (3, *hw))
    out = IsoNext(TINY).apply({"params": tiny_params}, x, t, style)
    assert out.shape == (3, *hw, TINY.out_channels)
    assert out.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(out)))


def test_adagn_zero_init_is_plain_group_norm(key):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 6, 8)).astype(np.float32) * 3 + 1
    cond = rng.standard_normal((2, 7)).astype(np.float32)
    ada = AdaGN(groups=4, eps=1e-6)
    params = ada.init(key, x, cond)["params"]
    mod = params["modulation"]
    assert not np.any(np.asarray(mod["kernel"])) and not np.any(np.asarray(mod["bias"]))
    # a trained GroupNorm affine, still zero modulation: output is that GroupNorm
    scale = 1 + 0.3 * rng.standard_normal(8)
    bias = 0.3 * rng.standard_normal(8)
    params = {**params, "norm": {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)}}
    out = ada.apply({"params": params}, x, cond)
    want = np_group_norm(x, 4, 1e-6, scale, bias)
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)
    # and it ignores the conditioning
    out2 = ada.apply({"params": params}, x, 10 * cond)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(out2))


def test_fresh_block_adagn_is_group_norm_and_layer_scale_zero_is_identity():
    cfg = dataclasses.replace(TINY, layer_scale_init=0.0)
    params = _init(cfg)
    for i in range(cfg.num_layers):
        assert not np.any(np.asarray(params[f"blocks_{i}"]["gamma"]))
    x, t, style = _inputs(cfg)
    # with gamma = 0 every block is the identity: v = output_proj(GN(input_proj(x)))
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    h = np_conv_same(np.asarray(x, np.float64), **p["input_proj"])
    want = np_conv_same(
        np_group_norm(h, cfg.groups, cfg.norm_eps, **p["norm_out"]), **p["output_proj"]
    )
    out = IsoNext(cfg).apply({"params": params}, x, t, style)
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-4, atol=1e-4)


def test_conditioning_matters(tiny_params):
    x, t, style = _inputs(TINY)
    apply = jax.jit(IsoNext(TINY).apply)
    base = np.asarray(apply({"params": tiny_params}, x, t, style))
    other_t = np.asarray(apply({"params": tiny_params}, x, 1.0 - t, style))
    other_s = np.asarray(apply({"params": tiny_params}, x, t, -style))
    uncond = np.asarray(apply({"params": tiny_params}, x, t))
    for other in (other_t, other_s, uncond):
        assert np.max(np.abs(other - base)) > 1e-2 * np.max(np.abs(base))
    # per-example style dropout: mask 0 == style=None, mask 1 == style given
    mask = jnp.array([1.0, 0.0])
    mixed = np.asarray(apply({"params": tiny_params}, x, t, style, style_mask=mask))
    np.testing.assert_allclose(mixed[0], base[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mixed[1], uncond[1], rtol=1e-6, atol=1e-6)


def test_circular_padding_is_shift_equivariant():
    """GroupNorm statistics are global, so locality fails; circular shifts commute exactly."""
    cfg = dataclasses.replace(TINY, padding="circular", kernel_size=5)
    params = _perturb(_init(cfg, (2, 12, 10)))
    x, t, style = _inputs(cfg, (2, 12, 10))
    apply = jax.jit(IsoNext(cfg).apply)
    out = np.asarray(apply({"params": params}, x, t, style))
    shifted = np.asarray(apply({"params": params}, np.roll(x, (3, -4), (1, 2)), t, style))
    np.testing.assert_allclose(shifted, np.roll(out, (3, -4), (1, 2)), rtol=1e-4, atol=1e-5)
    # the same check fails with zero padding (the borders see the shift)
    zcfg = dataclasses.replace(cfg, padding="zeros")
    zapply = jax.jit(IsoNext(zcfg).apply)
    zout = np.asarray(zapply({"params": params}, x, t, style))
    zshift = np.asarray(zapply({"params": params}, np.roll(x, (3, -4), (1, 2)), t, style))
    assert np.max(np.abs(zshift - np.roll(zout, (3, -4), (1, 2)))) > 1e-3


def test_remat_same_output_and_gradients(tiny_params):
    x, t, style = _inputs(TINY, (2, 8, 8))
    remat_cfg = dataclasses.replace(TINY, use_checkpointing=True)
    assert jax.tree_util.tree_structure(_init(remat_cfg)) == jax.tree_util.tree_structure(
        tiny_params
    )

    def loss(cfg):
        def f(p):
            return jnp.mean(IsoNext(cfg).apply({"params": p}, x, t, style) ** 2)

        return jax.jit(jax.value_and_grad(f))(tiny_params)

    (v0, g0), (v1, g1) = loss(TINY), loss(remat_cfg)
    np.testing.assert_allclose(v0, v1, rtol=1e-6)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g0, g1
    )


def test_bfloat16_compute(tiny_params):
    cfg = dataclasses.replace(TINY, dtype="bfloat16")
    params = _init(cfg)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))
    x, t, style = _inputs(cfg)
    out = IsoNext(cfg).apply({"params": tiny_params}, x, t, style)
    assert out.dtype == jnp.bfloat16 and out.shape == (2, 16, 16, 2)
    ref = np.asarray(IsoNext(TINY).apply({"params": tiny_params}, x, t, style))
    err = np.abs(np.asarray(out, np.float32) - ref)
    assert np.all(np.isfinite(err)) and err.max() < 0.1 * np.abs(ref).max()


def test_param_count_closed_form():
    """Count = stem + time MLP + style MLP + L * block + head (derived by hand)."""
    cfg = IsoNextConfig(
        in_channels=4, out_channels=3, hidden_dim=24, num_layers=3, kernel_size=5,
        expansion=3, groups=6, time_embed_dim=20, style_dim=7,
    )  # fmt: skip
    c, e, k, d, s = 24, 72, 5, 20, 7
    stem = 9 * 4 * c + c
    time_mlp = c * d + d + d * d + d  # sinusoidal features have width hidden_dim
    style_mlp = s * d + d + d * d + d
    block = (k * k * c + c) + 2 * c + (d * 2 * c + 2 * c) + (c * e + e) + (e * c + c) + c
    head = 2 * c + 9 * c * 3 + 3
    want = stem + time_mlp + style_mlp + 3 * block + head
    shapes = jax.eval_shape(
        IsoNext(cfg).init,
        jax.random.key(0),
        jnp.zeros((1, 4, 4, 4)),
        jnp.zeros((1,)),
        jnp.zeros((1, 7)),
    )["params"]
    got = sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(shapes))
    assert got == want
    # the seed's default (D=384, 12 blocks, no style, no layer scale change): ~21.6M
    cfg = IsoNextConfig()
    c, e, d = 384, 1536, 384
    block = (49 * c + c) + 2 * c + (d * 2 * c + 2 * c) + (c * e + e) + (e * c + c) + c
    want = (9 * 4 * c + c) + (c * d + d + d * d + d) + 12 * block + (2 * c + 9 * c * 4 + 4)
    shapes = jax.eval_shape(
        IsoNext(cfg).init, jax.random.key(0), jnp.zeros((1, 4, 4, 4)), jnp.zeros((1,))
    )["params"]
    assert sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(shapes)) == want


@pytest.mark.parametrize(
    ("field", "value", "exc"),
    [
        ("in_channels", 0, ValueError),
        ("hidden_dim", 30, ValueError),  # not divisible by groups=4
        ("num_layers", 0, ValueError),
        ("kernel_size", 4, ValueError),
        ("expansion", 1.5, TypeError),
        ("groups", 0, ValueError),
        ("norm_eps", 0.0, ValueError),
        ("time_embed_dim", -1, ValueError),
        ("time_scale", 0.0, ValueError),
        ("style_dim", 0, ValueError),
        ("layer_scale_init", -1.0, ValueError),
        ("padding", "reflect", ValueError),
        ("dtype", "float8", ValueError),
    ],
)
def test_bad_config_raises(field, value, exc):
    with pytest.raises(exc, match=field):
        dataclasses.replace(TINY, **{field: value})


def test_bad_inputs_raise(tiny_params):
    x, t, style = _inputs(TINY)
    apply = IsoNext(TINY).apply
    p = {"params": tiny_params}
    with pytest.raises(ValueError, match="x must have shape"):
        apply(p, x[..., :2], t, style)
    with pytest.raises(ValueError, match="t must have shape"):
        apply(p, x, t[:1], style)
    with pytest.raises(ValueError, match="style must have shape"):
        apply(p, x, t, style[:, :3])
    with pytest.raises(ValueError, match="style_mask"):
        apply(p, x, t, None, style_mask=jnp.ones(2))
    with pytest.raises(ValueError, match="style_dim is None"):
        IsoNext(dataclasses.replace(TINY, style_dim=None)).apply(p, x, t, style)
