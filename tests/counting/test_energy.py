"""Energy-score posterior: the generator, its objective, and learning a known posterior."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.counting import PoissonM, SkellamBridge
from jaxdiff.counting.energy import (
    EnergyScoreObjective,
    EnergyScorePosterior,
    posterior_apply,
    posterior_sampler,
)
from jaxdiff.train import TrainingConfig, array_batches, fit

B, D, NOISE = 6, 3, 5


def _inputs(c=None):
    rng = np.random.default_rng(0)
    x = rng.poisson(4.0, (B, D)).astype(np.int32)
    ctx = {"noise": rng.normal(size=(B, NOISE)).astype(np.float32), "condition": c}
    return x, np.full((B,), 0.4, np.float32), ctx


def _init(net, x, t, ctx):
    return net.init(jax.random.key(0), x, t, ctx)["params"]


def test_posterior_shapes_time_forms_and_condition():
    cond = np.ones((B, 2), np.float32)
    x, t, ctx = _inputs(cond)
    net = EnergyScorePosterior(hidden_dim=8, depth=2, noise_dim=NOISE, time_features=4)
    params = _init(net, x, t, ctx)
    # first layer sees [x (3), t (1), sin/cos(t) (4), noise (5), condition (2)]
    assert params["hidden_0"]["kernel"].shape == (D + 1 + 4 + NOISE + 2, 8)
    assert set(params) == {"hidden_0", "hidden_1", "out"}
    out = net.apply({"params": params}, x, t, ctx)
    assert out.shape == (B, D) and out.dtype == jnp.float32
    for tt in (0.4, t[:, None], jnp.asarray(0.4)):  # scalar, [B, 1]: same as [B]
        np.testing.assert_allclose(net.apply({"params": params}, x, tt, ctx), out, rtol=1e-6)
    apply_fn = posterior_apply(net)
    np.testing.assert_array_equal(apply_fn(params, x, t, ctx), out)
    # the noise drives the output: another eps, another sample
    ctx2 = {**ctx, "noise": ctx["noise"] + 1.0}
    assert not np.allclose(apply_fn(params, x, t, ctx2), out)
    # bf16 compute, float32 parameters
    net16 = net.clone(dtype=jnp.bfloat16)
    assert net16.apply({"params": params}, x, t, ctx).dtype == jnp.bfloat16


def test_residual_semantics_with_zeroed_output_layer():
    x, t, ctx = _inputs()
    for log1p in (False, True):
        net = EnergyScorePosterior(hidden_dim=8, noise_dim=NOISE, log1p_inputs=log1p)
        params = _init(net, x, t, ctx)
        zeroed = {**params, "out": jax.tree.map(jnp.zeros_like, params["out"])}
        np.testing.assert_array_equal(net.apply({"params": zeroed}, x, t, ctx), x)
        flat = net.clone(residual=False)
        np.testing.assert_array_equal(flat.apply({"params": zeroed}, x, t, ctx), 0.0)
        # residual = x_t + the residual=False output
        np.testing.assert_allclose(
            net.apply({"params": params}, x, t, ctx),
            x + flat.apply({"params": params}, x, t, ctx),
            rtol=1e-6,
        )


def test_log1p_inputs_feed_sign_log1p_of_counts():
    x, t, ctx = _inputs()
    x = x * np.array([1, -1, 1]) * 30  # large and negative counts
    net = EnergyScorePosterior(hidden_dim=8, noise_dim=NOISE, residual=False)
    params = _init(net, x, t, ctx)
    logged = net.clone(log1p_inputs=True).apply({"params": params}, x, t, ctx)
    ref_in = (np.sign(x) * np.log1p(np.abs(x))).astype(np.float32)
    np.testing.assert_allclose(logged, net.apply({"params": params}, ref_in, t, ctx), rtol=1e-5)
    assert not np.allclose(logged, net.apply({"params": params}, x, t, ctx))


def test_posterior_bad_inputs():
    x, t, ctx = _inputs()
    net = EnergyScorePosterior(hidden_dim=8, noise_dim=NOISE)
    params = _init(net, x, t, ctx)

    def call(*args, module=net):
        return module.apply({"params": params}, *args)

    with pytest.raises(ValueError, match=r"context\['noise'\].*\(6, 5\)"):
        call(x, t, {"noise": np.zeros((B, NOISE + 1))})
    with pytest.raises(ValueError, match=r"context\['condition'\]"):
        call(x, t, {**ctx, "condition": np.zeros((B + 1, 2))})
    with pytest.raises(TypeError, match="context must be a dict"):
        call(x, t, None)
    with pytest.raises(TypeError, match="context must be a dict"):
        call(x, t, {"condition": None})
    with pytest.raises(ValueError, match="x_t has shape"):
        call(x[0], t, ctx)
    with pytest.raises(ValueError, match=r"t has shape \(3,\)"):
        call(x, t[:3], ctx)
    with pytest.raises(ValueError, match="time_features=1"):
        call(x, t, ctx, module=net.clone(time_features=1))
    with pytest.raises(ValueError, match="noise_dim=0"):
        call(x, t, ctx, module=net.clone(noise_dim=0))


def _objective_setup(m=4, delta=False):
    bridge = SkellamBridge(PoissonM(2.0, 2.0), delta=delta)
    rng = np.random.default_rng(1)
    batch = {
        "x": rng.poisson(5.0, (8, D)).astype(np.int32),
        "x1": rng.poisson(3.0, (8, D)).astype(np.int32),
    }
    net = EnergyScorePosterior(hidden_dim=8, noise_dim=NOISE, residual=not delta)
    params = _init(net, *_inputs()[:2], _inputs()[2])
    obj = EnergyScoreObjective.create(bridge, noise_dim=NOISE, m_samples=m)
    return obj, params, posterior_apply(net), batch


def test_objective_loss_aux_jit_and_keys():
    obj, params, apply_fn, batch = _objective_setup()
    key = jax.random.key(3)
    # the objective as a jit argument (lambda_energy traced, choices static)
    grad_fn = jax.jit(jax.value_and_grad(lambda p, o, k, b: o(k, p, apply_fn, b), has_aux=True))

    def jitted(o, k, p, b):
        return grad_fn(p, o, k, b)[0]

    (loss, aux), grads = grad_fn(params, obj, key, batch)
    assert set(aux) == {"loss", "confinement", "interaction"}
    assert np.isfinite(float(loss)) and float(aux["loss"]) == float(loss)
    # loss = confinement - lambda / 2 * interaction, both means of non-negative norms
    assert float(aux["confinement"]) > 0 and float(aux["interaction"]) > 0
    np.testing.assert_allclose(loss, aux["confinement"] - 0.5 * aux["interaction"], rtol=1e-5)
    # one key == its split into [B] per-example keys; deterministic; a new key differs
    loss_k, _ = jitted(obj, jax.random.split(key, 8), params, batch)
    assert float(loss_k) == float(loss)
    assert float(jitted(obj, key, params, batch)[0]) == float(loss)
    assert float(jitted(obj, jax.random.key(4), params, batch)[0]) != float(loss)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert any(np.any(g != 0) for g in jax.tree.leaves(grads))


def test_objective_matches_manual_energy_score():
    """The loss is the fair energy score of the m predictions against the bridge target,
    recomputed here by hand with numpy from the same bridge draw and noise."""
    obj, params, apply_fn, batch = _objective_setup(m=3, delta=True)
    obj = EnergyScoreObjective.create(obj.bridge, noise_dim=NOISE, m_samples=3, lambda_energy=0.5)
    keys = jax.random.split(jax.random.key(7), 8)
    loss, _ = jax.jit(lambda o, k, p, b: o(k, p, apply_fn, b))(obj, keys, params, batch)
    sub = jax.vmap(jax.random.split)(keys)
    t, x_t, target = jax.jit(obj.bridge.__call__)(sub[0, 0], batch["x"], batch["x1"])
    np.testing.assert_array_equal(target, batch["x"] - np.asarray(x_t))  # delta target
    total = 0.0
    for i in range(8):
        eps = jax.random.normal(sub[i, 1], (3, NOISE))
        rows = np.repeat(np.asarray(x_t)[i : i + 1], 3, axis=0)
        pred = np.asarray(apply_fn(params, rows, np.repeat(t[i], 3), {"noise": eps}), np.float64)
        y = np.asarray(target[i], np.float64)
        conf = np.mean([np.linalg.norm(p - y) for p in pred])
        inter = np.mean(
            [np.linalg.norm(pred[a] - pred[b]) for a in range(3) for b in range(3) if a != b]
        )
        total += conf - 0.25 * inter
    np.testing.assert_allclose(float(loss), total / 8, rtol=1e-4)


def test_objective_condition_and_bad_arguments():
    obj, params, apply_fn, batch = _objective_setup()
    with pytest.raises(ValueError, match="'x1'"):
        obj(jax.random.key(0), params, apply_fn, {"x": batch["x"]})
    bridge = obj.bridge
    with pytest.raises(ValueError, match="m_samples=1"):
        EnergyScoreObjective.create(bridge, m_samples=1)
    with pytest.raises(ValueError, match="lambda_energy=-1"):
        EnergyScoreObjective.create(bridge, lambda_energy=-1)
    with pytest.raises(ValueError, match="lambda_energy=inf"):
        EnergyScoreObjective.create(bridge, lambda_energy=float("inf"))
    with pytest.raises(ValueError, match="noise_dim=0"):
        EnergyScoreObjective.create(bridge, noise_dim=0)
    with pytest.raises(TypeError, match="bridge"):
        EnergyScoreObjective.create(None)
    with pytest.raises(ValueError, match="noise_dim=0"):
        posterior_sampler(apply_fn, params, noise_dim=0)
    # a condition is repeated with its row
    net = EnergyScorePosterior(hidden_dim=8, noise_dim=NOISE)
    cond = np.arange(16, dtype=np.float32).reshape(8, 2)
    p2 = _init(net, batch["x"], np.zeros(8), {"noise": np.zeros((8, NOISE)), "condition": cond})
    run = jax.jit(lambda p, b: obj(jax.random.key(0), p, apply_fn, b))
    loss, _ = run(p2, {**batch, "context": cond})
    assert np.isfinite(float(loss))


def test_energy_score_training_learns_the_posterior_at_t1():
    """x0 ~ Poisson(6)^2 and x1 ~ Poisson(2)^2 independent: at t = 1 the bridge posterior
    p(x0 | x_t = x1) is the data law, so by properness of the energy score the trained
    generator's draws have mean ~ 6, variance ~ 6 and (nearly) no correlation with x_t.
    The untrained (residual) generator outputs ~ x_t ~ Poisson(2) and fails the check.
    The full reverse sampler of the bridge, driven by the generator, also recovers the law.
    """
    rng = np.random.default_rng(0)
    n, noise = 4096, 4
    x0 = rng.poisson(6.0, (n, 2)).astype(np.int32)
    x1 = rng.poisson(2.0, (n, 2)).astype(np.int32)
    bridge = SkellamBridge(PoissonM(2.0, 2.0))
    net = EnergyScorePosterior(hidden_dim=32, noise_dim=noise)
    apply_fn = posterior_apply(net)
    params = _init(net, x0[:2], np.zeros(2), {"noise": np.zeros((2, noise))})
    obj = EnergyScoreObjective.create(bridge, noise_dim=noise, m_samples=8)
    data, _ = array_batches({"x": x0, "x1": x1}, 128, seed=0)
    cfg = TrainingConfig(
        batch_size=128, num_steps=800, learning_rate=3e-3, ema_decay=0.0, progress=False
    )
    x_t = jnp.asarray(np.random.default_rng(9).poisson(2.0, (4000, 2)), jnp.int32)

    @jax.jit
    def draws(p):
        model = posterior_sampler(apply_fn, p, noise_dim=noise)
        return jnp.round(model(jax.random.key(3), x_t, jnp.ones((4000, 1)), None))

    def matches_data_law(p):
        s = np.asarray(draws(p))
        corr = [abs(np.corrcoef(s[:, i], x_t[:, i])[0, 1]) for i in range(2)]
        return (
            np.all(np.abs(s.mean(0) - 6.0) < 0.6)
            and np.all(np.abs(s.var(0) / 6.0 - 1.0) < 0.4)
            and max(corr) < 0.4
        )

    assert not matches_data_law(params)
    res = fit(jax.random.key(1), params, apply_fn, obj, data, cfg)
    losses = [r["loss"] for r in res.history]
    assert losses[-1] < losses[0]
    assert matches_data_law(res.state.params)
    model = posterior_sampler(apply_fn, res.state.params, noise_dim=noise)
    gen = np.asarray(bridge.sample(jax.random.key(4), x_t[:2000], model, 10).samples)
    assert gen.dtype == np.int32 and gen.shape == (2000, 2)
    assert np.all(np.abs(gen.mean(0) - 6.0) < 0.8)
    assert np.all(np.abs(gen.var(0) / 6.0 - 1.0) < 0.5)
