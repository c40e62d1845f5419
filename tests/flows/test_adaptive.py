"""Adaptive Dopri5 (diffrax) on the closed-form Gaussian flow: accuracy, result codes, NFE."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from jaxdiff.flows.adaptive import RESULT_NAMES, AdaptiveODE, solve_adaptive
from jaxdiff.schedules import DiscreteSchedule
from jaxdiff.schedules.flow import FlowSchedule
from tests.flows.test_ode import M0, S0, A, _context_model, gaussian_flow_map, gaussian_velocity

UNIT = FlowSchedule.create(num_train_timesteps=1)


def _data(seed=0, n=4):
    return M0 + np.random.default_rng(seed).normal(size=(n, 3)) @ np.linalg.cholesky(S0).T


@pytest.mark.parametrize("direction", ["generate", "invert"])
def test_dopri5_matches_the_closed_form_flow_map(enable_x64, direction):
    x = np.random.default_rng(1).normal(size=(4, 3)) if direction == "generate" else _data()
    s, t = (1.0, 0.0) if direction == "generate" else (0.0, 1.0)
    exact = gaussian_flow_map(x, s, t)
    errors, steps = [], []
    for tol in (1e-4, 1e-7, 1e-10):
        method = AdaptiveODE(rtol=tol, atol=tol, direction=direction)
        out = solve_adaptive(method, UNIT, gaussian_velocity, x, debug=True)  # succeeds: no raise
        assert out.result == "successful" and bool(out.succeeded) and bool(out.all_finite)
        assert int(out.result_code) == 0 and out.message == ""
        errors.append(np.abs(np.asarray(out.samples) - exact).max())
        steps.append(int(out.num_steps))
    # the global error follows the local tolerance (within a factor: errors accumulate)
    assert errors[0] < 3e-3 and errors[1] < 3e-6 and errors[2] < 3e-9, errors
    assert errors[0] > 100 * errors[1] > 1e4 * errors[2], errors
    assert steps[0] < steps[1] < steps[2], steps


def test_partial_time_span(enable_x64):
    x = _data(2)
    out = solve_adaptive(
        AdaptiveODE(rtol=1e-9, atol=1e-9, t_start=0.2, t_end=0.7, direction="invert"),
        UNIT,
        gaussian_velocity,
        x,
    )
    np.testing.assert_allclose(out.samples, gaussian_flow_map(x, 0.2, 0.7), atol=1e-7)


def test_stats_equal_diffrax_and_nfe_is_the_model_call_count(enable_x64):
    """Steps as diffrax reports them for the same solve; nfe = the calls the model received."""
    x = np.random.default_rng(3).normal(size=(4, 3))
    calls = []

    def counted(x, t, context=None):
        jax.debug.callback(lambda: calls.append(1), ordered=True)
        return gaussian_velocity(x, t)

    out = solve_adaptive(AdaptiveODE(rtol=1e-6, atol=1e-6), UNIT, counted, x)
    jax.effects_barrier()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: gaussian_velocity(y, jnp.full((4,), t))),
        diffrax.Dopri5(),
        1.0,
        0.0,
        None,
        jnp.asarray(x),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6),
        max_steps=4096,
    )
    for field in ("num_steps", "num_accepted_steps", "num_rejected_steps"):
        assert int(getattr(out, field)) == int(sol.stats[field]), field
    np.testing.assert_allclose(out.samples, sol.ys[0], rtol=1e-12, atol=1e-12)
    assert int(out.nfe) == 1 + 6 * int(sol.stats["num_steps"]) == len(calls)


def test_nfe_bound_when_the_first_step_is_rejected():
    """A stiff start rejects diffrax's first step (|dt| = 0.01); each rejection re-evaluates
    the first stage, uncounted by the stats: nfe < calls <= nfe + num_rejected_steps.

    (dx/dt = 200 (x - cos t) is stable integrated from t = 1 down to 0.)"""
    calls = []

    def stiff(x, t, context=None):
        jax.debug.callback(lambda: calls.append(1), ordered=True)
        return 200.0 * (x - jnp.cos(t)[:, None])

    out = solve_adaptive(AdaptiveODE(rtol=1e-6, atol=1e-6), UNIT, stiff, jnp.full((2, 3), 100.0))
    jax.effects_barrier()
    assert out.result == "successful" and int(out.num_rejected_steps) > 0
    assert int(out.nfe) < len(calls) <= int(out.nfe) + int(out.num_rejected_steps)


def test_max_steps_failure_is_reported_and_debug_raises():
    method = AdaptiveODE(rtol=1e-8, atol=1e-8, max_steps=3)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(4, 3)), jnp.float32)
    out = solve_adaptive(method, UNIT, gaussian_velocity, x)
    assert out.result == "max_steps_reached" and not bool(out.succeeded)
    assert int(out.result_code) == RESULT_NAMES.index("max_steps_reached")
    assert int(out.num_steps) == 3 and "max_steps" in out.message
    with pytest.raises(RuntimeError, match="max_steps_reached.*3 steps.*max_steps=3"):
        solve_adaptive(method, UNIT, gaussian_velocity, x, debug=True)


def test_debug_reports_non_finite_samples():
    blow_up = lambda x, t, c=None: jnp.where(t[:, None] < 0.5, jnp.nan, -x)  # noqa: E731
    out = solve_adaptive(AdaptiveODE(max_steps=64), UNIT, blow_up, jnp.ones((2, 3)))
    assert not bool(out.succeeded) or not bool(out.all_finite)
    with pytest.raises((RuntimeError, FloatingPointError)):
        solve_adaptive(AdaptiveODE(max_steps=64), UNIT, blow_up, jnp.ones((2, 3)), debug=True)


def test_debug_under_jit_is_refused():
    f = jax.jit(
        lambda x: solve_adaptive(AdaptiveODE(), UNIT, gaussian_velocity, x, debug=True).samples
    )
    with pytest.raises(ValueError, match="debug=True"):
        f(jnp.ones((2, 3)))


def test_result_names_cover_diffrax_results():
    assert len(diffrax.RESULTS) == len(RESULT_NAMES)
    for name in RESULT_NAMES:
        assert isinstance(getattr(diffrax.RESULTS, name), diffrax.RESULTS)
    assert RESULT_NAMES[0] == "successful"


def test_cfg_guides_the_velocity(enable_x64):
    rng = np.random.default_rng(5)
    x, cond, uncond = (jnp.asarray(rng.normal(size=(3, 2))) for _ in range(3))
    w = 2.5
    direct = lambda xx, t, c=None: _context_model(xx, t, uncond + w * (cond - uncond))  # noqa: E731
    method = AdaptiveODE(rtol=1e-10, atol=1e-10, direction="invert")
    want = solve_adaptive(method, UNIT, direct, x)
    got = solve_adaptive(
        method, UNIT, _context_model, x, context=cond, uncond_context=uncond, guidance_scale=w
    )
    np.testing.assert_allclose(got.samples, want.samples, rtol=1e-8, atol=1e-8)
    # and the guided flow is that of the affine ODE x' = A x + g + t, g = u + w (c - u)
    # (scipy's RK45 at 1e-12 as the reference)
    g = np.asarray(uncond + w * (cond - uncond))
    for i in range(3):
        ref = solve_ivp(
            lambda t, y, i=i: A @ y + g[i] + t, (0.0, 1.0), np.asarray(x[i]), rtol=1e-12, atol=1e-12
        )
        np.testing.assert_allclose(got.samples[i], ref.y[:, -1], atol=1e-7)


def test_one_compile_across_tolerances_and_guidance():
    traces = []

    def model(x, t, context):
        traces.append(1)
        return _context_model(x, t, context)

    x = jnp.ones((2, 2))
    solve_adaptive(AdaptiveODE(rtol=1e-3, atol=1e-3), UNIT, model, x, context=x)
    traced = len(traces)  # diffrax traces the vector field a few times within one compile
    for tol, w in ((1e-5, 2.0), (1e-4, 3.0)):
        method = AdaptiveODE(rtol=tol, atol=tol * 10, t_start=0.9)
        solve_adaptive(method, UNIT, model, x, context=x, guidance_scale=w)
    assert len(traces) == traced


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rtol": 0.0}, "rtol"),
        ({"rtol": -1e-3}, "rtol"),
        ({"atol": 0.0}, "atol"),
        ({"atol": float("nan")}, "atol"),
        ({"rtol": "1e-3"}, "rtol"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"t_start": 1.5}, "t_start"),
        ({"t_end": -0.1}, "t_end"),
        ({"t_start": 0.5, "t_end": 0.5}, "t_start > t_end"),
        ({"t_start": 0.2, "t_end": 0.7}, "t_start > t_end"),
        ({"direction": "invert", "t_start": 0.9, "t_end": 0.1}, "t_start < t_end"),
        ({"direction": "backward"}, "direction"),
    ],
)
def test_bad_config_raises_naming_the_field(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        AdaptiveODE(**kwargs)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: solve_adaptive("dopri5", UNIT, gaussian_velocity, x), "AdaptiveODE"),
        (
            lambda x: solve_adaptive(
                AdaptiveODE(), DiscreteSchedule.create("linear", 10), gaussian_velocity, x
            ),
            "FlowSchedule",
        ),
        (lambda x: solve_adaptive(AdaptiveODE(), UNIT, "model", x), "model_fn"),
        (lambda x: solve_adaptive(AdaptiveODE(), UNIT, gaussian_velocity, x.astype(int)), "x"),
        (lambda x: solve_adaptive(AdaptiveODE(), UNIT, gaussian_velocity, x, debug=1), "debug"),
        (
            lambda x: solve_adaptive(AdaptiveODE(), UNIT, gaussian_velocity, x, guidance_scale="2"),
            "guidance_scale",
        ),
        (
            lambda x: solve_adaptive(AdaptiveODE(), UNIT, lambda x, t, c: x[:, :2], x),
            "shape",
        ),
    ],
)
def test_bad_call_raises(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(jnp.ones((2, 3)))
