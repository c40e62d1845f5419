"""MLP and ResidualMLP against a pure-jnp reference forward pass."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nets.embeddings import sinusoidal_embedding
from jaxdiff.nets.mlp import MLP, ResidualMLP


def dense(p, h):
    return h @ p["kernel"] + p["bias"]


def ref_cond(p, t, ctx, dim, scale):
    e = sinusoidal_embedding(t * scale, dim)
    e = dense(p["time_mlp"]["linear_2"], jax.nn.silu(dense(p["time_mlp"]["linear_1"], e)))
    if ctx is not None:
        e = e + dense(p["context_proj"], ctx)
    return e


def layer_norm(p, h, eps=1e-6):
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    return (h - mu) / jnp.sqrt(var + eps) * p["scale"] + p["bias"]


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def ref_mlp(p, x, t, ctx, depth, dim, scale):
    h = jnp.concatenate([x, ref_cond(p["cond"], t, ctx, dim, scale)], -1)
    for i in range(depth):
        h = jax.nn.silu(dense(p[f"dense_{i}"], h))
    return dense(p["out"], h)


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def ref_resmlp(p, x, t, ctx, blocks, dim, scale):
    e = jax.nn.silu(ref_cond(p["cond"], t, ctx, dim, scale))
    h = dense(p["in_proj"], x)
    for i in range(blocks):
        b = p[f"block_{i}"]
        y = dense(b["dense_1"], layer_norm(b["norm"], h)) + dense(b["emb_proj"], e)
        h = h + dense(b["dense_2"], jax.nn.silu(y))
    return dense(p["out"], jax.nn.silu(layer_norm(p["out_norm"], h)))


@pytest.mark.parametrize("with_ctx", [False, True])
def test_mlp_matches_reference(with_ctx, key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    x = jax.random.normal(k1, (5, 3))
    t = jax.random.uniform(k2, (5,))
    ctx = jax.random.normal(k3, (5, 2)) if with_ctx else None
    net = MLP(hidden_dim=16, depth=2, time_embed_dim=8, time_scale=1000.0)
    params = jax.jit(net.init)(k4, x, t, ctx)["params"]
    got = jax.jit(net.apply)({"params": params}, x, t, ctx)
    want = ref_mlp(params, x, t, ctx, 2, 8, 1000.0)
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_ctx", [False, True])
def test_residual_mlp_matches_reference(with_ctx, key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    x = jax.random.normal(k1, (4, 6))
    t = jnp.arange(4) * 100
    ctx = jax.random.normal(k3, (4, 3)) if with_ctx else None
    net = ResidualMLP(hidden_dim=16, num_blocks=2, time_embed_dim=8, out_dim=2)
    params = jax.jit(net.init)(k4, x, t, ctx)["params"]
    # zero-initialised output layer: an untrained model predicts 0
    np.testing.assert_array_equal(jax.jit(net.apply)({"params": params}, x, t, ctx), 0.0)
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(k2, p.shape), params)
    got = jax.jit(net.apply)({"params": params}, x, t, ctx)
    want = ref_resmlp(params, x, t, ctx, 2, 8, 1.0)
    assert got.shape == (4, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_scalar_time_and_counts(key):
    counts = jnp.asarray([[0, 3, 120], [5, 0, 1]], jnp.int32)
    net = MLP(hidden_dim=8, depth=1, time_embed_dim=4, log1p_inputs=True)
    params = jax.jit(net.init)(key, counts, 0.5)["params"]
    out = jax.jit(net.apply)({"params": params}, counts, 0.5)
    x = jnp.log1p(counts.astype(jnp.float32))
    want = ref_mlp(params, x, jnp.full((2,), 0.5), None, 1, 4, 1.0)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_bf16_params_compute_in_bf16(key):
    x = jax.random.normal(key, (3, 4))
    net = ResidualMLP(hidden_dim=8, num_blocks=1, time_embed_dim=4)
    params = jax.jit(net.init)(key, x, jnp.zeros(3))["params"]
    half = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    out = jax.jit(net.apply)({"params": half}, x.astype(jnp.bfloat16), jnp.zeros(3))
    assert out.dtype == jnp.bfloat16


def test_bad_shapes_raise(key):
    net = MLP(hidden_dim=8, depth=1)
    with pytest.raises(ValueError, match="x must have shape"):
        net.init(key, jnp.zeros((2, 3, 4)), jnp.zeros(2))
    with pytest.raises(ValueError, match="t must be"):
        net.init(key, jnp.zeros((2, 3)), jnp.zeros(3))
    with pytest.raises(ValueError, match="context must"):
        net.init(key, jnp.zeros((2, 3)), jnp.zeros(2), jnp.zeros((3, 1)))
    with pytest.raises(ValueError, match="depth"):
        MLP(depth=0).init(key, jnp.zeros((2, 3)), jnp.zeros(2))
