"""Tests of jaxdiff.schrodinger.ot_correction: closed forms, POT, laws, solver choice, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from jax.scipy.special import ndtri

from jaxdiff.ot import KernelConfig
from jaxdiff.schrodinger.ot_correction import OTCorrection, choose_solver, ot_correct

ONE, ZERO = jnp.float32(1.0), jnp.float32(0.0)


def _quantiles(n, mean, std):
    """``n`` deterministic quantile points of N(mean, std^2), as ``[n, 1]``."""
    u = (jnp.arange(n, dtype=jnp.float32) + 0.5) / n
    return (mean + std * ndtri(u))[:, None]


def _eot_slope(s0, s1, eps):
    """Slope ``C / s0^2`` of the entropic barycentric map N(., s0^2) -> N(., s1^2), cost |x-y|^2.

    fastsb-ot spec section 8.3 (Janati et al. 2020; Mallasto et al. 2021), scalar case.
    """
    sig2 = eps / 2.0
    big_d = np.sqrt(4.0 * s0 * s1**2 * s0 + sig2**2)
    return (0.5 * big_d - sig2 / 2.0) / s0**2


@pytest.mark.parametrize("eps", [0.5, 2.0, 8.0])
def test_gaussian_closed_form_slope(key, eps):
    m0, s0, m1, s1, n = 0.5, 1.0, -1.0, 2.0, 2000
    x, ref = _quantiles(n, m0, s0), _quantiles(n, m1, s1)
    cfg = OTCorrection(epsilon=eps, weight=1.0, threshold=1e-5, max_iterations=20000)
    t_map, info = ot_correct(key, x, ref, ONE, ZERO, cfg)
    assert bool(info.converged) and info.solver == "dense"
    assert float(info.epsilon) == pytest.approx(eps)
    xs, ts = np.asarray(x[:, 0]), np.asarray(t_map[:, 0])
    central = slice(n // 20, n - n // 20)
    slope, intercept = np.polyfit(xs[central], ts[central], 1)
    assert slope == pytest.approx(_eot_slope(s0, s1, eps), rel=0.005)  # Brenier: 2.0
    assert slope * m0 + intercept == pytest.approx(m1, abs=0.01)  # T(m0) = m1


def _pot_map(x, y, eps, relative):
    """POT's float64 entropic plan and its barycentric map ``P y / P 1``; the reg used."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    cost = ot.dist(x, y)  # squared Euclidean, not halved
    reg = eps * cost.mean() if relative else eps
    plan = ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log", stopThr=1e-12, numItermax=10**5)
    return plan @ y / plan.sum(1, keepdims=True), reg


@pytest.mark.parametrize("solver, relative", [("dense", False), ("online", False), ("dense", True)])
def test_barycentric_map_matches_pot(key, solver, relative):
    kx, ky = jax.random.split(jax.random.key(3))
    x = jax.random.normal(kx, (40, 2))
    ref = 1.5 * jax.random.normal(ky, (30, 2)) + jnp.array([1.0, -0.5])
    alpha = 0.7
    eps = 0.2 if relative else 0.5
    cfg = OTCorrection(epsilon=eps, relative_epsilon=relative, solver=solver, threshold=1e-6)
    t_map, info = ot_correct(key, x, ref, jnp.float32(alpha), ZERO, cfg)
    want, reg = _pot_map(x, alpha * ref, eps, relative)
    assert bool(info.converged) and info.solver == solver
    assert float(info.epsilon) == pytest.approx(reg, rel=1e-4)
    assert float(info.marginal_error) < 1e-6
    np.testing.assert_allclose(np.asarray(t_map), want, atol=2e-4)


def test_correction_moves_cloud_to_target_and_weight_zero_is_identity(key):
    kx, ky = jax.random.split(jax.random.key(5))
    x = 2.0 * jax.random.normal(kx, (512, 2))
    ref = jax.random.normal(ky, (384, 2))
    cfg = OTCorrection(epsilon=0.05, weight=1.0, threshold=1e-4, max_iterations=5000)
    moved, info = ot_correct(key, x, ref, ONE, ZERO, cfg)
    assert bool(info.converged)
    np.testing.assert_allclose(np.std(np.asarray(moved), axis=0), 1.0, atol=0.08)

    x16 = x.astype(jnp.bfloat16)
    same, info0 = ot_correct(key, x16, ref, ONE, ZERO, cfg.replace(weight=0.0))
    assert same.dtype == jnp.bfloat16 and float(info0.weight) == 0.0
    np.testing.assert_array_equal(np.asarray(same), np.asarray(x16))


def test_sigma_weight_schedule_scales_the_blend(key):
    x, ref = _small_problem()
    alpha, sigma = jnp.float32(0.9), jnp.float32(0.4)
    full, _ = ot_correct(key, x, ref, alpha, sigma, OTCorrection(epsilon=0.5))
    cfg = OTCorrection(epsilon=0.5, weight=0.5, weight_schedule="sigma")
    part, info = ot_correct(key, x, ref, alpha, sigma, cfg)
    assert float(info.weight) == pytest.approx(0.2)
    np.testing.assert_allclose(np.asarray(part), np.asarray(x + 0.2 * (full - x)), atol=1e-5)


def test_noised_reference_has_the_law_of_p_t(key):
    """A point-mass reference c noised to t is N(alpha c, sigma^2 I): the images follow it."""
    x = jax.random.normal(jax.random.key(7), (600, 2))
    c, n_ref = jnp.array([1.5, -2.0]), 2000
    ref = jnp.broadcast_to(c, (n_ref, 2))
    alpha, sigma, eps = 0.6, 0.8, 0.02
    cfg = OTCorrection(epsilon=eps, threshold=1e-4, max_iterations=5000)
    images, info = ot_correct(key, x, ref, jnp.float32(alpha), jnp.float32(sigma), cfg)
    images = np.asarray(images)
    assert bool(info.converged)
    np.testing.assert_allclose(images.mean(0), alpha * np.asarray(c), atol=4 * sigma / n_ref**0.5)
    expected_std = _eot_slope(1.0, sigma, eps) * np.asarray(x).std(0)
    np.testing.assert_allclose(images.std(0), expected_std, atol=0.05)


def _small_problem():
    """Particles ``[32, 2, 2]`` and references ``[24, 2, 2]`` (points of R^4)."""
    return jax.random.normal(jax.random.key(8), (32, 2, 2)), jax.random.normal(
        jax.random.key(9), (24, 2, 2)
    )


def test_vmap_over_keys_matches_single_calls():
    x, ref = _small_problem()
    cfg = OTCorrection(epsilon=0.5)
    keys = jax.random.split(jax.random.key(10), 3)
    run = jax.vmap(lambda k: ot_correct(k, x, ref, jnp.float32(0.8), jnp.float32(0.6), cfg)[0])
    batched = run(keys)
    assert batched.shape == (3, 32, 2, 2)
    for i in range(3):
        single, _ = ot_correct(keys[i], x, ref, jnp.float32(0.8), jnp.float32(0.6), cfg)
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(single), atol=1e-5)
    assert not np.allclose(np.asarray(batched[0]), np.asarray(batched[1]))  # own noise per key


def test_choose_solver_by_memory_budget():
    n = m = 16384  # dense 1 GiB; online 16 MiB (CPU tile) or 256 MiB (GPU); sliced 8.25 MiB
    assert choose_solver(n, m, 2, OTCorrection(memory_limit_ot_mb=2048)) == "dense"
    assert choose_solver(n, m, 2, OTCorrection(memory_limit_ot_mb=512)) == "online"
    assert choose_solver(n, m, 2, OTCorrection(memory_limit_ot_mb=12)) == "sliced"
    assert choose_solver(n, m, 2, OTCorrection(memory_limit_ot_mb=512, solver="online")) == "online"
    with pytest.raises(ValueError, match="memory_limit_ot_mb"):
        choose_solver(n, m, 2, OTCorrection(memory_limit_ot_mb=4))
    with pytest.raises(ValueError, match="memory_limit_ot_mb"):
        choose_solver(n, m, 2, OTCorrection(memory_limit_ot_mb=512, solver="dense"))


def test_sliced_fallback_runs_and_moves_toward_target(key):
    kx, ky = jax.random.split(jax.random.key(11))
    x = 2.0 * jax.random.normal(kx, (256, 2))
    ref = jax.random.normal(ky, (256, 2))
    cfg = OTCorrection(memory_limit_ot_mb=0.2)  # dense/online need 0.25 MiB, sliced 0.13
    moved, info = ot_correct(key, x, ref, ONE, ZERO, cfg)
    assert info.solver == "sliced" and bool(info.converged)
    assert float(info.marginal_error) == 0.0 and float(info.epsilon) == 0.0
    np.testing.assert_allclose(np.std(np.asarray(moved), axis=0), 1.0, atol=0.1)
    _, info_auto = ot_correct(key, x, ref, ONE, ZERO, OTCorrection())
    assert info_auto.solver == "dense"
    with pytest.raises(ValueError, match="memory_limit_ot_mb"):
        ot_correct(key, x, ref, ONE, ZERO, OTCorrection(memory_limit_ot_mb=0.001))
    with pytest.raises(ValueError, match="memory_limit_ot_mb"):
        ot_correct(key, x, ref, ONE, ZERO, OTCorrection(memory_limit_ot_mb=0.2, solver="dense"))


def test_one_compile_across_epsilons_and_weights(key):
    traces = []
    x = jax.random.normal(jax.random.key(12), (48, 2))
    ref = jax.random.normal(jax.random.key(13), (40, 2))

    @jax.jit
    def run(cfg):
        traces.append(1)  # runs once per trace, i.e. per compile
        return ot_correct(key, x, ref, jnp.float32(0.8), jnp.float32(0.6), cfg)

    outs = {}
    for eps in (0.3, 0.5, 1.0):
        for weight in (0.0, 0.5, 1.0):
            outs[eps, weight] = run(OTCorrection(epsilon=eps, weight=weight))
    assert len(traces) == 1
    assert float(outs[0.5, 1.0][1].epsilon) == pytest.approx(0.5)
    assert float(outs[1.0, 0.5][1].weight) == pytest.approx(0.5)
    assert not np.allclose(np.asarray(outs[0.3, 1.0][0]), np.asarray(outs[1.0, 1.0][0]))
    np.testing.assert_array_equal(np.asarray(outs[0.3, 0.0][0]), np.asarray(x))


def test_traced_nan_reference_leaves_particles_unchanged(key):
    x = jax.random.normal(jax.random.key(14), (16, 2))
    ref = jnp.ones((12, 2)).at[3, 1].set(jnp.nan)
    run = jax.jit(lambda r: ot_correct(key, x, r, ONE, ZERO, OTCorrection()))
    x_new, info = run(ref)
    np.testing.assert_array_equal(np.asarray(x_new), np.asarray(x))
    assert not bool(info.finite) and not bool(info.converged)
    _, ok = run(jnp.ones((12, 2)))
    assert bool(ok.finite) and bool(ok.converged)
    with pytest.raises(ValueError, match="reference"):
        ot_correct(key, x, ref, ONE, ZERO, OTCorrection())


@pytest.mark.parametrize(
    "kwargs, error, field",
    [
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"epsilon": -1.0}, ValueError, "epsilon"),
        ({"epsilon": "0.1"}, TypeError, "epsilon"),
        ({"weight": 1.5}, ValueError, "weight"),
        ({"weight": -0.1}, ValueError, "weight"),
        ({"threshold": 0.0}, ValueError, "threshold"),
        ({"solver": "exact"}, ValueError, "solver"),
        ({"weight_schedule": "cosine"}, ValueError, "weight_schedule"),
        ({"relative_epsilon": "yes"}, TypeError, "relative_epsilon"),
        ({"memory_limit_ot_mb": 0}, ValueError, "memory_limit_ot_mb"),
        ({"max_iterations": 0}, ValueError, "max_iterations"),
        ({"num_projections": 0}, ValueError, "num_projections"),
    ],
)
def test_bad_config_names_the_field(kwargs, error, field):
    with pytest.raises(error, match=field):
        OTCorrection(**kwargs)


def test_bad_arrays_name_the_field(key):
    x, ref, cfg = jnp.zeros((8, 3)), jnp.ones((6, 3)), OTCorrection()
    with pytest.raises(ValueError, match="reference"):
        ot_correct(key, x, jnp.ones((6, 4)), ONE, ZERO, cfg)
    with pytest.raises(TypeError, match="x must be a floating"):
        ot_correct(key, jnp.zeros((8, 3), jnp.int32), ref, ONE, ZERO, cfg)
    with pytest.raises(TypeError, match="reference must be a floating"):
        ot_correct(key, x, jnp.ones((6, 3), jnp.int32), ONE, ZERO, cfg)
    with pytest.raises(ValueError, match="sigma"):
        ot_correct(key, x, ref, ONE, -0.5, cfg)
    with pytest.raises(ValueError, match="alpha"):
        ot_correct(key, x, ref, jnp.ones(2), ZERO, cfg)
    with pytest.raises(TypeError, match="key"):
        ot_correct(0, x, ref, ONE, ZERO, cfg)


@pytest.mark.parametrize(
    "kernel, relative, epsilon, atol",
    [
        (KernelConfig(solver_type="direct"), False, 0.4, 1e-4),
        (KernelConfig(solver_type="direct"), True, 0.5, 1e-4),
        # every point a landmark: Nystrom is the kernel to ~2e-6 absolute, so epsilon is
        # large enough that no row's entries are all that small
        (KernelConfig(solver_type="nystrom", rank=70), False, 2.0, 1e-3),
    ],
)
def test_kernel_operator_map_matches_pot(kernel, relative, epsilon, atol):
    kx, ky = jax.random.split(jax.random.key(3))
    x = 0.5 * jax.random.normal(kx, (40, 2))
    ref = 0.7 * jax.random.normal(ky, (30, 2)) + jnp.array([0.5, -0.25])
    cfg = OTCorrection(
        epsilon=epsilon,
        relative_epsilon=relative,
        threshold=1e-5,
        max_iterations=5000,
        kernel=kernel,
    )
    mapped, info = ot_correct(jax.random.key(0), x, ref, ONE, ZERO, cfg)
    expected, reg = _pot_map(x, ref, cfg.epsilon, relative)
    assert info.solver == kernel.solver_type and bool(info.converged)
    assert float(info.epsilon) == pytest.approx(reg, rel=1e-5)  # the exact mean cost
    np.testing.assert_allclose(np.asarray(mapped), expected, atol=atol)


def test_random_feature_map_is_the_same_kernels_map():
    """RFF approximates this kernel: mean map error well below a wrong bandwidth's.

    Positive features' relative variance grows like ``exp(8 <x, y> / epsilon)``
    (:mod:`jaxdiff.ot.kernel_ops.rff`), so single rows stay noisy at 20,000 features;
    the original's bandwidth, ``sqrt(d)`` off (spec atlas section 2.3), moves every row.
    """
    kx, ky = jax.random.split(jax.random.key(3))
    x = 0.5 * jax.random.normal(kx, (40, 2))
    ref = 0.7 * jax.random.normal(ky, (30, 2)) + jnp.array([0.5, -0.25])
    expected, _ = _pot_map(x, ref, 2.0, False)
    wrong, _ = _pot_map(x, ref, 2.0 * 2, False)  # epsilon of a bandwidth sqrt(2) off
    kernel = KernelConfig(solver_type="rff", num_features=20000)
    cfg = OTCorrection(epsilon=2.0, threshold=1e-5, max_iterations=5000, kernel=kernel)
    errors = []
    for seed in range(3):
        mapped, info = ot_correct(jax.random.key(seed), x, ref, ONE, ZERO, cfg)
        assert bool(info.converged)
        errors.append(np.mean(np.abs(np.asarray(mapped) - expected)))
    assert np.mean(errors) < 0.3 * np.mean(np.abs(wrong - expected)), (errors, wrong)


def test_kernel_fft_is_refused_and_the_budget_names_the_field():
    with pytest.raises(ValueError, match="solver_type='fft' cannot serve"):
        OTCorrection(kernel=KernelConfig(solver_type="fft"))
    with pytest.raises(TypeError, match="kernel must be a jaxdiff.ot.KernelConfig"):
        OTCorrection(kernel="rff")
    tiny = OTCorrection(kernel=KernelConfig(solver_type="direct"), memory_limit_ot_mb=0.01)
    with pytest.raises(ValueError, match=r"memory_limit_ot_mb=0.01 .*kernel.solver_type='direct'"):
        choose_solver(4096, 4096, 64, tiny)
    rff = OTCorrection(kernel=KernelConfig(solver_type="rff", num_features=64))
    assert choose_solver(4096, 4096, 64, rff) == "rff"


def test_max_marginal_error_refuses_a_poor_plan(key):
    x = jax.random.normal(jax.random.key(1), (64, 2))
    ref = 2.0 + jax.random.normal(jax.random.key(2), (64, 2))
    loose = OTCorrection(epsilon=0.01, max_iterations=3, threshold=1e-6)
    moved, info = ot_correct(key, x, ref, ONE, ZERO, loose)
    assert not bool(info.converged) and float(jnp.max(jnp.abs(moved - x))) > 0.5
    strict = loose.replace(max_marginal_error=1e-3)
    kept, info = ot_correct(key, x, ref, ONE, ZERO, strict)
    assert not bool(info.converged) and float(info.marginal_error) > 1e-3
    np.testing.assert_array_equal(np.asarray(kept), np.asarray(x))
