"""LoRA adapters: the layer formula, identity at init, merge / unmerge, trainable mask."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdiff.nets.config import HighResModelConfig
from jaxdiff.nets.lora import LoRADense, lora_trainable_mask, merge_lora, strip_lora, unmerge_lora
from jaxdiff.nets.unet import UNet
from tests.nets.test_unet import random_params

CFG = HighResModelConfig(
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
    lora_rank=2,
    lora_alpha=3.0,
    mid_block=False,
)
BASE = dataclasses.replace(CFG, lora_rank=0)


def _inputs(key):
    kx, kc = jax.random.split(key)
    return jax.random.normal(kx, (2, 8, 8, 3)), jnp.array([3, 90]), jax.random.normal(kc, (2, 4, 8))


def _perturb_lora(key, params):
    """Give every lora_B non-zero values (a trained adapter)."""
    leaves, tree = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(leaves))
    new = [
        0.1 * jax.random.normal(k, v.shape) if str(path[-1].key) == "lora_B" else v
        for k, (path, v) in zip(keys, leaves, strict=True)
    ]
    return jax.tree_util.tree_unflatten(tree, new)


def test_lora_dense_formula(key):
    kx, kp, kb = jax.random.split(key, 3)
    x = jax.random.normal(kx, (5, 6))
    layer = LoRADense(4, lora_rank=2, lora_alpha=3.0)
    p = layer.init(kp, x)["params"]
    p["lora_B"] = jax.random.normal(kb, (2, 4))
    got = layer.apply({"params": p}, x)
    n = {k: np.asarray(v, np.float64) for k, v in p.items()}
    want = np.asarray(x, np.float64) @ (n["kernel"] + 1.5 * n["lora_A"] @ n["lora_B"]) + n["bias"]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_fresh_lora_equals_base_and_merge_roundtrip(key):
    x, t, ctx = _inputs(jax.random.key(1))
    params = random_params(CFG)
    lora_apply = jax.jit(UNet(CFG).apply)
    base_apply = jax.jit(UNet(BASE).apply)
    base_params = strip_lora(params)
    assert jax.tree.structure(base_params) == jax.tree.structure(
        jax.eval_shape(UNet(BASE).init, key, x, t, ctx)["params"]
    )
    np.testing.assert_array_equal(
        lora_apply({"params": params}, x, t, ctx), base_apply({"params": base_params}, x, t, ctx)
    )

    trained = _perturb_lora(jax.random.key(2), params)
    with_lora = lora_apply({"params": trained}, x, t, ctx)
    assert not np.allclose(with_lora, base_apply({"params": base_params}, x, t, ctx), atol=1e-4)
    merged = merge_lora(trained, alpha=CFG.lora_alpha)
    np.testing.assert_allclose(
        base_apply({"params": strip_lora(merged)}, x, t, ctx), with_lora, atol=1e-5
    )
    restored = unmerge_lora(merged, alpha=CFG.lora_alpha)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), restored, trained)


def test_trainable_mask_freezes_base(key):
    x, t, ctx = _inputs(jax.random.key(1))
    params = random_params(CFG)
    mask = lora_trainable_mask(params)
    flat = jax.tree_util.tree_flatten_with_path(mask)[0]
    lora = {str(p[-1].key) for p, m in flat if m}
    assert lora == {"lora_A", "lora_B"}
    # adapters on attention q/k/v/out and on the transformer projections
    names = {"/".join(str(k.key) for k in p[:-1]) for p, m in flat if m}
    for part in ("to_q", "to_k", "to_v", "to_out_0", "proj_in", "proj_out"):
        assert any(n.endswith(part) for n in names), part
    tx = optax.chain(
        optax.masked(optax.sgd(0.1), mask),
        optax.masked(optax.set_to_zero(), jax.tree.map(lambda m: not m, mask)),
    )
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    for (path, m), a, b in zip(flat, jax.tree.leaves(params), jax.tree.leaves(new), strict=True):
        assert np.array_equal(a, b) != m, path
