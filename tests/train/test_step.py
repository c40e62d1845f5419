"""The pure train step: micro-batching, AdamW + clipping + schedule, EMA, bf16."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nets.mlp import MLP
from jaxdiff.schedules import DiscreteSchedule
from jaxdiff.train import (
    DenoisingObjective,
    TrainingConfig,
    TrainState,
    compute_gradients,
    example_keys,
    make_lr_schedule,
    make_optimizer,
    make_train_step,
    step_key,
    train_step,
)

MODEL = MLP(hidden_dim=16, depth=2, time_embed_dim=8)
OBJ = DenoisingObjective.create(DiscreteSchedule.create("linear", 50), "v_prediction")


def apply_fn(p, x, t, c):
    return MODEL.apply({"params": p}, x, t, c)


def setup(cfg, key):
    kp, kx, ks = jax.random.split(key, 3)
    params = MODEL.init(kp, jnp.zeros((1, 3)), jnp.zeros(1))["params"]
    x = jax.random.normal(kx, (cfg.batch_size, 3))
    tx = make_optimizer(cfg, cfg.num_steps)
    return TrainState.create(ks, params, tx), {"x": x}, tx


def leaves_close(a, b, **kw):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, **kw)


def test_micro_batch_accumulation_equals_big_batch(key):
    big = TrainingConfig(batch_size=16, num_steps=5, gradient_clip_norm=0.5, ema_decay=0.5)
    small = TrainingConfig(
        batch_size=16, micro_batch_size=4, num_steps=5, gradient_clip_norm=0.5, ema_decay=0.5
    )
    assert small.num_micro_batches == 4
    state, batch, tx = setup(big, key)
    step_big = make_train_step(apply_fn, OBJ, tx, big)
    step_small = make_train_step(apply_fn, OBJ, tx, small)
    s1, m1 = state, None
    s2 = jax.tree.map(jnp.copy, state)
    for _ in range(3):
        s1, m1 = step_big(s1, batch)
        s2, m2 = step_small(s2, batch)
        np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-5)
        np.testing.assert_allclose(m1["grad_norm"], m2["grad_norm"], rtol=1e-5)
    leaves_close(s1.params, s2.params, rtol=1e-5, atol=1e-7)
    leaves_close(s1.ema_params, s2.ema_params, rtol=1e-5, atol=1e-7)


def test_adamw_clip_and_ema_match_formulas(key):
    """One step against hand-written clipping + AdamW (bias-corrected) + EMA."""
    cfg = TrainingConfig(
        batch_size=8,
        num_steps=10,
        learning_rate=1e-2,
        weight_decay=0.1,
        gradient_clip_norm=1e-3,
        ema_decay=0.9,
        adam_eps=1e-8,
    )
    state, batch, tx = setup(cfg, key)
    keys = example_keys(step_key(state), 8)
    grad_fn = functools.partial(compute_gradients, apply_fn=apply_fn, objective=OBJ, config=cfg)
    _, _, g = jax.jit(grad_fn)(state.params, keys, batch)
    gnorm = float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(g))))
    assert gnorm > 1e-3  # clipping is active
    step = functools.partial(train_step, apply_fn=apply_fn, objective=OBJ, tx=tx, config=cfg)
    new, metrics = jax.jit(step)(state, batch)
    np.testing.assert_allclose(metrics["grad_norm"], gnorm, rtol=1e-5)
    lr = 1e-2  # no warm-up: the cosine starts at the peak

    def adamw(p, g):
        g = g * (1e-3 / gnorm)
        m, v = 0.1 * g, 0.001 * g**2  # first moments; bias-corrected: g, g^2
        return p - lr * ((m / 0.1) / (jnp.sqrt(v / 0.001) + 1e-8) + 0.1 * p)

    want = jax.tree.map(adamw, state.params, g)
    leaves_close(new.params, want, rtol=1e-5, atol=1e-7)
    leaves_close(
        new.ema_params,
        jax.tree.map(lambda a, b: 0.9 * a + 0.1 * b, state.params, want),
        rtol=1e-5,
        atol=1e-7,
    )
    assert int(new.step) == 1


def test_lr_schedule_closed_form():
    cfg = TrainingConfig(learning_rate=2e-3, warmup_steps=10, min_lr_ratio=0.1, num_steps=110)
    sched = make_lr_schedule(cfg, 110)
    for s in [0, 3, 10, 40, 109, 110]:
        if s < 10:
            want = 2e-3 * s / 10
        else:
            want = 2e-4 + (2e-3 - 2e-4) * 0.5 * (1 + np.cos(np.pi * (s - 10) / 100))
        np.testing.assert_allclose(float(sched(s)), want, rtol=1e-5, atol=1e-12)


def test_bf16_compute_keeps_fp32_master_and_grads(key):
    cfg32 = TrainingConfig(batch_size=8, num_steps=5)
    cfg16 = TrainingConfig(batch_size=8, num_steps=5, mixed_precision="bf16")
    state, batch, tx = setup(cfg32, key)
    keys = example_keys(step_key(state), 8)
    seen = {}

    def spy(p, x, t, c):
        seen["dtype"] = jax.tree.leaves(p)[0].dtype, x.dtype
        return apply_fn(p, x, t, c)

    def grads(cfg):
        fn = functools.partial(compute_gradients, apply_fn=spy, objective=OBJ, config=cfg)
        return jax.jit(fn)(state.params, keys, batch)

    l32, _, g32 = grads(cfg32)
    l16, _, g16 = grads(cfg16)
    assert seen["dtype"] == (jnp.bfloat16, jnp.bfloat16)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(g16))
    np.testing.assert_allclose(l16, l32, rtol=3e-2)
    flat32 = jnp.concatenate([x.ravel() for x in jax.tree.leaves(g32)])
    flat16 = jnp.concatenate([x.ravel() for x in jax.tree.leaves(g16)])
    cos = jnp.dot(flat32, flat16) / jnp.linalg.norm(flat32) / jnp.linalg.norm(flat16)
    assert float(cos) > 0.99
    new, _ = make_train_step(apply_fn, OBJ, tx, cfg16)(state, batch)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(new.params))


def test_step_is_deterministic_and_key_is_a_function_of_step(key):
    cfg = TrainingConfig(batch_size=8, num_steps=5)
    state, batch, tx = setup(cfg, key)
    step = make_train_step(apply_fn, OBJ, tx, cfg)
    a, _ = step(jax.tree.map(jnp.copy, state), batch)
    b, _ = step(jax.tree.map(jnp.copy, state), batch)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jnp.issubdtype(u.dtype, jax.dtypes.prng_key):
            u, v = jax.random.key_data(u), jax.random.key_data(v)
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(
        jax.random.key_data(step_key(a)),
        jax.random.key_data(jax.random.fold_in(state.key, 1)),
    )


def test_config_validation():
    with pytest.raises(ValueError, match="micro_batch_size"):
        TrainingConfig(batch_size=10, micro_batch_size=3)
    with pytest.raises(ValueError, match="micro_batch_size"):
        TrainingConfig(batch_size=10, micro_batch_size=20)
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainingConfig(mixed_precision="fp8")
    with pytest.raises(ValueError, match="ema_decay"):
        TrainingConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="num_steps or epochs"):
        TrainingConfig(num_steps=None)
    with pytest.raises(TypeError, match="batch_size"):
        TrainingConfig(batch_size=2.5)
    assert TrainingConfig(mixed_precision=True).mixed_precision == "bf16"
    assert TrainingConfig(mixed_precision="BF16").mixed_precision == "bf16"
    cfg = TrainingConfig(num_steps=None, epochs=3)
    assert cfg.total_steps(steps_per_epoch=7) == 21
    with pytest.raises(ValueError, match="steps_per_epoch"):
        cfg.total_steps()
    hash(cfg)  # usable as a static jit argument


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("min_lr_ratio", 1.5, ValueError),
        ("min_lr_ratio", -0.1, ValueError),
        ("seed", "abc", TypeError),
        ("seed", -1, ValueError),
        ("seed", 2.5, TypeError),
        ("seed", 2**32, ValueError),  # jax.random.key(2**32) is seed 0's key
        ("gradient_clip_norm", "1.0", TypeError),
        ("gradient_clip_norm", float("nan"), ValueError),
        ("learning_rate", "1e-3", TypeError),
        ("learning_rate", float("inf"), ValueError),
        ("adam_b1", True, TypeError),
        ("adam_b2", 1.0, ValueError),
        ("ema_decay", "0.9", TypeError),
        ("weight_decay", -1e-4, ValueError),
        ("warmup_steps", "10", TypeError),
        ("keep_checkpoints", True, TypeError),
        ("progress", "no", TypeError),
        ("progress", 0, TypeError),
        ("async_checkpointing", "False", TypeError),
    ],
)
def test_config_rejects_strings_bools_and_out_of_range_values(field, value, error):
    with pytest.raises(error, match=field):
        TrainingConfig(**{field: value})


def test_config_accepts_the_range_ends():
    assert TrainingConfig(min_lr_ratio=1.0, seed=2**32 - 1).min_lr_ratio == 1.0
    assert TrainingConfig(min_lr_ratio=0, gradient_clip_norm=None, progress=False).seed == 0
    assert TrainingConfig(learning_rate=np.float32(1e-3), seed=np.int64(7)).seed == 7
