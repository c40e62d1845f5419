"""The Fisher kinetic Langevin corrector (jaxdiff.schrodinger.fisher), on Gaussian closed forms.

Target ``p_t = N(m, diag v)`` with the exact score ``-(x - m) / v``; the rows are run the way
a sampler runs them (one score evaluation per row, ``first`` at the start of each level).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.schrodinger.fisher import (
    KineticLangevin,
    KineticState,
    corrector_row,
    diagonal_fisher,
    fisher_mass,
    init_momentum,
)

MEAN = jnp.array([1.0, -1.0, 0.5, 2.0])
VAR = jnp.array([0.1, 0.5, 1.0, 4.0])


def _score(x, mean, var):
    return -(x - mean) / var


def _kl(x, mean, var):
    """KL(N(sample mean, sample var) || N(mean, var)), summed over coordinates."""
    mu, s2 = jnp.mean(x, 0), jnp.var(x, 0)
    return 0.5 * jnp.sum(s2 / var - 1.0 - jnp.log(s2 / var) + (mu - mean) ** 2 / var)


@functools.partial(jax.jit, static_argnames=("rows", "per_level"))
def _run(key, x, config, mean, var, rows, per_level):
    """``rows`` corrector rows, a new level every ``per_level``; final x and KL per row."""

    def body(carry, k):
        state, x, i = carry
        state, x = corrector_row(k, state, x, _score(x, mean, var), config, i % per_level == 0)
        return (state, x, i + 1), _kl(x, mean, var)

    carry = (KineticState.create(x), x, 0)
    (_, x, _), kls = jax.lax.scan(body, carry, jax.random.split(key, rows))
    return x, kls


def _exact_cloud(n, mean, var):
    """``n`` draws of N(mean, diag var) standardised to exact sample moments (no MC noise)."""
    z = jax.random.normal(jax.random.key(1), (n, mean.shape[0]))
    z = (z - z.mean(0)) / z.std(0)
    return mean + jnp.sqrt(var) * z


def _var_bias(x):
    """Largest relative variance error over the coordinates (inf once the run diverged)."""
    bias = float(jnp.max(jnp.abs(jnp.var(x, 0) / VAR - 1.0)))
    return bias if np.isfinite(bias) else np.inf


# --- 1. invariance on a Gaussian ----------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9])
def test_rows_leave_an_exact_gaussian_cloud_invariant(alpha):
    n = 20000
    x, _ = _run(
        jax.random.key(2),
        _exact_cloud(n, MEAN, VAR),
        KineticLangevin(n_steps=10, step_size=1.0, momentum_alpha=alpha),
        MEAN,
        VAR,
        rows=10,
        per_level=10,
    )
    mean_z = (jnp.mean(x, 0) - MEAN) / jnp.sqrt(VAR / n)
    var_z = (jnp.var(x, 0) / VAR - 1.0) / np.sqrt(2.0 / n)
    assert float(jnp.max(jnp.abs(mean_z))) < 4.0, mean_z
    assert float(jnp.max(jnp.abs(var_z))) < 4.0, var_z
    # the rows really moved the particles (the identity map would pass the moments)
    assert float(jnp.mean(jnp.abs(x - _exact_cloud(n, MEAN, VAR)) / jnp.sqrt(VAR))) > 0.3


def test_wrong_integrators_drift_where_the_corrector_does_not():
    """Euler Langevin (preconditioned or not) and a too-large step are biased; BAOAB is not."""
    n, rows, h = 20000, 10, 1.0
    x0 = _exact_cloud(n, MEAN, VAR)
    fisher = 1.0 / VAR  # what the batch estimates, E[s^2] = 1/v
    ours, _ = _run(
        jax.random.key(2), x0, KineticLangevin(momentum_alpha=0.5), MEAN, VAR, rows, rows
    )

    def euler(mass, delta):  # x + delta M^-1 s + sqrt(2 delta) M^-1/2 z (spec M4's step)
        x = x0
        for k in jax.random.split(jax.random.key(3), rows):
            z = jax.random.normal(k, x.shape)
            x = x + delta / mass * _score(x, MEAN, VAR) + jnp.sqrt(2 * delta / mass) * z
        return x

    pre_euler = euler(fisher, h**2 / 2)  # same mass, the step of BAOAB's c = 0 limit
    plain_euler = euler(jnp.ones(4), h**2 / (2 * float(jnp.mean(fisher))))  # M = I
    too_large = KineticLangevin(step_size=1.9, fisher_shrinkage=1.0)  # h omega_max = 3.3 > 2
    unstable, _ = _run(jax.random.key(2), x0, too_large, MEAN, VAR, rows, rows)
    floor = 4 * np.sqrt(2.0 / n)
    assert _var_bias(ours) < floor
    for wrong in (pre_euler, plain_euler, unstable):
        assert _var_bias(wrong) > max(0.15, 5 * _var_bias(ours))


# --- 2. convergence from a wrong cloud; the Fisher mass helps when v is ill-conditioned ----

ILL_MEAN = jnp.array([0.5, -0.5, 0.25, 1.0])
ILL_VAR = jnp.array([0.05, 0.2, 1.0, 4.0])


def _rows_to(kls, tol):
    hit = np.nonzero(np.asarray(kls) < tol)[0]
    return int(hit[0]) + 1 if hit.size else np.inf


def test_rows_converge_and_the_fisher_mass_needs_fewer_than_an_isotropic_one():
    x0 = jax.random.normal(jax.random.key(4), (4000, 4))  # N(0, I), target N(m, diag v)
    tol, per_level, rows = 0.02, 5, 60

    def kls(**knobs):
        cfg = KineticLangevin(n_steps=per_level, **knobs)
        return np.asarray(_run(jax.random.key(5), x0, cfg, ILL_MEAN, ILL_VAR, rows, per_level)[1])

    fisher = kls()  # defaults: h = 1, c = 0.9, M = F
    n_fisher = _rows_to(fisher, tol)
    assert n_fisher <= 20
    assert fisher[-1] < 0.005  # near the Monte-Carlo floor (~4 / B)
    level_ends = fisher[per_level - 1 :: per_level][: int(n_fisher // per_level) + 1]
    assert np.all(np.diff(level_ends) < 0), level_ends  # decreasing until the tolerance
    # M = mean(F) I, i.e. M = I with step h / sqrt(mean F), at its best (h, c) on a grid
    n_iso = min(
        _rows_to(kls(step_size=h, momentum_alpha=c, fisher_shrinkage=1.0), tol)
        for h in (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
        for c in (0.0, 0.5, 0.9)
    )
    assert n_iso >= 1.5 * n_fisher, (n_iso, n_fisher)


# --- 3. the Fisher estimator -----------------------------------------------------------------


def test_diagonal_fisher_matches_float64_and_fp32_matters_for_bf16():
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.1, 30.0, (1, 3, 8, 8))
    scores = jnp.asarray(rng.standard_normal((512, 3, 8, 8)) * scale, jnp.bfloat16)
    ref = np.mean(np.asarray(scores, np.float64) ** 2, axis=0, keepdims=True)
    fisher = diagonal_fisher(scores, 1e-6)
    assert fisher.dtype == jnp.float32 and fisher.shape == (1, 3, 8, 8)
    np.testing.assert_allclose(np.asarray(fisher, np.float64), ref, rtol=1e-5)
    half = diagonal_fisher(scores, 1e-6, fp32=False)
    assert half.dtype == jnp.float32
    assert np.max(np.abs(np.asarray(half, np.float64) / ref - 1.0)) > 1e-3
    floored = diagonal_fisher(jnp.zeros((4, 2)), 0.5)
    np.testing.assert_array_equal(np.asarray(floored), np.full((1, 2), 0.5, np.float32))


def test_mass_shrinkage_and_boundary_momentum():
    fisher = jnp.array([[10.0, 2.0, 1.0, 0.25]])
    np.testing.assert_allclose(fisher_mass(fisher, 0.0), fisher)
    np.testing.assert_allclose(fisher_mass(fisher, 1.0), jnp.full((1, 4), 3.3125))
    np.testing.assert_allclose(jnp.mean(fisher_mass(fisher, 0.3)), 3.3125, rtol=1e-6)
    x = jnp.zeros((40000, 4))
    p = init_momentum(jax.random.key(6), x, fisher, fisher, 1.0)  # var = F (1 - 1/4)
    np.testing.assert_allclose(jnp.var(p, 0), 0.75 * fisher[0], rtol=0.05)


# --- 4. traced knobs: one compile ------------------------------------------------------------


def test_step_size_and_momentum_alpha_are_traced():
    traces = []

    @jax.jit
    def one_row(config, x):
        traces.append(1)
        state = KineticState.create(x)
        return corrector_row(jax.random.key(0), state, x, _score(x, MEAN, VAR), config, True)[1]

    x = _exact_cloud(64, MEAN, VAR)
    outs = [
        one_row(KineticLangevin(step_size=h, momentum_alpha=c), x)
        for h, c in ((0.5, 0.0), (1.0, 0.5), (1.5, 0.9))
    ]
    assert len(traces) == 1
    assert not np.allclose(outs[0], outs[1]) and not np.allclose(outs[1], outs[2])


def test_row_method_follows_the_corrector_index_and_takes_per_example_keys():
    cfg = KineticLangevin(n_steps=2)
    x = _exact_cloud(8, MEAN, VAR)
    keys = jax.random.split(jax.random.key(7), 8)
    state = cfg.init_state(x)
    via_row = cfg.row(keys, state, x, _score(x, MEAN, VAR), {"corrector_index": jnp.int32(0)})
    direct = corrector_row(keys, state, x, _score(x, MEAN, VAR), cfg, True)
    np.testing.assert_array_equal(via_row[1], direct[1])
    assert via_row[1].shape == x.shape and via_row[0].mass.shape == (1, 4)


# --- 5. bad input names the field --------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("n_steps", -1, ValueError),
        ("n_steps", 1.5, TypeError),
        ("step_size", 0.0, ValueError),
        ("step_size", 2.0, ValueError),
        ("step_size", "1", TypeError),
        ("momentum_alpha", 1.0, ValueError),
        ("momentum_alpha", -0.1, ValueError),
        ("fisher_shrinkage", 1.5, ValueError),
        ("fisher_floor", 0.0, ValueError),
        ("use_fp32_fisher", "yes", TypeError),
    ],
)
def test_bad_config_names_the_field(field, value, error):
    with pytest.raises(error, match=field):
        KineticLangevin(**{field: value})


def test_bad_row_inputs_name_the_argument():
    x = jnp.zeros((4, 3))
    state, cfg, key = KineticState.create(x), KineticLangevin(), jax.random.key(0)
    with pytest.raises(ValueError, match="score"):
        corrector_row(key, state, x, jnp.zeros((4, 2)), cfg, True)
    with pytest.raises(ValueError, match="state"):
        corrector_row(key, KineticState.create(jnp.zeros((4, 2))), x, x, cfg, True)
    with pytest.raises(TypeError, match="config"):
        corrector_row(key, state, x, x, {"step_size": 1.0}, True)
    with pytest.raises(TypeError, match="first"):
        corrector_row(key, state, x, x, cfg, 1.0)
    with pytest.raises(TypeError, match="key"):
        corrector_row(0, state, x, x, cfg, True)
    with pytest.raises(TypeError, match="scores"):
        diagonal_fisher(jnp.zeros((4, 3), jnp.int32))
    with pytest.raises(ValueError, match="floor"):
        diagonal_fisher(x, 0.0)
