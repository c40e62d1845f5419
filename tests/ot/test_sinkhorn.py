"""Tests for jaxdiff.ot.sinkhorn and OTResult, with POT as the oracle."""

import importlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from jaxdiff.ot.result import OTResult
from jaxdiff.ot.sinkhorn import sinkhorn

TIGHT = dict(threshold=1e-10, max_iterations=20000)
STATIC = (
    "cost",
    "relative_epsilon",
    "max_iterations",
    "min_iterations",
    "threshold",
    "inner_iterations",
    "tau_a",
    "tau_b",
    "geometry",
)
# One compiled solve per shape/dtype: much faster than eager ott-jax on CPU.
solve = jax.jit(sinkhorn, static_argnames=STATIC)


def _problem(n=8, m=6, d=2, seed=0, uniform=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) + 0.5
    if uniform:
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    else:
        a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
        a, b = a / a.sum(), b / b.sum()
    return x, y, a, b


@pytest.mark.parametrize(
    "cost,metric", [("sqeuclidean", "sqeuclidean"), ("euclidean", "euclidean")]
)
def test_plan_potentials_and_cost_match_pot(enable_x64, cost, metric):
    x, y, a, b = _problem()
    eps = 0.3
    res = sinkhorn(x, y, a, b, epsilon=eps, cost=cost, **TIGHT)
    assert bool(res.converged)
    M = ot.dist(x, y, metric=metric)
    P, log = ot.sinkhorn(
        a, b, M, eps, method="sinkhorn_log", numItermax=20000, stopThr=1e-13, log=True
    )
    np.testing.assert_allclose(np.asarray(res.matrix), P, atol=1e-9)
    # POT: P = diag(u) K diag(v) with log_u, log_v; ott: f = eps log_u + c, g = eps log_v - c.
    df = np.asarray(res.f) - eps * log["log_u"]
    dg = np.asarray(res.g) - eps * log["log_v"]
    np.testing.assert_allclose(df, df.mean(), atol=1e-7)
    np.testing.assert_allclose(dg, -df.mean(), atol=1e-7)
    cost_pot = ot.sinkhorn2(a, b, M, eps, method="sinkhorn_log", numItermax=20000, stopThr=1e-13)
    np.testing.assert_allclose(float(res.primal_cost), float(cost_pot), rtol=1e-8)
    # reg_ot_cost = <P, C> + eps KL(P | a b^T) (balanced).
    kl = np.sum(P * np.log(P / np.outer(a, b)))
    np.testing.assert_allclose(float(res.reg_ot_cost), np.sum(P * M) + eps * kl, rtol=1e-7)


def test_default_cost_is_unhalved_sqeuclidean():
    x = jnp.array([[0.0], [0.0]])
    y = jnp.array([[2.0], [2.0]])
    res = sinkhorn(x, y, epsilon=1.0)
    np.testing.assert_allclose(float(res.primal_cost), 4.0, rtol=1e-5)


def test_float32_close_to_pot_and_converges():
    x, y, a, b = _problem(uniform=True)
    res = sinkhorn(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), epsilon=0.5)
    assert res.f.dtype == jnp.float32
    assert bool(res.converged)
    P = ot.sinkhorn(a, b, ot.dist(x, y), 0.5, method="sinkhorn_log", stopThr=1e-12)
    np.testing.assert_allclose(np.asarray(res.matrix), P, atol=5e-4)
    errs = np.asarray(res.errors)
    ran = errs[errs != -1]
    assert res.errors.shape == (2000 // 10,)
    assert int(res.n_iters) == 10 * len(ran) and ran[-1] < 1e-3


def test_plan_apply_both_axes_and_batched(enable_x64):
    x, y, a, b = _problem()
    res = solve(x, y, a, b, epsilon=0.4, **TIGHT)
    P = np.asarray(res.matrix)
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=8), rng.normal(size=6)
    np.testing.assert_allclose(np.asarray(res.plan_apply(u, axis=0)), u @ P, atol=1e-10)
    np.testing.assert_allclose(np.asarray(res.plan_apply(v, axis=1)), P @ v, atol=1e-10)
    U, V = rng.normal(size=(3, 8)), rng.normal(size=(3, 6))
    np.testing.assert_allclose(np.asarray(res.plan_apply(U, axis=0)), U @ P, atol=1e-10)
    np.testing.assert_allclose(np.asarray(res.plan_apply(V, axis=1)), V @ P.T, atol=1e-10)
    np.testing.assert_allclose(np.asarray(res.plan_apply(jnp.ones(8), axis=0)), b, atol=1e-9)
    with pytest.raises(ValueError, match="axis"):
        res.plan_apply(u, axis=2)
    with pytest.raises(ValueError, match="shape"):
        res.plan_apply(v, axis=0)


def test_barycentric_map(enable_x64):
    x, y, a, b = _problem()
    res = solve(x, y, a, b, epsilon=0.4, **TIGHT)
    P = np.asarray(res.matrix)
    np.testing.assert_allclose(np.asarray(res.barycentric_map()), P @ y / a[:, None], atol=1e-9)
    # Small epsilon with identical clouds: the map is close to the identity.
    res0 = solve(x, x, epsilon=1e-3, **TIGHT)
    np.testing.assert_allclose(np.asarray(res0.barycentric_map()), x, atol=1e-3)


def test_sample_pairs_frequencies(key):
    x, y, a, b = _problem(n=3, m=4)
    res = sinkhorn(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), a, b, epsilon=1.0)
    num = 40000
    i, j = jax.jit(lambda k: res.sample_pairs(k, num))(key)
    assert i.shape == j.shape == (num,)
    counts = np.zeros((3, 4))
    np.add.at(counts, (np.asarray(i), np.asarray(j)), 1)
    P = np.asarray(res.matrix, np.float64)
    P = P / P.sum()
    chi2 = np.sum((counts - num * P) ** 2 / (num * P))
    assert chi2 < 40.0  # 11 degrees of freedom: p ~ 1e-5
    np.testing.assert_allclose(counts / num, P, atol=0.01)
    i2, _ = res.sample_pairs(key, num)
    np.testing.assert_array_equal(np.asarray(i2), np.asarray(i))  # same key, same pairs


def test_relative_epsilon(enable_x64):
    x, y, a, b = _problem()
    res = solve(x, y, a, b, epsilon=0.1, relative_epsilon=True, **TIGHT)
    C = ot.dist(x, y)
    eps_abs = 0.1 * C.mean()
    np.testing.assert_allclose(float(res.epsilon), eps_abs, rtol=1e-12)
    P = ot.sinkhorn(a, b, C, eps_abs, method="sinkhorn_log", numItermax=20000, stopThr=1e-13)
    np.testing.assert_allclose(np.asarray(res.matrix), P, atol=1e-9)


@pytest.mark.parametrize("tau_a,tau_b", [(0.8, 0.8), (0.9, 0.6)])
def test_unbalanced_matches_pot(enable_x64, tau_a, tau_b):
    x, y, a, b = _problem()
    a = a * 1.3  # unbalanced: masses need not match
    eps = 0.5
    res = solve(x, y, a, b, epsilon=eps, tau_a=tau_a, tau_b=tau_b, **TIGHT)
    assert bool(res.converged)
    reg_m = (eps * tau_a / (1 - tau_a), eps * tau_b / (1 - tau_b))  # tau = rho / (rho + eps)
    # ott-jax's unbalanced plan is POT's with reg_type="entropy" (kernel exp(-C / eps)).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # POT: "c is overwritten"
        P = ot.unbalanced.sinkhorn_unbalanced(
            a,
            b,
            ot.dist(x, y),
            eps,
            reg_m,
            method="sinkhorn_stabilized",
            reg_type="entropy",
            numItermax=20000,
            stopThr=1e-13,
        )
    np.testing.assert_allclose(np.asarray(res.matrix), P, atol=1e-7)
    assert abs(float(jnp.sum(res.matrix)) - 1.0) > 1e-3  # mass really changed


def test_jit_matches_eager():
    x, y, a, b = _problem()
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    eager = sinkhorn(x, y, a, b, epsilon=0.3)
    jitted = jax.jit(lambda x, y, eps: sinkhorn(x, y, a, b, epsilon=eps))(x, y, 0.3)
    assert isinstance(jitted, OTResult)
    np.testing.assert_allclose(np.asarray(jitted.f), np.asarray(eager.f), atol=1e-5)
    np.testing.assert_allclose(float(jitted.primal_cost), float(eager.primal_cost), rtol=1e-5)
    assert int(jitted.n_iters) == int(eager.n_iters)


def test_vmap_over_problems():
    xs = jax.random.normal(jax.random.key(1), (3, 7, 2))
    ys = jax.random.normal(jax.random.key(2), (3, 5, 2)) + 1.0
    eps = jnp.array([0.2, 0.5, 1.0])
    batched = jax.vmap(lambda x, y, e: sinkhorn(x, y, epsilon=e))(xs, ys, eps)
    assert batched.f.shape == (3, 7) and batched.converged.shape == (3,)
    for k in range(3):
        single = solve(xs[k], ys[k], epsilon=eps[k])
        np.testing.assert_allclose(
            float(batched.primal_cost[k]), float(single.primal_cost), rtol=1e-4
        )
        np.testing.assert_allclose(np.asarray(batched.g[k]), np.asarray(single.g), atol=1e-4)


def test_grad_wrt_x_matches_finite_differences(enable_x64):
    x, y, a, b = _problem(n=5, m=4)

    @jax.jit
    def loss(x):
        return sinkhorn(x, y, a, b, epsilon=0.5, **TIGHT).reg_ot_cost

    g = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(x)))
    h = 1e-6
    fd = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        fd[idx] = (float(loss(x + e)) - float(loss(x - e))) / (2 * h)
    np.testing.assert_allclose(g, fd, atol=1e-6)


def test_result_is_pytree():
    x, y, _, _ = _problem()
    res = sinkhorn(x, y, epsilon=0.5, cost="euclidean", tau_a=0.9)
    leaves, tree = jax.tree_util.tree_flatten(res)
    back = jax.tree_util.tree_unflatten(tree, leaves)
    assert back.cost == "euclidean" and back.tau_a == 0.9
    np.testing.assert_array_equal(np.asarray(back.f), np.asarray(res.f))


X = np.zeros((4, 2))
Y = np.ones((3, 2))


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(epsilon=0.0), ValueError, "epsilon"),
        (dict(epsilon=-1.0), ValueError, "epsilon"),
        (dict(epsilon=np.nan), ValueError, "epsilon"),
        (dict(epsilon=0.1, threshold=0.0), ValueError, "threshold"),
        (dict(epsilon=0.1, cost="manhattan"), ValueError, "sqeuclidean"),
        (dict(epsilon=0.1, backend="cuda"), ValueError, "backend"),
        (dict(epsilon=0.1, backend="pallas", cost="euclidean"), ValueError, "backend='xla'"),
        (dict(epsilon=0.1, precision="fp8"), ValueError, "precision"),
        (dict(epsilon=0.1, memory_budget_bytes=0), ValueError, "memory_budget_bytes"),
        (dict(epsilon=0.1, epsilon_init=0.5), ValueError, "epsilon_init"),
        (dict(epsilon=0.1, epsilon_decay=1.5), ValueError, "epsilon_decay"),
        (dict(epsilon=0.1, geometry="sparse"), ValueError, "dense"),
        (dict(epsilon=0.1, a=np.array([0.5, 0.5, 0.5, -0.5])), ValueError, "non-negative"),
        (dict(epsilon=0.1, a=np.array([0.5, 0.5, 0.5, 0.5])), ValueError, "sum to 1"),
        (dict(epsilon=0.1, b=np.ones(4) / 4), ValueError, r"b must have shape \[3\]"),
        (dict(epsilon=0.1, tau_a=0.0), ValueError, "tau_a"),
        (dict(epsilon=0.1, tau_b=1.5), ValueError, "tau_b"),
        (dict(epsilon=0.1, max_iterations=0), ValueError, "max_iterations"),
        (dict(epsilon=0.1, max_iterations=10.5), TypeError, "max_iterations"),
        (dict(epsilon=0.1, min_iterations=5000), ValueError, "min_iterations"),
        (dict(epsilon=0.1, relative_epsilon="mean"), TypeError, "relative_epsilon"),
    ],
)
def test_bad_inputs_raise(kwargs, exc, match):
    kwargs = dict(kwargs)
    a, b = kwargs.pop("a", None), kwargs.pop("b", None)
    with pytest.raises(exc, match=match):
        sinkhorn(X, Y, a, b, **kwargs)


def test_bad_points_raise():
    with pytest.raises(ValueError, match="same dimension"):
        sinkhorn(X, np.ones((3, 5)), epsilon=0.1)
    with pytest.raises(ValueError, match="2-D"):
        sinkhorn(np.zeros(4), Y, epsilon=0.1)
    with pytest.raises(TypeError, match="x must be a real"):
        sinkhorn(X.astype(bool), Y, epsilon=0.1)
    with pytest.raises(ValueError, match="non-finite"):
        sinkhorn(np.full((4, 2), np.nan), Y, epsilon=0.1)
    res = sinkhorn(X, Y, epsilon=0.1)
    with pytest.raises(ValueError, match="num"):
        res.sample_pairs(jax.random.key(0), 0)


def test_unbalanced_weights_need_not_sum_to_one():
    res = sinkhorn(X, Y, np.full(4, 0.5), np.full(3, 0.2), epsilon=1.0, tau_a=0.5, tau_b=0.5)
    assert np.all(np.isfinite(np.asarray(res.f)))


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(epsilon="0.1"), "epsilon"),
        (dict(epsilon=0.1, threshold="1e-3"), "threshold"),
        (dict(epsilon=0.1, tau_a="0.5"), "tau_a"),
        (dict(epsilon=0.1, epsilon_init="2"), "epsilon_init"),
        (dict(epsilon=0.1, max_iterations="10"), "max_iterations"),
        (dict(epsilon=0.1, inner_iterations="10"), "inner_iterations"),
        (dict(epsilon=0.1, divergence="False"), "divergence"),
        (dict(epsilon=0.1, relative_epsilon="False"), "relative_epsilon"),
        (dict(epsilon=0.1, debug="False"), "debug"),
        (dict(epsilon=None), "epsilon"),
        (dict(epsilon=np.array(["0.1"])), "epsilon"),
    ],
)
def test_strings_for_numbers_and_bools_raise_type_error(kwargs, field):
    with pytest.raises(TypeError, match=field):
        sinkhorn(X, Y, **kwargs)


def test_max_iterations_below_default_inner_iterations():
    """inner_iterations adapts to a small bound; an explicit contradiction still raises."""
    res = sinkhorn(X, Y, epsilon=0.5, max_iterations=5, threshold=1e-12)
    assert res.errors.shape == (1,) and int(res.n_iters) == 5
    with pytest.raises(ValueError, match="inner_iterations=10 is out of range"):
        sinkhorn(X, Y, epsilon=0.5, max_iterations=5, inner_iterations=10)


def test_error_trace_that_cannot_fit_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="max_iterations=1000000000000 is out of range"):
        sinkhorn(X, Y, epsilon=0.5, max_iterations=10**12)  # beyond the int32 counter
    import jaxdiff.ot.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 30)  # a 1 GiB device
    with pytest.raises(
        ValueError, match=r"max_iterations=1000000000 with inner_iterations=1 .*7\.5 GiB"
    ):
        sinkhorn(X, Y, epsilon=0.5, max_iterations=10**9, inner_iterations=1)
    res = sinkhorn(X, Y, epsilon=0.5, max_iterations=10**9, inner_iterations=10**7)
    assert res.errors.shape == (100,)


def test_debug_compiles_once_per_configuration(monkeypatch):
    front = importlib.import_module("jaxdiff.ot.sinkhorn")  # the module, not the function
    traces = []
    real = front.run_solver

    def counting(*args, **kwargs):
        traces.append(1)  # Python body: runs only while tracing a new program
        return real(*args, **kwargs)

    monkeypatch.setattr(front, "run_solver", counting)
    front._checked_program.cache_clear()
    x = np.random.default_rng(0).normal(size=(6, 2))
    results = [sinkhorn(x, x + 0.1, epsilon=eps, debug=True) for eps in (0.5, 0.5, 0.7)]
    assert len(traces) == 1 and all(bool(r.converged) for r in results)
    sinkhorn(x, x + 0.1, epsilon=0.5, debug=True, max_iterations=500)  # new static config
    assert len(traces) == 2
    with pytest.raises(FloatingPointError, match="did not converge"):
        sinkhorn(x, x + 3.0, epsilon=0.01, debug=True, max_iterations=2, threshold=1e-9)
