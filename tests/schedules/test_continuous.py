import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from jaxdiff.schedules.continuous import (
    VPCosineSchedule,
    VPLinearSchedule,
    make_schedule,
)
from jaxdiff.schedules.karras import KarrasSchedule, karras_noise_schedule

NAMES = ["linear", "cosine", "karras"]
T = np.linspace(1e-3, 1.0, 41)


# --- independent float64 closed forms (the oracles) ---------------------------------
def ref_alpha_sigma(name, t, **kw):
    t = np.asarray(t, np.float64)
    if name == "linear":
        b0, b1 = kw.get("beta_min", 0.1), kw.get("beta_max", 20.0)
        alpha = np.exp(-0.25 * t**2 * (b1 - b0) - 0.5 * t * b0)
        return alpha, np.sqrt(1.0 - alpha**2)
    if name == "cosine":
        s, max_beta = 0.008, 999.0
        # u_max: where the unrescaled beta pi/(1+s) tan(phi) reaches max_beta
        u_max = np.arctan(max_beta * (1 + s) / np.pi) * 2 * (1 + s) / np.pi - s
        ab = (
            np.cos((t * u_max + s) / (1 + s) * np.pi / 2) ** 2
            / np.cos(s / (1 + s) * np.pi / 2) ** 2
        )
        return np.sqrt(ab), np.sqrt(1.0 - ab)
    smin, smax, rho = kw.get("sigma_min", 0.002), kw.get("sigma_max", 80.0), 7.0
    sigma = (smin ** (1 / rho) + t * (smax ** (1 / rho) - smin ** (1 / rho))) ** rho
    return np.ones_like(t), sigma


@pytest.mark.parametrize("name", NAMES)
def test_alpha_sigma_log_snr_closed_forms(name):
    sched = make_schedule(name)
    alpha, sigma = ref_alpha_sigma(name, T)
    np.testing.assert_allclose(sched.alpha(T), alpha, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sched.sigma(T), sigma, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sched.log_snr(T), np.log(alpha**2 / sigma**2), rtol=1e-5, atol=1e-5)
    mean, std = sched.marginal(jnp.full((41, 2), 3.0), T)
    np.testing.assert_allclose(mean, 3.0 * alpha[:, None] * np.ones((41, 2)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(std, sigma, rtol=1e-5, atol=1e-7)
    assert np.all(np.diff(np.asarray(sched.log_snr(T))) < 0)
    if sched.variance_preserving:
        np.testing.assert_allclose(sched.alpha(T) ** 2 + sched.sigma(T) ** 2, 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alpha_is_exp_of_integrated_beta(name, enable_x64):
    # VP: alpha(t) = exp(-1/2 int_0^t beta(u) du) (Song et al. 2021, appendix B). In float64:
    # near t = 1 the cosine beta is ~1000 and float32 quadrature would lose ~1e-5.
    sched = make_schedule(name)
    beta = lambda u: float(sched.beta(u))  # noqa: E731
    for t in [0.05, 0.3, 0.7, 0.95, 1.0]:
        integral, _ = integrate.quad(beta, 0.0, t, epsabs=1e-12, epsrel=1e-12, limit=200)
        np.testing.assert_allclose(float(sched.alpha(t)), np.exp(-0.5 * integral), rtol=1e-9)


def test_karras_sigma2_is_integrated_g2(enable_x64):
    # VE: sigma(t)^2 - sigma(0)^2 = int_0^t g(u)^2 du (Song et al. 2021, eq. 9), in float64
    sched = make_schedule("karras")
    for t in [0.1, 0.5, 1.0]:
        integral, _ = integrate.quad(lambda u: float(sched.g2(u)), 0.0, t, epsrel=1e-12)
        np.testing.assert_allclose(float(sched.sigma(t)) ** 2 - 0.002**2, integral, rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_t_from_log_snr_round_trip(name):
    sched = make_schedule(name)
    np.testing.assert_allclose(sched.t_from_log_snr(sched.log_snr(T)), T, rtol=1e-4, atol=2e-6)
    lam = jnp.linspace(-9.0, 9.0, 19)
    np.testing.assert_allclose(sched.log_snr(sched.t_from_log_snr(lam)), lam, atol=2e-4)


@pytest.mark.parametrize("name", NAMES)
def test_g2_identity_finite_differences(name, enable_x64):
    # g^2 = d sigma^2/dt - 2 f sigma^2 and f = d log alpha / dt, by central differences in
    # float64 (x64 keeps the difference quotients accurate).
    sched = make_schedule(name)
    t, h = jnp.linspace(0.02, 0.98, 25), 1e-6
    dsig2 = (sched.sigma(t + h) ** 2 - sched.sigma(t - h) ** 2) / (2 * h)
    dlog_alpha = (sched.log_alpha(t + h) - sched.log_alpha(t - h)) / (2 * h)
    np.testing.assert_allclose(sched.f(t), dlog_alpha, rtol=1e-6, atol=1e-8)
    expected = dsig2 - 2 * sched.f(t) * sched.sigma(t) ** 2
    np.testing.assert_allclose(sched.g2(t), expected, rtol=1e-6)
    np.testing.assert_allclose(sched.g(t) ** 2, sched.g2(t), rtol=1e-12)
    np.testing.assert_allclose(sched.beta(t), -2 * sched.f(t), rtol=1e-12)
    drift, diffusion = sched.sde(jnp.ones((25, 3)), t)
    np.testing.assert_allclose(drift, np.broadcast_to(np.asarray(sched.f(t))[:, None], (25, 3)))
    np.testing.assert_allclose(diffusion, sched.g(t))


def test_linear_beta_and_cosine_finite_at_one():
    lin = make_schedule("linear", beta_min=0.2, beta_max=10.0)
    np.testing.assert_allclose(lin.beta(T), 0.2 + T * 9.8, rtol=1e-6)
    cos = make_schedule("cosine")
    assert np.all(np.isfinite(cos.beta(T))) and float(cos.beta(1.0)) < 1000.0
    assert float(cos.alpha(1.0)) < 5e-3 and float(cos.alpha(0.0)) == pytest.approx(1.0, abs=1e-7)
    assert float(cos.sigma(0.0)) == 0.0 and np.isfinite(float(cos.log_snr(1.0)))


def test_karras_noise_schedule_matches_edm_and_diffusers():
    n = 18
    got = np.asarray(karras_noise_schedule(n))
    assert got.shape == (n + 1,) and got[-1] == 0.0
    i = np.arange(n)
    lo, hi = 0.002 ** (1 / 7), 80.0 ** (1 / 7)
    edm = (hi + i / (n - 1) * (lo - hi)) ** 7  # Karras et al. (2022), eq. 5
    np.testing.assert_allclose(got[:-1], edm, rtol=1e-5)
    ref = diffusers.EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, rho=7.0)
    ref.set_timesteps(n)
    np.testing.assert_allclose(got, ref.sigmas.numpy(), rtol=1e-5, atol=0)
    # continuous-time sigma(t) visits the same values at t = 1 - i / (n - 1)
    sched = make_schedule("karras")
    np.testing.assert_allclose(sched.sigma(1 - i / (n - 1)), edm, rtol=1e-5)
    np.testing.assert_allclose(karras_noise_schedule(1), [80.0, 0.0], rtol=1e-6)
    other = np.asarray(karras_noise_schedule(5, sigma_min=0.01, sigma_max=10.0, rho=3.0))
    edm3 = (10 ** (1 / 3) + np.arange(5) / 4 * (0.01 ** (1 / 3) - 10 ** (1 / 3))) ** 3
    np.testing.assert_allclose(other[:-1], edm3, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_prior(name, key):
    sched = make_schedule(name)
    z = sched.prior_sample(key, (2000, 8))
    assert z.shape == (2000, 8) and z.dtype == jnp.float32
    expected_std = 80.0 if name == "karras" else 1.0
    np.testing.assert_allclose(np.std(np.asarray(z)), expected_std, rtol=0.03)
    logp = sched.prior_logp(z[:4].reshape(4, 2, 4))
    ref = stats.norm.logpdf(np.asarray(z[:4], np.float64), scale=expected_std).sum(axis=1)
    np.testing.assert_allclose(logp, ref, rtol=1e-5)


def test_jit_matches_eager_and_numbers_are_traced():
    fn = jax.jit(lambda s, t: (s.alpha(t), s.sigma(t), s.g2(t), s.t_from_log_snr(s.log_snr(t))))
    for name in NAMES:
        sched = make_schedule(name)
        eager = (
            sched.alpha(T),
            sched.sigma(T),
            sched.g2(T),
            sched.t_from_log_snr(sched.log_snr(T)),
        )
        for a, b in zip(fn(sched, T), eager, strict=True):
            # XLA may fuse pow/exp differently under jit; karras g2 ~ base**13 turns 1 ulp
            # differences into ~1.5e-6 relative, hence 1e-5 (tighter than the 1e-4 rule)
            np.testing.assert_allclose(a, b, rtol=1e-5)
    a = fn(make_schedule("linear", beta_max=20.0), T)[0]
    b = fn(make_schedule("linear", beta_max=10.0), T)[0]
    assert fn._cache_size() == 3  # one per schedule class, none for the new beta_max
    assert not np.allclose(a, b)


def test_vmap_over_beta_max_and_sigma_max():
    betas = jnp.asarray([5.0, 10.0, 20.0])
    got = jax.vmap(lambda b: make_schedule("linear", beta_max=b).alpha(T))(betas)
    for row, b in zip(got, [5.0, 10.0, 20.0], strict=True):
        np.testing.assert_allclose(row, ref_alpha_sigma("linear", T, beta_max=b)[0], rtol=1e-5)
    smax = jnp.asarray([1.0, 80.0])
    got = jax.vmap(lambda s: make_schedule("karras", sigma_max=s).sigma(T))(smax)
    np.testing.assert_allclose(got[0], ref_alpha_sigma("karras", T, sigma_max=1.0)[1], rtol=1e-5)
    np.testing.assert_allclose(got[1], ref_alpha_sigma("karras", T)[1], rtol=1e-5)
    # vmap over time as well
    sched = make_schedule("cosine")
    np.testing.assert_allclose(jax.vmap(sched.sigma)(T), sched.sigma(T), rtol=1e-6)


def test_classes_and_static_fields():
    assert isinstance(make_schedule("Linear"), VPLinearSchedule)
    assert isinstance(make_schedule("cosine"), VPCosineSchedule)
    sched = make_schedule("karras", num_timesteps=37, sigma_max=50.0)
    assert isinstance(sched, KarrasSchedule) and sched.kind == "karras"
    assert sched.num_timesteps == 37 and not sched.variance_preserving
    leaves = jax.tree_util.tree_leaves(sched)
    assert len(leaves) == 3  # sigma_min, sigma_max, rho traced; num_timesteps static


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"name='vp'.*cosine.*karras.*linear"):
        make_schedule("vp")
    with pytest.raises(TypeError, match="name"):
        make_schedule(3)
    with pytest.raises(TypeError, match=r"sigma_max.*allowed.*beta_max"):
        make_schedule("linear", sigma_max=3.0)
    with pytest.raises(ValueError, match="num_timesteps"):
        make_schedule("cosine", num_timesteps=0)
    with pytest.raises(ValueError, match="beta_max"):
        make_schedule("linear", beta_max=-1.0)
    with pytest.raises(ValueError, match="sigma_min"):
        make_schedule("karras", sigma_min=0.0)
    with pytest.raises(ValueError, match="num_steps"):
        karras_noise_schedule(0)
    with pytest.raises(ValueError, match="rho"):
        karras_noise_schedule(10, rho=float("nan"))
