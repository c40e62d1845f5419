"""Probability paths against torchcfm, autodiff and closed forms.

Oracles: torchcfm 1.0.7 (the peer; its ``t`` is our ``1 - t``, its ``x0``/``x1`` our
``x1``/``x0`` and its velocity minus ours); ``d/dt`` of ``mu_t + sigma_t z`` and
``grad_x log N(x; mu_t, sigma_t^2)`` by autodiff; for Gaussian endpoints the exact
marginal velocity and score, linear in ``x``; for a Gaussian-mixture endpoint the
stochastic-interpolants mixture formulas (derived below, checked against the continuity
equation and the autodiff score of the closed-form density, then compared with
importance-sampled conditional expectations of our targets); for the Schrödinger-bridge
path the closed-form Gaussian bridge (Bunne et al. 2023), also for the pairs that the
SB-CFM objective draws from its Sinkhorn plan.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.scipy.stats import norm
from torchcfm.conditional_flow_matching import (
    ConditionalFlowMatcher,
    SchrodingerBridgeConditionalFlowMatcher,
    VariancePreservingConditionalFlowMatcher,
)

from jaxdiff.flows.objectives import sb_cfm_objective
from jaxdiff.flows.paths import (
    ProbabilityPath,
    independent_path,
    interpolant_path,
    schrodinger_bridge_path,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments" / "schrodinger"))
import problems  # noqa: E402

PATHS = {
    "independent": independent_path(0.3),
    "bridge": schrodinger_bridge_path(0.7),
    "trig_bridge": interpolant_path(0.6, "trig"),
    "trig_constant": ProbabilityPath(sigma=0.2, interpolation="trig", noise="constant"),
}


def _coefficients(path, t):
    """``(alpha, beta, gamma, alpha', beta', gamma')`` of ``path`` at ``t`` (jnp, closed form)."""
    if path.interpolation == "linear":
        a, b, da, db = 1.0 - t, t, -1.0, 1.0
    else:
        h = jnp.pi / 2
        a, b, da, db = jnp.cos(h * t), jnp.sin(h * t), -h * jnp.sin(h * t), h * jnp.cos(h * t)
    if path.noise == "constant":
        return a, b, path.sigma, da, db, 0.0
    root = jnp.sqrt(t * (1 - t))
    return a, b, path.sigma * root, da, db, path.sigma * (1 - 2 * t) / (2 * root)


@pytest.mark.parametrize(
    "name,peer",
    [
        ("independent", ConditionalFlowMatcher(sigma=0.3)),
        ("bridge", SchrodingerBridgeConditionalFlowMatcher(sigma=0.7)),
        ("trig_constant", VariancePreservingConditionalFlowMatcher(sigma=0.2)),
    ],
)
def test_matches_torchcfm_on_fixed_noise(name, peer):
    path = PATHS[name]
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(7, 2, 3)).astype(np.float32)  # our data, torchcfm's x1
    x1 = rng.normal(size=(7, 2, 3)).astype(np.float32) + 1.0  # our source, torchcfm's x0
    s = np.linspace(0.04, 0.96, 7).astype(np.float32)  # torchcfm's time
    eps = rng.normal(size=x0.shape).astype(np.float32)
    tx0, tx1, ts, teps = (torch.from_numpy(a) for a in (x1, x0, s, eps))
    xt_peer = peer.sample_xt(tx0, tx1, ts, teps)
    ut_peer = peer.compute_conditional_flow(tx0, tx1, ts, xt_peer).numpy()
    t = 1.0 - s
    mu = path.mu_t(x0, x1, t)
    np.testing.assert_allclose(mu, peer.compute_mu_t(tx0, tx1, ts).numpy(), atol=1e-6)
    sigma_peer = np.broadcast_to(np.asarray(peer.compute_sigma_t(ts), np.float32), s.shape)
    np.testing.assert_allclose(path.sigma_t(t), sigma_peer, rtol=1e-5)
    xt = mu + np.asarray(path.sigma_t(t))[:, None, None] * eps
    np.testing.assert_allclose(xt, xt_peer.numpy(), atol=1e-6)
    np.testing.assert_allclose(path.u_t(x0, x1, t, xt_peer.numpy()), -ut_peer, atol=2e-5)


@jax.jit
def _targets(path, key, x0, x1, t):
    """``x_t``, ``z`` and the conditional velocity and score targets at ``x_t``."""
    xt, z = path.sample_xt(key, x0, x1, t)
    return xt, z, path.u_t(x0, x1, t, xt), path.score_t(x0, x1, t, xt)


@jax.jit
def _autodiff_targets(path, x0, x1, t, z):
    """``x_t``, ``d/dt (mu_t + sigma_t z)`` and ``grad_x log N(x_t; mu_t, sigma_t^2 I)``."""

    def sample_at(tt):  # x_t at fixed (x0, x1, z), as a function of time
        return path.mu_t(x0, x1, tt) + path.sigma_t(tt)[:, None] * z

    def log_density(x):
        return norm.logpdf(x, path.mu_t(x0, x1, t), path.sigma_t(t)[:, None]).sum()

    xt, d_dt = jax.jvp(sample_at, (t,), (jnp.ones_like(t),))
    return xt, d_dt, jax.grad(log_density)(xt)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_velocity_is_the_time_derivative_and_score_the_gradient(name):
    path = PATHS[name]
    k0, k1, kz = jax.random.split(jax.random.key(1), 3)
    x0 = jax.random.normal(k0, (5, 3))
    x1 = jax.random.normal(k1, (5, 3)) - 2.0
    t = jnp.asarray([0.05, 0.3, 0.5, 0.71, 0.97])
    xt, z, u, score = _targets(path, kz, x0, x1, t)
    want_xt, d_dt, grad = _autodiff_targets(path, x0, x1, t, z)
    np.testing.assert_allclose(xt, want_xt, atol=1e-6)
    np.testing.assert_allclose(u, d_dt, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(score, grad, rtol=1e-5)
    # per-example noise: a row's z depends only on its own key
    keys = jax.random.split(kz, 5)
    np.testing.assert_array_equal(path.sample_xt(keys, x0, x1, t)[1], z)
    np.testing.assert_array_equal(path.sample_xt(keys[2:4], x0[2:4], x1[2:4], t[2:4])[1], z[2:4])
    # scalar t broadcasts; the bridge's endpoints give finite targets (gamma'/gamma := 0)
    np.testing.assert_allclose(path.mu_t(x0, x1, 0.3), path.mu_t(x0, x1, jnp.full(5, 0.3)))
    ends = path.u_t(x0, x1, jnp.asarray([0.0, 1.0, 0.0, 1.0, 0.0]), x0)
    assert bool(jnp.all(jnp.isfinite(ends)))


# --- Gaussian endpoints: the marginal velocity and score are linear in x -------------
M0, S0 = np.array([1.0, -0.5]), np.array([0.5, 1.5])  # data N(m0, diag(s0^2))
M1, S1 = np.array([-2.0, 0.3]), np.array([1.0, 0.7])  # source N(m1, diag(s1^2))
TIMES = np.array([0.1, 0.35, 0.6, 0.9])


def _regress(x, y):
    """Per-column least squares ``y ~ a x + c``: ``a``, ``c`` and their standard errors."""
    n = x.shape[0]
    xc, yc = x - x.mean(0), y - y.mean(0)
    sxx = (xc**2).sum(0)
    slope = (xc * yc).sum(0) / sxx
    intercept = y.mean(0) - slope * x.mean(0)
    resid_var = ((yc - slope * xc) ** 2).mean(0)
    se_slope = np.sqrt(resid_var / sxx)
    se_intercept = np.sqrt(resid_var * (1 / n + x.mean(0) ** 2 / sxx))
    return slope, intercept, se_slope, se_intercept


def _check_regression(x, y, slope, intercept):
    got_slope, got_intercept, se_slope, se_intercept = _regress(x, y)
    # informative: the standard errors are small against the fields (measured <= 0.024)
    assert np.all(se_slope < 0.03 * (1 + np.abs(slope)))
    assert np.all(se_intercept < 0.03 * (1 + np.abs(intercept)))
    np.testing.assert_array_less(np.abs(got_slope - slope), 5 * se_slope + 1e-4)
    np.testing.assert_array_less(np.abs(got_intercept - intercept), 5 * se_intercept + 1e-4)


@pytest.mark.parametrize("name", ["independent", "bridge", "trig_bridge"])
def test_gaussian_endpoints_regression_gives_the_exact_marginal_fields(name):
    """``E[u | x_t = x] = E u + Cov(u, x_t) / Var(x_t) (x - E x_t)`` per coordinate.

    With ``x_t = a x0 + b x1 + g z`` and ``u = a' x0 + b' x1 + g' z``:
    ``Var x_t = a^2 s0^2 + b^2 s1^2 + g^2``, ``Cov(u, x_t) = a a' s0^2 + b b' s1^2 + g g'``;
    the score target ``-z / g`` has ``Cov = -1``, so its regression is the exact score
    ``-(x - E x_t) / Var x_t``.
    """
    path = PATHS[name]
    n = 40_000
    k0, k1, kz = jax.random.split(jax.random.key(2), 3)
    t = jnp.repeat(jnp.asarray(TIMES, jnp.float32), n)
    x0 = M0 + S0 * jax.random.normal(k0, (t.shape[0], 2))
    x1 = M1 + S1 * jax.random.normal(k1, (t.shape[0], 2))
    xt, _, u, score = (
        np.asarray(a, np.float64).reshape(len(TIMES), n, 2) for a in _targets(path, kz, x0, x1, t)
    )
    for k, tk in enumerate(TIMES):
        a, b, g, da, db, dg = (float(c) for c in _coefficients(path, tk))
        var = a**2 * S0**2 + b**2 * S1**2 + g**2
        cov = a * da * S0**2 + b * db * S1**2 + g * dg
        mean_x, mean_u = a * M0 + b * M1, da * M0 + db * M1
        _check_regression(xt[k], u[k], cov / var, mean_u - cov / var * mean_x)
        _check_regression(xt[k], score[k], -1 / var, mean_x / var)


# --- Gaussian-mixture data: the stochastic interpolants' mixture formulas -----------
# Data x0 ~ sum_k w_k N(m_k, s_k^2 I), source x1 ~ N(m1, s1^2 I), z ~ N(0, I). Given the
# component k, (x_t, u) is jointly Gaussian and isotropic: E x_t = a m_k + b m1,
# Var x_t = v_k I with v_k = a^2 s_k^2 + b^2 s1^2 + g^2, E u = a' m_k + b' m1 and
# Cov(u, x_t) = c_k I with c_k = a a' s_k^2 + b b' s1^2 + g g'. Hence, with the
# responsibilities r_k(x) = softmax_k(log w_k + log N(x; E_k x_t, v_k I)),
#   b(x) = sum_k r_k(x) [a' m_k + b' m1 + c_k / v_k (x - a m_k - b m1)],
#   s(x) = sum_k r_k(x) [-(x - a m_k - b m1) / v_k]
# (Albergo, Boffi & Vanden-Eijnden 2023's Gaussian-mixture velocity and score).
W = jnp.asarray([0.3, 0.7])
MEANS = jnp.asarray([[2.0, 0.0], [-1.0, 1.5]])
STDS = jnp.asarray([0.4, 0.6])
GM1, GS1 = jnp.asarray([0.5, -0.5]), 1.0


def _mixture_terms(path, t, x):
    """Per-component log-likelihood terms ``[K]``, means ``[K, d]``, ``v``, ``c`` ``[K]``."""
    a, b, g, da, db, dg = _coefficients(path, t)
    v = a**2 * STDS**2 + b**2 * GS1**2 + g**2
    c = a * da * STDS**2 + b * db * GS1**2 + g * dg
    mean = a * MEANS + b * GM1
    logs = jnp.log(W) + norm.logpdf(x, mean, jnp.sqrt(v)[:, None]).sum(-1)
    return logs, mean, v, c, da * MEANS + db * GM1


def mixture_log_density(path, t, x):
    """``log p_t(x)`` for one point ``x`` ``[d]``."""
    return jax.scipy.special.logsumexp(_mixture_terms(path, t, x)[0])


def mixture_fields(path, t, x):
    """Closed-form ``(b(x), s(x))`` for one point ``x`` ``[d]``."""
    logs, mean, v, c, mean_u = _mixture_terms(path, t, x)
    r = jax.nn.softmax(logs)[:, None]
    b = jnp.sum(r * (mean_u + (c / v)[:, None] * (x - mean)), 0)
    s = jnp.sum(r * (-(x - mean) / v[:, None]), 0)
    return b, s


MIXTURE_PATHS = {"linear": interpolant_path(1.0), "trig": interpolant_path(1.0, "trig")}


def _continuity(path, velocity_path, t, x):
    """``(s - grad log p, d/dt log p + div b + b . grad log p)`` at one point (autodiff).

    ``p``, ``s`` are ``path``'s, ``b`` is ``velocity_path``'s (the same path but to show
    that the residual detects a wrong velocity).
    """
    b, _ = mixture_fields(velocity_path, t, x)
    _, s = mixture_fields(path, t, x)
    dlogp_dt = jax.grad(mixture_log_density, argnums=1)(path, t, x)
    grad_logp = jax.grad(mixture_log_density, argnums=2)(path, t, x)
    div_b = jnp.trace(jax.jacfwd(lambda y: mixture_fields(velocity_path, t, y)[0])(x))
    return s - grad_logp, dlogp_dt + div_b + b @ grad_logp


@pytest.mark.parametrize("name", sorted(MIXTURE_PATHS))
def test_mixture_formulas_solve_the_continuity_equation(name, enable_x64):
    """``d/dt log p + div b + b . grad log p = 0`` and ``s = grad log p`` (autodiff)."""
    path = MIXTURE_PATHS[name]
    xs = jnp.asarray([[0.3, -0.2], [2.0, 0.5], [-1.5, 2.0]] * 3, jnp.float64)
    ts = jnp.repeat(jnp.asarray([0.2, 0.5, 0.8], jnp.float64), 3)
    residuals = jax.jit(jax.vmap(_continuity, in_axes=(None, None, 0, 0)))
    score_err, residual = residuals(path, path, ts, xs)
    np.testing.assert_allclose(score_err, 0.0, atol=1e-12)
    np.testing.assert_allclose(residual, 0.0, atol=1e-9)
    # the check bites: the velocity without its g g' term (sigma = 0) leaves a residual
    _, wrong = residuals(path, path.replace(sigma=0.0), ts, xs)
    assert float(jnp.abs(wrong).max()) > 0.1


@pytest.mark.parametrize("name", sorted(MIXTURE_PATHS))
def test_mixture_targets_average_to_the_closed_form_fields(name):
    """Importance-sampled ``E[u_t(x0, x1, t, x) | x_t = x]`` (and the score) match b, s.

    Given ``x_t = x`` the pair ``(x0, x1)`` has density ``p(x0) p(x1) N(x; mu_t, g^2 I)``,
    so self-normalised weights ``N(x; mu_t(x0_i, x1_i), g^2 I)`` over draws from the
    endpoints estimate conditional expectations of our targets evaluated at ``x``.
    """
    path = MIXTURE_PATHS[name]
    m = 200_000
    kc, kn, k1, kq = jax.random.split(jax.random.key(3), 4)
    comp = jax.random.choice(kc, 2, (m,), p=W)
    x0 = MEANS[comp] + STDS[comp, None] * jax.random.normal(kn, (m, 2))
    x1 = GM1 + GS1 * jax.random.normal(k1, (m, 2))

    def estimate(t, x):
        xs = jnp.broadcast_to(x, x0.shape)
        logw = norm.logpdf(x, path.mu_t(x0, x1, t), path.sigma_t(t)).sum(-1)
        w = jax.nn.softmax(logw)[:, None]
        out = []
        for target in (path.u_t(x0, x1, t, xs), path.score_t(x0, x1, t, xs)):
            mean = jnp.sum(w * target, 0)
            out += [mean, jnp.sqrt(jnp.sum(w**2 * (target - mean) ** 2, 0))]
        return (*out, 1.0 / jnp.sum(w**2), *mixture_fields(path, t, x))

    @jax.jit
    def estimates(t):
        queries, _ = path.sample_xt(kq, x0[:6], x1[:6], t)  # typical points of p_t
        return jax.vmap(estimate, in_axes=(None, 0))(t, queries)

    for t in (0.3, 0.7):
        b_mc, b_se, s_mc, s_se, ess, b, s = estimates(t)
        assert float(ess.min()) > 2000 and float(jnp.maximum(b_se, s_se).max()) < 0.05
        np.testing.assert_array_less(np.abs(b_mc - b), 5 * b_se + 1e-3)
        np.testing.assert_array_less(np.abs(s_mc - s), 5 * s_se + 1e-3)


# --- Schrödinger bridge between Gaussians (Bunne et al. 2023) ----------------------
def _sqrtm(m):
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(w)) @ v.T


def bunne_bridge(cov0, cov1, sigma):
    """``C_sigma`` and ``t -> Sigma_t`` of the SB of ``dX = sigma dW`` from ``N(., cov0)``.

    ``D = (4 S0^1/2 S1 S0^1/2 + sigma^4 I)^1/2``, ``C = (S0^1/2 D S0^-1/2 - sigma^2 I) / 2``,
    ``Sigma_t = (1-t)^2 S0 + t^2 S1 + t (1-t) (C + C^T + sigma^2 I)``.
    """
    eye = np.eye(len(cov0))
    root = _sqrtm(cov0)
    d = _sqrtm(4 * root @ cov1 @ root + sigma**4 * eye)
    cross = 0.5 * (root @ d @ np.linalg.inv(root) - sigma**2 * eye)

    def cov_t(t):
        return (1 - t) ** 2 * cov0 + t**2 * cov1 + t * (1 - t) * (cross + cross.T + sigma**2 * eye)

    return cross, cov_t


def test_sb_path_on_entropic_pairs_has_the_gaussian_bridge_marginals():
    sigma = 1.0
    m0, m1 = np.array([1.0, -1.0]), np.array([-0.5, 2.0])
    cov0 = np.array([[1.0, 0.3], [0.3, 0.5]])
    cov1 = np.array([[2.0, -0.4], [-0.4, 0.8]])
    cross, cov_t = bunne_bridge(cov0, cov1, sigma)
    # the static bridge is the entropic plan at epsilon = 2 sigma^2 (Janati et al. 2020)
    janati = problems.entropic_cross_covariance(cov0, cov1, 2 * sigma**2)
    np.testing.assert_allclose(cross, janati, atol=1e-12)
    # the slip epsilon = sigma^2 would move Sigma_1/2 by more than the tolerance below
    slip = problems.entropic_cross_covariance(cov0, cov1, sigma**2)
    assert 0.25 * np.abs(slip + slip.T - cross - cross.T).max() > 0.06
    n = 200_000
    kp, kz = jax.random.split(jax.random.key(4))
    x0, x1 = problems.gaussian_coupling_sample(kp, m0, cov0, m1, cov1, cross, n)
    path = schrodinger_bridge_path(sigma)
    for t in (0.2, 0.5, 0.85):
        xt = np.asarray(_targets(path, jax.random.fold_in(kz, int(100 * t)), x0, x1, t)[0])
        np.testing.assert_allclose(xt.mean(0), (1 - t) * m0 + t * m1, atol=0.015)
        np.testing.assert_allclose(np.cov(xt.T), cov_t(t), atol=0.025)


def test_sb_path_velocity_regression_matches_the_bridge_flow():
    """DSBM's task N(-0.1, I) -> N(0.1, I), sigma = 1: ``E[u | x_t]`` has slope ``S_t' / 2 S_t``.

    Per dimension ``S_t = (1-t)^2 + t^2 + t (1-t) (2 c + sigma^2)`` with the closed-form
    ``c = (sqrt 5 - 1) / 2``: the Gaussian flow keeping ``N(mu_t, S_t)`` is
    ``mu_t' + S_t' / (2 S_t) (x - mu_t)``.
    """
    m0, cov0, m1, cov1, _, cross = problems.dsbm_bridge(2)
    c = cross[0, 0]
    np.testing.assert_allclose(c, (np.sqrt(5) - 1) / 2)
    n = 80_000
    kp, kz = jax.random.split(jax.random.key(5))
    x0, x1 = problems.gaussian_coupling_sample(kp, m0, cov0, m1, cov1, cross, n)
    path = schrodinger_bridge_path(problems.DSBM_SIGMA)

    def var_t(t):
        return (1 - t) ** 2 + t**2 + t * (1 - t) * (2 * c + problems.DSBM_SIGMA**2)

    for t in (0.15, 0.5, 0.8):
        xt, _, u, _ = _targets(path, jax.random.fold_in(kz, int(100 * t)), x0, x1, t)
        xt, u = np.asarray(xt, np.float64), np.asarray(u, np.float64)
        slope = float(jax.grad(var_t)(t)) / (2 * var_t(t))
        mean_x = (1 - t) * m0 + t * m1
        _check_regression(xt, u, slope, (m1 - m0) - slope * mean_x)


def test_sb_cfm_sinkhorn_pairs_have_the_entropic_cross_covariance():
    """DSBM's ``N(-0.1, I) -> N(0.1, I)``: the plan at ``epsilon = 2 sigma^2`` has ``C = cI``.

    ``c = (sqrt(4 + sigma^4) - sigma^2) / 2`` (0.618 at ``sigma = 1``); the slips
    ``epsilon = sigma^2`` and ``4 sigma^2`` would give 0.781 and 0.414.
    """
    m0, cov0, m1, cov1, epsilon, cross = problems.dsbm_bridge(2)
    obj = sb_cfm_objective(problems.DSBM_SIGMA)
    assert obj.epsilon == epsilon == 2.0
    n, reps = 128, 16

    def one(key):
        k0, k1 = jax.random.split(jax.random.fold_in(key, 1))
        x = m0 + jax.random.normal(k0, (n, 2))
        x1 = m1 + jax.random.normal(k1, (n, 2))
        out = obj.couple(key, {"x": x, "x1": x1, "labels": jnp.arange(n) % 3})
        # rows are drawn with replacement from the plan; labels follow their data rows
        labels_follow = jnp.all(out.labels == out.i % 3) & jnp.all(out.x0 == x[out.i])
        return jnp.mean((out.x0 - m0) * (out.x1 - m1), 0), out.converged & labels_follow

    c_hat, ok = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(6), reps))
    assert bool(ok.all())
    got, se = float(c_hat.mean()), float(c_hat.std() / np.sqrt(c_hat.size))
    assert se < 0.03
    assert abs(got - cross[0, 0]) < 0.08, (got, cross[0, 0], se)
    for slip in (1.0, 4.0):  # epsilon = sigma^2, 4 sigma^2
        wrong = problems.entropic_cross_covariance(cov0, cov1, slip)[0, 0]
        assert abs(got - wrong) > abs(got - cross[0, 0]) + 0.05
