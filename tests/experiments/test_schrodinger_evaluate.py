"""experiments/schrodinger: the closed forms its evaluation rests on, and one tiny run."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp, ndtri
from jax.scipy.stats import norm

from jaxdiff.ot import sinkhorn
from jaxdiff.schedules.continuous import make_schedule

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments" / "schrodinger"))
import evaluate  # noqa: E402
import problems  # noqa: E402

KEY = jax.random.key(0)
ALPHA = jnp.linspace(0.05, 0.999, 7)
SIGMA = jnp.sqrt(1.0 - ALPHA**2)


def _autodiff_score(log_density, x):
    """Per-row ``grad_x log p_t(x)`` of a ``[B] -> [B]`` log-density, by jax.grad."""
    one = lambda xi, a, s: log_density(xi[None], a, s)[0]  # noqa: E731
    return jax.vmap(jax.grad(one))(x, ALPHA, SIGMA)


@jax.jit
def _gaussian_case(data, x):
    logp = problems.gaussian_log_density(data, x, ALPHA, SIGMA)
    std = jnp.sqrt(ALPHA**2 * data.std**2 + SIGMA**2)[:, None]
    want = jnp.sum(norm.logpdf(x, ALPHA[:, None] * data.mean, std), -1)
    grad = _autodiff_score(lambda x, a, s: problems.gaussian_log_density(data, x, a, s), x)
    return logp, want, problems.gaussian_score(data, x, ALPHA, SIGMA), grad


def test_gaussian_score_is_the_gradient_of_the_normal_log_density():
    data = problems.gaussian_problem(4).biased  # mean 0.4, std 0.36
    logp, want, score, grad = _gaussian_case(data, 2.0 * jax.random.normal(KEY, (7, 4)))
    np.testing.assert_allclose(logp, want, rtol=1e-5)
    np.testing.assert_allclose(score, grad, rtol=1e-5)


def test_gaussian_pf_map_solves_the_probability_flow_ode():
    # d/dt x(t) = f x - g^2 / 2 * score along the map (Song et al. 2021, eq. 13)
    sched, data = make_schedule("linear"), problems.gaussian_problem(3).exact
    x1 = jax.random.normal(KEY, (5, 3))

    @jax.jit
    def residual(t):
        def path(t):
            a1, s1 = sched.alpha(1.0), sched.sigma(1.0)
            return problems.gaussian_pf_map(data, x1, a1, s1, sched.alpha(t), sched.sigma(t))

        x, dxdt = jax.jvp(path, (t,), (jnp.ones_like(t),))
        score = problems.gaussian_score(data, x, sched.alpha(t), sched.sigma(t))
        return dxdt, sched.f(t) * x - 0.5 * sched.g2(t) * score, path(jnp.float32(1.0))

    for t in (0.9, 0.4, 0.05):
        dxdt, drift, at_one = residual(jnp.float32(t))
        np.testing.assert_allclose(dxdt, drift, rtol=2e-4)
    np.testing.assert_allclose(at_one, x1, rtol=1e-6)


@jax.jit
def _mixture_case(mix, x):
    logp = problems.mixture_log_density(mix, x, ALPHA, SIGMA)
    std = jnp.sqrt(ALPHA[:, None] ** 2 * mix.stds[None] ** 2 + SIGMA[:, None] ** 2)
    comp = norm.logpdf(x[:, None], ALPHA[:, None, None] * mix.means[None], std[..., None])
    want = logsumexp(jnp.sum(comp, -1), axis=-1, b=mix.weights[None])
    grad = _autodiff_score(lambda x, a, s: problems.mixture_log_density(mix, x, a, s), x)
    return logp, want, problems.mixture_score(mix, x, ALPHA, SIGMA), grad


def test_mixture_score_is_the_gradient_of_the_mixture_log_density():
    for prob in (problems.ring_problem(), problems.random_mixture_problem(KEY, 8, 5)):
        for mix in (prob.exact, prob.biased):  # the biased one has a weight-0 mode
            x = 3.0 * jax.random.normal(jax.random.key(1), (7, prob.dim))
            logp, want, score, grad = _mixture_case(mix, x)
            np.testing.assert_allclose(logp, want, rtol=1e-5)
            assert bool(jnp.all(jnp.isfinite(score)))
            np.testing.assert_allclose(score, grad, rtol=1e-4, atol=1e-5)


def test_closed_form_entropic_plan_limits():
    eye = np.eye(3)
    np.testing.assert_allclose(
        problems.entropic_cross_covariance(eye, eye, 2.0), (np.sqrt(5) - 1) / 2 * eye, atol=1e-12
    )
    # epsilon -> 0: the Brenier coupling, cross-covariance sqrt(S0 S1) for commuting S0, S1
    s0, s1 = np.diag([1.0, 4.0]), np.diag([9.0, 0.25])
    np.testing.assert_allclose(
        problems.entropic_cross_covariance(s0, s1, 1e-8), np.sqrt(s0 @ s1), atol=1e-6
    )


@jax.jit
def _plan_cross_covariance(x, y, eps):
    res = sinkhorn(x, y, epsilon=eps, threshold=1e-6, max_iterations=5000)
    return jnp.mean((x - x.mean()) * res.barycentric_map()), res.converged


def test_gaussian_bridge_coupling_matches_sinkhorn_between_quantiles():
    # DSBM's N(-0.1, 1) -> N(0.1, 1), sigma = 1: epsilon = 2, C = (sqrt 5 - 1) / 2 per dimension.
    # 1000 quantile points per side (the problem factorises over dimensions): the plan's
    # cross-covariance is within 0.01 of the closed form (measured: see below).
    m0, s0, m1, s1, eps, cross = problems.dsbm_bridge(1)
    u = (jnp.arange(1000, dtype=jnp.float32) + 0.5) / 1000
    x, y = (m0[0] + ndtri(u))[:, None], (m1[0] + ndtri(u))[:, None]
    c_hat, converged = _plan_cross_covariance(x, y, eps)
    c_hat = float(c_hat)
    assert bool(converged)
    assert abs(c_hat - cross[0, 0]) < 0.01, c_hat
    assert abs(cross[0, 0] - 0.6180339887) < 1e-9


def test_a_tiny_evaluation_returns_finite_metrics():
    sizes = evaluate.Sizes({}, (4,), (), 1, (), (), (), ())
    prob = problems.ring_problem()
    samplers = [v for v in evaluate.variants(sizes) if v.name in (evaluate.PF_HEUN, "DDIM")]
    records, floors = evaluate.compare_samplers(prob, samplers, sizes, 64, log=lambda _: None)
    assert len(records) == 4  # (PF Heun, DDIM) x (exact, biased) x 1 NFE
    for rec in records:
        assert rec["finite"] and rec["nfe"] == 4
        assert set(rec["mean"]) == {"energy", "sw2", "mode_tv"}
        assert all(np.isfinite(v) and v >= 0 for v in rec["mean"].values()), rec["mean"]
    assert all(np.isfinite(v) for v in floors["mean"].values())
    # the biased score misses one of 8 equal modes: 1/8 of the mass is misplaced
    biased = [r["mean"]["mode_tv"] for r in records if r["score"] == "biased"]
    assert all(abs(tv - 0.125) < 0.07 for tv in biased), biased
