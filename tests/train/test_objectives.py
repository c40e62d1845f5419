"""Objectives against closed forms for Gaussian data ``x0 ~ N(mu, s^2 I)``.

For a target ``y = A eps + B z + c`` (``x0 = mu + s z``) and ``x_t = a x0 + sig eps``
the minimiser of ``E|f(x_t) - y|^2`` is the posterior mean
``c + (A sig + B a s) / (a^2 s^2 + sig^2) (x_t - a mu)`` and its loss per dimension is
``A^2 + B^2 - (A sig + B a s)^2 / (a^2 s^2 + sig^2)``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.schedules import DiscreteSchedule, VPLinearSchedule
from jaxdiff.train import (
    DenoisingObjective,
    FlowMatchingObjective,
    ScoreMatchingObjective,
    example_keys,
)

MU = jnp.asarray([1.0, -2.0, 0.5, 0.0], jnp.float32)
S = 0.7
N = 4096


def coefficients(kind, a, sig):
    """(A, B, c) of the target in terms of eps, z and a constant; c is a function."""
    if kind == "epsilon":
        return 1.0, 0.0, lambda: 0.0
    if kind == "v_prediction":
        return a, -sig * S, lambda: -sig * MU
    if kind == "sample":
        return 0.0, S, lambda: MU
    if kind == "flow":
        return 1.0, -S, lambda: -MU
    raise AssertionError(kind)


def residual(kind, a, sig):
    A, B, _ = coefficients(kind, a, sig)
    return A**2 + B**2 - (A * sig + B * a * S) ** 2 / (a**2 * S**2 + sig**2)


def oracle(kind, a, sig, xt, params):
    """Posterior mean with a perturbable gain and shift; a, sig are [B]."""
    a, sig = a[:, None], sig[:, None]
    A, B, c = coefficients(kind, a, sig)
    k = (A * sig + B * a * S) / (a**2 * S**2 + sig**2)
    return c() + params["gain"] * k * (xt - a * MU) + params["shift"]


def data(key):
    return {"x": MU + S * jax.random.normal(key, (N, MU.shape[0]))}


EXACT = {"gain": 1.0, "shift": 0.0}
PERTURBED = [{"gain": 1.1, "shift": 0.0}, {"gain": 0.9, "shift": 0.0}, {"gain": 1.0, "shift": 0.05}]


def check(obj, apply_fn, analytic, key):
    kd, kl = jax.random.split(key)
    batch = data(kd)
    per = jax.jit(lambda p: obj.per_example_loss(kl, p, apply_fn, batch))(EXACT)
    loss, aux = obj(kl, EXACT, apply_fn, batch)  # un-jitted path
    np.testing.assert_allclose(loss, per.mean(), rtol=1e-5)
    np.testing.assert_allclose(aux["loss"], loss)
    stderr = float(per.std()) / np.sqrt(N)
    assert abs(float(loss) - analytic) < 4.0 * stderr + 1e-6, (float(loss), analytic, stderr)
    jitted = jax.jit(lambda p: obj(kl, p, apply_fn, batch)[0])
    np.testing.assert_allclose(jitted(EXACT), loss, rtol=1e-5)
    for p in PERTURBED:  # common random numbers: the minimiser wins on the same draws
        assert float(jitted(p)) > float(loss)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_denoising_gaussian_closed_form(kind, key):
    sched = DiscreteSchedule.create("linear", 1000)
    obj = DenoisingObjective.create(sched, kind)

    def apply_fn(params, xt, t, context):
        assert t.dtype == jnp.int32 and context is None
        ab = sched.alphas_cumprod[t]
        return oracle(kind, jnp.sqrt(ab), jnp.sqrt(1 - ab), xt, params)

    ab = np.asarray(sched.alphas_cumprod, np.float64)
    analytic = residual(kind, np.sqrt(ab), np.sqrt(1 - ab)).mean()
    check(obj, apply_fn, float(np.mean(analytic)), key)


def _grid(t_min, t_max, n=200_000):
    return t_min + (t_max - t_min) * (np.arange(n) + 0.5) / n


def test_score_matching_gaussian_closed_form(key):
    sched = VPLinearSchedule.create()
    obj = ScoreMatchingObjective.create(sched, t_min=1e-3)

    def apply_fn(params, xt, t, context):
        a, sig = sched.alpha(t), sched.sigma(t)
        eps_hat = oracle("epsilon", a, sig, xt, params)
        return -eps_hat / sig[:, None]  # score = -E[eps | x_t] / sigma

    t = _grid(1e-3, 1.0)
    la = -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1
    a = np.exp(la)
    analytic = residual("epsilon", a, np.sqrt(1 - a**2)).mean()
    check(obj, apply_fn, float(analytic), key)


def test_score_matching_weightings(key):
    sched = VPLinearSchedule.create()
    batch = data(key)

    def apply_fn(params, xt, t, context):
        return jnp.zeros_like(xt)  # score 0: loss lambda |eps / sigma|^2

    per_s2 = ScoreMatchingObjective.create(sched).per_example_loss(key, {}, apply_fn, batch)
    per_none = ScoreMatchingObjective.create(sched, weighting="none").per_example_loss(
        key, {}, apply_fn, batch
    )
    per_lik = ScoreMatchingObjective.create(sched, weighting="likelihood").per_example_loss(
        key, {}, apply_fn, batch
    )
    # same draws: the weightings differ by lambda(t) / sigma^2 per example
    ks = jax.vmap(lambda k: jax.random.split(k))(example_keys(key, N))
    u = jax.vmap(lambda k: jax.random.uniform(k, ()))(ks[:, 0])
    t = 1e-5 + (1 - 1e-5) * u
    np.testing.assert_allclose(per_none, per_s2 / sched.sigma(t) ** 2, rtol=1e-4)
    np.testing.assert_allclose(per_lik, per_s2 * sched.beta(t) / sched.sigma(t) ** 2, rtol=1e-4)


@pytest.mark.parametrize("time_scale", [1.0, 1000.0])
def test_flow_matching_gaussian_closed_form(time_scale, key):
    obj = FlowMatchingObjective.create(time_scale=time_scale)

    def apply_fn(params, xt, t, context):
        s = t / time_scale  # x_t = (1 - s) x0 + s eps
        return oracle("flow", 1 - s, s, xt, params)

    t = _grid(0.0, 1.0)
    analytic = residual("flow", 1 - t, t).mean()
    check(obj, apply_fn, float(analytic), key)


def test_flow_matching_given_source_and_context(key):
    """With batch['x1'] the path joins x to x1; the target is x1 - x exactly."""
    k1, k2, k3 = jax.random.split(key, 3)
    x = jax.random.normal(k1, (8, 3))
    x1 = jax.random.normal(k2, (8, 3))
    ctx = jnp.arange(8.0)[:, None]
    seen = {}

    def apply_fn(params, xt, t, context):
        seen["context"] = context
        # recover x1 - x0 from x_t: the exact conditional velocity given both ends
        return (x1 - x) * params

    loss, _ = FlowMatchingObjective.create()(k3, 1.0, apply_fn, {"x": x, "x1": x1, "context": ctx})
    assert float(loss) == 0.0
    np.testing.assert_array_equal(seen["context"], ctx)
    with pytest.raises(ValueError, match="x1"):
        FlowMatchingObjective.create()(k3, 1.0, apply_fn, {"x": x, "x1": x1[:, :2]})


def test_per_example_keys_make_noise_batch_independent(key):
    """Example i's noise depends on its key only: a sub-batch sees the same draws."""
    sched = DiscreteSchedule.create("linear", 50)
    obj = DenoisingObjective.create(sched)
    x = jax.random.normal(key, (8, 2))

    def apply_fn(params, xt, t, context):
        return jnp.zeros_like(xt)

    keys = example_keys(jax.random.key(3), 8)
    per = jax.jit(lambda k, b: obj.per_example_loss(k, None, apply_fn, b))
    full = per(keys, {"x": x})
    part = per(keys[2:5], {"x": x[2:5]})
    np.testing.assert_array_equal(full[2:5], part)


def test_integer_count_data_and_legacy_key():
    obj = DenoisingObjective.create(DiscreteSchedule.create("linear", 10))
    counts = jnp.arange(12, dtype=jnp.int32).reshape(4, 3)
    loss, _ = jax.jit(lambda k, b: obj(k, None, lambda p, x, t, c: x * 0, b))(
        jax.random.PRNGKey(0), counts
    )
    assert loss.dtype == jnp.float32 and np.isfinite(float(loss))


def test_invalid_inputs():
    sched = DiscreteSchedule.create("linear", 10)
    with pytest.raises(ValueError, match="prediction_type"):
        DenoisingObjective.create(sched, "score")
    with pytest.raises(TypeError, match="DiscreteSchedule"):
        DenoisingObjective.create(VPLinearSchedule.create())
    with pytest.raises(TypeError, match="ContinuousSchedule"):
        ScoreMatchingObjective.create(sched)
    with pytest.raises(ValueError, match="weighting"):
        ScoreMatchingObjective.create(VPLinearSchedule.create(), weighting="snr")
    with pytest.raises(ValueError, match="t_min"):
        FlowMatchingObjective.create(t_min=0.7)
    with pytest.raises(ValueError, match="'x'"):
        DenoisingObjective.create(sched)(jax.random.key(0), None, None, {"y": jnp.ones((2, 2))})
    with pytest.raises(ValueError, match="key"):
        example_keys(jax.random.split(jax.random.key(0), 3), 4)
