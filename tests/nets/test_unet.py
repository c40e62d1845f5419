"""The Flax UNet: attention against a numpy reference, precision, remat, validation.

Equivalence with diffusers' PyTorch UNets is in tests/interop/test_diffusers_unet.py.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nets.attention import Attention
from jaxdiff.nets.config import HighResModelConfig
from jaxdiff.nets.unet import UNet

TINY = HighResModelConfig(
    in_channels=3,
    out_channels=3,
    base_channels=8,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_levels=(1,),
    norm_num_groups=4,
    num_heads=2,
    conditional=True,
    context_dim=8,
)


def _inputs(key, cfg, batch=2):
    kx, kc = jax.random.split(key)
    x = jax.random.normal(kx, (batch, 8, 8, cfg.in_channels))
    t = jnp.array([10, 500][:batch])
    ctx = jax.random.normal(kc, (batch, 3, cfg.context_dim)) if cfg.conditional else None
    return x, t, ctx


def random_params(cfg, seed=0):
    """Random parameters from the shapes alone (``UNet.init`` compiles slowly on CPU)."""
    x, t, ctx = _inputs(jax.random.key(0), cfg)
    shapes = jax.eval_shape(UNet(cfg).init, jax.random.key(0), x, t, ctx)["params"]
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = path[-1].key
        if name == "lora_B":
            return jnp.zeros(s.shape)
        if name == "scale":
            return jnp.asarray(1 + 0.1 * rng.standard_normal(s.shape), jnp.float32)
        fan_in = int(np.prod(s.shape[:-1])) if name in ("kernel", "lora_A") else 10
        return jnp.asarray(rng.standard_normal(s.shape) / np.sqrt(fan_in), jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def random_attention_params(module, x):
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)["params"]
    rng = np.random.default_rng(1)
    return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape)), shapes)


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _np_attention(p, x, ctx, heads):
    """Multi-head attention written out in numpy (float64)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)

    def dense(name, y):
        out = y @ p[name]["kernel"]
        return out + p[name]["bias"] if "bias" in p[name] else out

    q, k, v = dense("to_q", x), dense("to_k", ctx), dense("to_v", ctx)
    b, t, inner = q.shape
    d = inner // heads

    def split(y):
        return y.reshape(b, -1, heads, d).transpose(0, 2, 1, 3)

    w = _softmax(split(q) @ split(k).transpose(0, 1, 3, 2) / np.sqrt(d))
    out = (w @ split(v)).transpose(0, 2, 1, 3).reshape(b, t, inner)
    return dense("to_out_0", out)


def test_attention_matches_numpy_reference(key):
    kx, kc, kp = jax.random.split(key, 3)
    x = jax.random.normal(kx, (2, 7, 12))
    ctx = jax.random.normal(kc, (2, 5, 6))
    attn = Attention(heads=3, head_dim=4, qkv_bias=True)
    shapes = jax.eval_shape(attn.init, kp, x, ctx)["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape)), shapes)
    with jax.default_matmul_precision("highest"):  # TF32 on a GPU would miss 1e-5
        got = jax.jit(attn.apply)({"params": params}, x, ctx)
    want = _np_attention(params, np.asarray(x, np.float64), np.asarray(ctx, np.float64), 3)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_spatial_attention_block_matches_numpy_reference(key):
    kx, kp = jax.random.split(key)
    x = jax.random.normal(kx, (2, 4, 4, 8))
    attn = Attention(heads=2, head_dim=4, qkv_bias=True, norm_groups=2, residual=True,
                     rescale_output_factor=2.0)  # fmt: skip
    params = random_attention_params(attn, x)
    got = jax.jit(attn.apply)({"params": params}, x)
    xn = np.asarray(x, np.float64).reshape(2, 16, 2, 4)
    mean, var = xn.mean(axis=(1, 3), keepdims=True), xn.var(axis=(1, 3), keepdims=True)
    normed = ((xn - mean) / np.sqrt(var + 1e-5)).reshape(2, 16, 8)
    normed = normed * np.asarray(params["group_norm"]["scale"]) + np.asarray(
        params["group_norm"]["bias"]
    )
    want = (_np_attention(params, normed, normed, 2) + np.asarray(x).reshape(2, 16, 8)) / 2.0
    np.testing.assert_allclose(got, want.reshape(2, 4, 4, 8), atol=1e-5)


def test_bfloat16_compute_stays_close(key):
    params = random_params(TINY)
    x, t, ctx = _inputs(jax.random.key(1), TINY)
    ref = jax.jit(UNet(TINY).apply)({"params": params}, x, t, ctx)
    bf16 = dataclasses.replace(TINY, dtype="bfloat16")
    out = jax.jit(UNet(bf16).apply)({"params": params}, x, t, ctx)
    assert out.dtype == jnp.bfloat16 and out.shape == ref.shape
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    rel = jnp.linalg.norm(out.astype(jnp.float32) - ref) / jnp.linalg.norm(ref)
    assert rel < 5e-2


def test_checkpointing_same_output_and_gradients():
    cfg = dataclasses.replace(TINY, mid_block=False)
    params = random_params(cfg)
    x, t, ctx = _inputs(jax.random.key(1), cfg)

    def loss(p, c):
        return jnp.mean(UNet(c).apply({"params": p}, x, t, ctx) ** 2)

    remat = dataclasses.replace(cfg, use_checkpointing=True)
    v0, g0 = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, cfg)
    v1, g1 = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, remat)
    np.testing.assert_allclose(v0, v1, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g0, g1)


def test_remat_self_attention_block_gradients(key):
    """The unconditional (self-attention) block under ``nn.remat``."""
    x = jax.random.normal(key, (2, 4, 4, 8))
    kw = dict(heads=2, head_dim=4, qkv_bias=True, norm_groups=2, residual=True)
    params = random_attention_params(Attention(**kw), x)
    grads = [
        jax.jit(jax.grad(lambda p, m=m: jnp.sum(m.apply({"params": p}, x) ** 2)))(params)
        for m in (Attention(**kw), nn.remat(Attention)(**kw))
    ]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), *grads)


def test_dropout_is_used_in_training_mode():
    cfg = dataclasses.replace(TINY, dropout=0.5, mid_block=False)
    params = random_params(cfg)
    x, t, ctx = _inputs(jax.random.key(1), cfg)
    apply = jax.jit(UNet(cfg).apply, static_argnames="deterministic")
    a = apply({"params": params}, x, t, ctx)  # eval mode: dropout off
    b = apply({"params": params}, x, t, ctx, deterministic=False,
              rngs={"dropout": jax.random.key(3)})  # fmt: skip
    c = apply({"params": params}, x, t, ctx, deterministic=False,
              rngs={"dropout": jax.random.key(3)})  # fmt: skip
    np.testing.assert_array_equal(b, c)
    assert not np.allclose(a, b)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(base_channels=6), "norm_num_groups"),
        (dict(attention_levels=(2,)), "attention_levels"),
        (dict(dtype="float64"), "dtype"),
        (dict(num_heads=3), "heads"),
        (dict(attention_head_dim=3), "attention_head_dim"),
        (dict(time_embedding_type="learned"), "time_embedding_type"),
        (dict(transformer_layers_per_block=(1, 2, 3)), "transformer_layers_per_block"),
        (dict(lora_rank=-1), "lora_rank"),
    ],
)
def test_config_validation(change, match):
    with pytest.raises((ValueError, TypeError), match=match):
        dataclasses.replace(TINY, **change)


def test_input_validation(key):
    params = random_params(TINY)
    x, t, ctx = _inputs(jax.random.key(1), TINY)
    apply = UNet(TINY).apply
    with pytest.raises(ValueError, match="NHWC"):
        apply({"params": params}, x[..., :2], t, ctx)
    with pytest.raises(ValueError, match="context"):
        apply({"params": params}, x, t)
    with pytest.raises(ValueError, match="divisible"):
        apply({"params": params}, x[:, :7], t, ctx)
    with pytest.raises(ValueError, match="class_labels"):
        apply({"params": params}, x, t, ctx, class_labels=jnp.array([0, 1]))
