"""RichardsonFlow on Gaussian data, whose probability-flow map is known in closed form."""

import jax
import numpy as np
import pytest

from jaxdiff.samplers.driver import sample
from jaxdiff.samplers.probability_flow import ProbabilityFlow
from jaxdiff.schedules.continuous import make_schedule
from jaxdiff.schedules.discrete import DiscreteSchedule
from jaxdiff.schrodinger.richardson import RichardsonFlow
from tests.schrodinger.gaussian import gaussian_eps_model, pf_map

MU, STD = 0.7, 0.5
T_MIN = 1e-3
STEPS = [8, 16, 32, 64]
NOISE = jax.random.normal(jax.random.key(3), (128, 2))
SCHEDS = {name: make_schedule(name) for name in ("linear", "cosine")}
MODELS = {name: gaussian_eps_model(sched, MU, STD) for name, sched in SCHEDS.items()}


def rms_error(method, name):
    out = sample(jax.random.key(0), method, SCHEDS[name], MODELS[name], NOISE)
    x1 = NOISE * SCHEDS[name].prior_std
    diff = np.asarray(out.samples, np.float64) - np.asarray(
        pf_map(SCHEDS[name], MU, STD, x1, T_MIN)
    )
    return float(np.sqrt(np.mean(diff**2)))


def fitted_order(errors):
    """Least-squares order over N = 16, 32, 64 (N = 8 is not yet asymptotic for Euler)."""
    return -np.polyfit(np.log(STEPS[1:]), np.log(errors[1:]), 1)[0]


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_extrapolation_raises_the_order_from_one_to_two(name):
    # Measured RMS error to the exact map (256 values, float32), N = 8, 16, 32, 64:
    # linear: Euler 0.0280 0.0173 0.0095 0.0050 (order 0.90), Richardson 0.0116 0.0024
    # 5.4e-4 1.3e-4 (2.11); cosine: Euler 0.0513 0.0263 0.0133 0.0067 (0.98), Richardson
    # 2.9e-3 6.7e-4 1.6e-4 3.9e-5 (2.05). The same grid 1 -> T_MIN for both.
    euler = ProbabilityFlow(solver="euler", t_min=T_MIN)
    euler = [rms_error(euler.replace(num_steps=n), name) for n in STEPS]
    rich = [rms_error(RichardsonFlow(num_steps=n, t_min=T_MIN), name) for n in STEPS]
    assert 0.8 < fitted_order(euler) < 1.2, euler
    assert fitted_order(rich) > 1.8, rich
    assert rich[-1] < euler[-1] / 10  # at equal N; also at equal NFE (Euler with 2N steps):
    assert rich[-2] < euler[-1] / 5


def test_without_extrapolation_it_is_euler_with_twice_the_steps():
    sched, model = SCHEDS["linear"], MODELS["linear"]
    key = jax.random.key(0)
    halves = sample(key, RichardsonFlow(num_steps=8, extrapolate=False), sched, model, NOISE)
    euler = sample(key, ProbabilityFlow(num_steps=16, solver="euler"), sched, model, NOISE)
    # same grid (t_mid are the odd points of the 2N-step grid), same arithmetic
    np.testing.assert_allclose(halves.samples, euler.samples, rtol=1e-6, atol=1e-7)
    assert halves.nfe == euler.nfe == 16
    assert np.all(np.asarray(halves.state.num_extrapolated) == 0)
    assert np.all(np.asarray(halves.state.error) > 0)


def reference(sched, noise, n, tol):
    """float64 NumPy re-implementation, sample by sample (an independent oracle).

    Returns the final states ``[B, D]`` and the per-sample estimates ``e`` ``[N, B]`` and
    extrapolation choices ``[N, B]``.
    """
    ts = np.linspace(1.0, T_MIN, 2 * n + 1)
    x = np.asarray(noise, np.float64) * float(sched.prior_std)

    def d(x, t):
        a, s = float(sched.alpha(t)), float(sched.sigma(t))
        eps = s * (x - a * MU) / (a**2 * STD**2 + s**2)
        return float(sched.f(t)) * x + 0.5 * float(sched.g2(t)) / s * eps

    errors, used = [], []
    for t_c, t_m, t_n in zip(ts[:-1:2], ts[1::2], ts[2::2], strict=True):
        d_a = d(x, t_c)
        x_h, x_m = x + (t_n - t_c) * d_a, x + (t_m - t_c) * d_a
        x_hh = x_m + (t_n - t_m) * d(x_m, t_m)
        e = np.sqrt(np.mean((x_hh - x_h) ** 2, axis=1))
        x = np.where((e >= tol)[:, None], 2 * x_hh - x_h, x_hh)
        errors.append(e)
        used.append(e >= tol)
    return x, np.array(errors), np.array(used)


@pytest.mark.usefixtures("enable_x64")  # float64 states: e = |x_hh - x_h| without cancellation
def test_selective_updates_match_the_reference_and_keep_nfe_static():
    sched = make_schedule("linear")  # float64 parameters
    model = gaussian_eps_model(sched, MU, STD)
    noise = np.asarray(NOISE[:32], np.float64)
    n, batch = 8, noise.shape[0]
    _, errors, _ = reference(sched, noise, n, 0.0)
    middle = float(np.median(errors))
    counts = {}
    for tol in (0.0, middle, 1e9):
        out = sample(jax.random.key(0), RichardsonFlow(num_steps=n, tol=tol), sched, model, noise)
        x, errors, used = reference(sched, noise, n, tol)
        # the method's grid and coefficients are float32: every estimate must sit well away
        # from tol for the choices to be comparable (a guard on the test itself)
        assert tol == 0.0 or np.min(np.abs(errors - tol)) > 1e-4 * tol
        assert out.nfe == 2 * n
        assert out.state.error.shape == out.state.num_extrapolated.shape == (n,)
        np.testing.assert_array_equal(out.state.num_extrapolated, used.sum(axis=1))
        np.testing.assert_allclose(out.state.error, errors.mean(axis=1), rtol=1e-5)
        np.testing.assert_allclose(out.samples, x, rtol=1e-5, atol=1e-7)
        counts[tol] = np.asarray(out.state.num_extrapolated)
    assert np.all(counts[0.0] == batch) and np.all(counts[1e9] == 0)
    assert 0 < counts[middle].sum() < n * batch
    off = RichardsonFlow(num_steps=n, extrapolate=False)
    off = sample(jax.random.key(0), off, sched, model, noise)
    huge = sample(jax.random.key(0), RichardsonFlow(num_steps=n, tol=1e9), sched, model, noise)
    np.testing.assert_array_equal(huge.samples, off.samples)


def test_tol_is_traced_one_compile_under_jit():
    sched, model = SCHEDS["cosine"], MODELS["cosine"]
    fn = jax.jit(lambda m: sample(jax.random.key(0), m, sched, model, NOISE))
    outs = [fn(RichardsonFlow(num_steps=6, tol=tol)) for tol in (0.0, 3e-3, float("inf"))]
    assert fn._cache_size() == 1
    totals = [int(o.state.num_extrapolated.sum()) for o in outs]
    assert totals[0] == 6 * NOISE.shape[0] > totals[1] > totals[2] == 0, totals
    assert not np.allclose(outs[0].samples, outs[2].samples)


def test_denoise_final_adds_one_call_and_returns_tweedie():
    sched, model = SCHEDS["linear"], MODELS["linear"]
    plain = sample(jax.random.key(0), RichardsonFlow(num_steps=5), sched, model, NOISE)
    method = RichardsonFlow(num_steps=5, denoise_final=True)
    out = sample(jax.random.key(0), method, sched, model, NOISE)
    assert out.nfe == 11
    t = np.full(NOISE.shape[0], T_MIN, np.float32)
    a, s = float(sched.alpha(T_MIN)), float(sched.sigma(T_MIN))
    x0 = (plain.samples - s * model(plain.samples, t)) / a  # Tweedie from the exact eps
    np.testing.assert_allclose(out.samples, x0, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.state.error, plain.state.error)
    np.testing.assert_array_equal(out.state.num_extrapolated, plain.state.num_extrapolated)


@pytest.mark.parametrize(
    "kwargs,error,field",
    [
        ({"tol": -0.1}, ValueError, "tol"),
        ({"tol": float("nan")}, ValueError, "tol"),
        ({"tol": "0.1"}, TypeError, "tol"),
        ({"extrapolate": "yes"}, TypeError, "extrapolate"),
        ({"num_steps": 0}, ValueError, "num_steps"),
        ({"t_min": 1.5}, ValueError, "t_min"),
        ({"prediction_type": "epsilonn"}, ValueError, "prediction_type"),
    ],
)
def test_bad_fields_are_named(kwargs, error, field):
    with pytest.raises(error, match=field):
        RichardsonFlow(**kwargs)


def test_discrete_schedule_is_refused():
    with pytest.raises(TypeError, match="ContinuousSchedule"):
        sample(
            jax.random.key(0),
            RichardsonFlow(num_steps=4),
            DiscreteSchedule.create("linear"),
            MODELS["linear"],
            NOISE,
        )
