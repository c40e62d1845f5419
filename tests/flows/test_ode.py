"""Fixed-step flow ODE methods: empirical orders, closed-form Gaussian flow, round trip, CFG.

Oracles: ``dx/dt = A x`` has the flow ``expm(A (t - s))``; the independent path between
``N(m0, S0)`` data (``t = 0``) and ``N(0, I)`` noise (``t = 1``) has the exact marginal
velocity ``v(x, t) = -m0 + C_t S_t^{-1} (x - (1 - t) m0)`` with ``S_t = (1 - t)^2 S0 + t^2 I``
and ``C_t = t I - (1 - t) S0 = S_t' / 2``; all commute with ``S0``, so the flow map is
``x_t = mu_t + S_t^{1/2} S_s^{-1/2} (x_s - mu_s)``, ``mu_t = (1 - t) m0``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy.integrate import quad

from jaxdiff.flows.ode import TABLEAUX, ButcherTableau, FlowODE
from jaxdiff.samplers import Euler, sample
from jaxdiff.schedules.flow import FlowSchedule
from jaxdiff.train.objectives import FlowMatchingObjective

ORDERS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
UNIT = FlowSchedule.create(num_train_timesteps=1)  # the model is told t itself

A = np.array([[-0.5, 2.0], [-2.0, -0.5]])
M0 = np.array([1.0, -0.5, 0.25])
S0 = np.array([[0.5, 0.3, 0.0], [0.3, 1.5, -0.2], [0.0, -0.2, 0.8]])
LAM, U = np.linalg.eigh(S0)


def linear_model(x, t, context=None):
    return x @ jnp.asarray(A.T, x.dtype)


def gaussian_velocity(x, t, context=None):
    """Exact marginal velocity of the Gaussian-to-Gaussian independent path (``t`` [B])."""
    t = t.astype(x.dtype)[:, None]
    m0, lam, u = (jnp.asarray(a, x.dtype) for a in (M0, LAM, U))
    y = (x - (1.0 - t) * m0) @ u
    gain = (t - (1.0 - t) * lam) / ((1.0 - t) ** 2 * lam + t**2)
    return -m0 + (y * gain) @ u.T


def gaussian_flow_map(x, s, t):
    """Closed-form flow of :func:`gaussian_velocity` from time ``s`` to ``t`` (float64)."""
    sd = lambda r: np.sqrt((1 - r) ** 2 * LAM + r**2)  # noqa: E731
    y = (np.asarray(x, np.float64) - (1 - s) * M0) @ U
    return (1 - t) * M0 + (y * (sd(t) / sd(s))) @ U.T


def _slope(ns, errors):
    """Empirical order: minus the log-log slope of the error against the step count."""
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


def _run(method, model, x, schedule=UNIT, **kw):
    out = sample(jax.random.key(0), method, schedule, model, jnp.asarray(x), **kw)
    assert out.nfe == method.num_model_calls == method.num_steps * method.tableau.num_stages
    return np.asarray(out.samples, np.float64)


def joint_model(x, t, context=None):
    """Both oracles in one run: columns 0-1 follow ``A x``, columns 2-4 the Gaussian flow.

    Runge-Kutta methods act componentwise on decoupled systems, so one run gives both
    errors (and half the compiles).
    """
    return jnp.concatenate([linear_model(x[:, :2], t), gaussian_velocity(x[:, 2:], t)], axis=1)


# Orders on the Gaussian flow. Each eigen-coordinate solves y' = g(t) y with g = q'/(2q), q(t)
# the quadratic (1 - t)^2 lam + t^2 (Runge-Kutta steps commute with subtracting the mean mu_t,
# which is linear in t). The explicit midpoint rule's h^3 local error term
# (g''/24 + g^3/6 + g g'/4) y vanishes identically for such g: midpoint is of order 3 here.
# A round trip adds the local errors of steps +h and -h: for even p their h^(p+1) terms cancel
# and the round trip converges at order p + 1 (Heun 3, RK4 5); for odd p they add.
GAUSS_ORDERS = {"euler": 1, "midpoint": 3, "heun": 2, "rk4": 4}
ROUND_TRIP_ORDERS = {"euler": 1, "midpoint": 3, "heun": 3, "rk4": 5}
# powers of two: the grid times are exact in the model's float32 time input
STEPS = {
    "euler": (32, 64, 128),
    "midpoint": (8, 16, 32),
    "heun": (32, 64, 128),
    "rk4": (32, 64, 128),
}


@pytest.mark.parametrize("solver", list(ORDERS))
def test_orders_round_trip_and_flow_maps(enable_x64, solver):
    """Empirical order of each method in both directions on ``dx/dt = A x`` (against expm)
    and on the Gaussian flow (against its closed-form flow map), and the round trip
    x -> z -> x (invert, then generate) back to the data."""
    rng = np.random.default_rng(1)
    data = np.concatenate(
        [rng.normal(size=(4, 2)), M0 + rng.normal(size=(4, 3)) @ np.linalg.cholesky(S0).T], 1
    )
    noise = rng.normal(size=(4, 5))
    exact = {
        "linear generate": noise[:, :2] @ scipy.linalg.expm(-A).T,
        "linear invert": data[:, :2] @ scipy.linalg.expm(A).T,
        "gaussian generate": gaussian_flow_map(noise[:, 2:], 1.0, 0.0),
        "gaussian invert": gaussian_flow_map(data[:, 2:], 0.0, 1.0),
        "gaussian round trip": data[:, 2:],
    }
    errors = {name: [] for name in exact}
    for n in STEPS[solver]:
        z = _run(FlowODE(solver, n, "invert"), joint_model, data)
        x = _run(FlowODE(solver, n, "generate"), joint_model, np.concatenate([noise, z]))
        got = {
            "linear generate": x[:4, :2],
            "linear invert": z[:, :2],
            "gaussian generate": x[:4, 2:],
            "gaussian invert": z[:, 2:],
            "gaussian round trip": x[4:, 2:],
        }
        for name, value in got.items():
            errors[name].append(np.abs(value - exact[name]).max())
    linear, gaussian = ORDERS[solver], GAUSS_ORDERS[solver]
    orders = (linear, linear, gaussian, gaussian, ROUND_TRIP_ORDERS[solver])
    expected = dict(zip(exact, orders, strict=True))
    for name, errs in errors.items():
        order = _slope(STEPS[solver], errs)
        assert abs(order - expected[name]) < 0.25, (name, order, errs)
    bound = {"euler": 0.05, "midpoint": 3e-5, "heun": 3e-6, "rk4": 1e-10}[solver]
    assert errors["gaussian round trip"][-1] < bound, errors


def test_two_stage_methods_are_distinct_on_a_time_dependent_flow():
    """Midpoint and Heun coincide on autonomous linear ODEs, not on the Gaussian flow."""
    noise = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    mid = _run(FlowODE("midpoint", 4), gaussian_velocity, noise)
    heun = _run(FlowODE("heun", 4), gaussian_velocity, noise)
    assert np.abs(mid - heun).max() > 1e-3


def test_plan_rows_follow_the_tableau():
    """RK4 on a user grid: 4 rows per step at t_i + c_j h_i, times T; weights a_{j+1} then b."""
    times = np.array([1.0, 0.7, 0.2, 0.0])
    sched = FlowSchedule.create(num_train_timesteps=1000)
    method = FlowODE("rk4", times=times)
    plan = method.plan(sched)
    h = np.diff(times)
    expected = (times[:-1, None] + h[:, None] * np.array([0, 0.5, 0.5, 1])).reshape(-1) * 1000
    assert method.num_steps == 3 and plan.num_model_calls == 12
    np.testing.assert_allclose(np.asarray(plan.timesteps), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(plan.steps["h"]), np.repeat(h, 4), rtol=1e-6)
    w = np.asarray(plan.steps["weights"])[:4]
    np.testing.assert_allclose(
        w, [[0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0], [1 / 6, 1 / 3, 1 / 3, 1 / 6]]
    )
    assert np.asarray(plan.steps["last"]).tolist() == [False, False, False, True] * 3


@pytest.mark.parametrize("direction", ["generate", "invert"])
def test_shifted_grid(direction):
    sched = FlowSchedule.create(num_train_timesteps=1, shift=3.0)
    method = FlowODE("euler", 4, direction, grid="shifted")
    u = np.linspace(1, 0, 5) if direction == "generate" else np.linspace(0, 1, 5)
    np.testing.assert_allclose(
        np.asarray(method.time_grid(sched)), 3 * u / (1 + 2 * u), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(
        np.asarray(method.plan(sched).timesteps), (3 * u / (1 + 2 * u))[:-1], rtol=1e-6
    )


def test_user_grid_converges_to_the_flow_map(enable_x64):
    """RK4 on a non-uniform user grid over part of the interval (0.8 -> 0) meets the flow map."""
    times = 0.4 * (1 + np.cos(np.linspace(np.arccos(1.0), np.pi, 9)))  # 0.8 ... 0
    x = np.random.default_rng(3).normal(size=(4, 3))
    got = _run(FlowODE("rk4", times=times), gaussian_velocity, x)
    np.testing.assert_allclose(got, gaussian_flow_map(x, 0.8, 0.0), atol=2e-4)


def test_time_scale_matches_flow_matching_objective():
    """The ODE's velocity is FlowMatchingObjective's: same time (t T), direction and target.

    A model trained with ``time_scale=T`` and integrated on a FlowSchedule with
    ``num_train_timesteps=T`` follows the flow of the unit-time model; and the exact velocity
    attains the objective's minimum, the mean conditional variance of ``x_1 - x_0`` given
    ``x_t``, which is ``lam / ((1 - t)^2 lam + t^2)`` per eigen-direction of ``S0``.
    """
    T = 1000
    scaled = lambda x, t, c=None: gaussian_velocity(x, t / T)  # noqa: E731
    noise = np.random.default_rng(4).normal(size=(4, 3)).astype(np.float32)
    got = _run(FlowODE("rk4", 8), scaled, noise, FlowSchedule.create(num_train_timesteps=T))
    np.testing.assert_allclose(got, _run(FlowODE("rk4", 8), gaussian_velocity, noise), atol=1e-5)

    data = M0 + np.random.default_rng(5).normal(size=(4096, 3)) @ np.linalg.cholesky(S0).T
    objective = FlowMatchingObjective.create(time_scale=T)
    apply_fn = lambda p, x, t, c: scaled(x, t)  # noqa: E731
    loss_fn = jax.jit(objective.per_example_loss, static_argnums=2)
    loss = loss_fn(jax.random.key(6), None, apply_fn, data.astype(np.float32))
    minimum = np.mean(
        [quad(lambda t, lam=lam: lam / ((1 - t) ** 2 * lam + t**2), 0, 1)[0] for lam in LAM]
    )
    assert abs(float(jnp.mean(loss)) / minimum - 1) < 0.03, (float(jnp.mean(loss)), minimum)


def test_euler_on_the_schedule_grid_equals_the_flow_euler_sampler():
    """FlowODE('euler') on diffusers' grid is jaxdiff.samplers.Euler on a FlowSchedule."""
    sched = FlowSchedule.create(num_train_timesteps=1000, shift=3.0)
    model = lambda x, t, c=None: gaussian_velocity(x, t / 1000)  # noqa: E731
    noise = np.random.default_rng(7).normal(size=(4, 3)).astype(np.float32)
    times = np.append(np.asarray(sched.inference_sigmas(6)), 0.0)
    ours = _run(FlowODE("euler", times=times), model, noise, sched)
    ref = sample(
        jax.random.key(0),
        Euler(num_inference_steps=6, prediction_type="flow"),
        sched,
        model,
        jnp.asarray(noise),
    )
    np.testing.assert_allclose(ours, np.asarray(ref.samples), rtol=1e-6, atol=1e-6)


def _context_model(x, t, context):
    """A velocity whose drift depends on the context: v = A x + context (+ t)."""
    return x @ jnp.asarray(A.T, x.dtype) + context + t[:, None]


@pytest.mark.parametrize("direction", ["generate", "invert"])
def test_cfg_guides_the_velocity(direction):
    rng = np.random.default_rng(8)
    x, cond, uncond = (jnp.asarray(rng.normal(size=(3, 2)), jnp.float32) for _ in range(3))
    method = FlowODE("heun", 6, direction)
    w = 3.5
    direct = lambda xx, t, c=None: _context_model(xx, t, uncond + w * (cond - uncond))  # noqa: E731
    got = _run(method, _context_model, x, context=cond, uncond_context=uncond, guidance_scale=w)
    np.testing.assert_allclose(got, _run(method, direct, x), rtol=1e-5, atol=1e-5)
    # w = 1 is the conditional flow (one compile: w is traced); w != 1 moves away from it
    conditional = _run(method, _context_model, x, context=cond, uncond_context=uncond)
    np.testing.assert_allclose(
        conditional, _run(method, _context_model, x, context=cond), atol=1e-5
    )
    assert np.abs(got - conditional).max() > 1e-2


def test_custom_tableau_runs():
    """Ralston's second-order method, given as data, converges at order 2."""
    ralston = ButcherTableau("ralston", 2, (0.0, 2 / 3), ((0.0, 0.0), (2 / 3, 0.0)), (0.25, 0.75))
    x = np.random.default_rng(9).normal(size=(3, 2)).astype(np.float32)
    exact = x @ scipy.linalg.expm(-A).T
    errors = [np.abs(_run(FlowODE(ralston, n), linear_model, x) - exact).max() for n in (8, 16, 32)]
    assert abs(_slope((8, 16, 32), errors) - 2) < 0.2


def test_one_compile_across_grids_and_guidance():
    traces = []

    def model(x, t, context):
        traces.append(1)
        return _context_model(x, t, context)

    x = jnp.ones((2, 2))
    for times, w in (([1.0, 0.5, 0.0], 1.0), ([0.9, 0.3, 0.1], 2.0)):
        _run(FlowODE("midpoint", times=times), model, x, context=x, guidance_scale=w)
    assert len(traces) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"solver": "rk5"}, "solver"),
        ({"solver": 4}, "solver"),
        ({"direction": "forward"}, "direction"),
        ({"grid": "cosine"}, "grid"),
        ({"num_steps": 0}, "num_steps"),
        ({"num_steps": True}, "num_steps"),
        ({"num_steps": 2.0}, "num_steps"),
        ({"times": [1.0]}, "times"),
        ({"times": [[1.0, 0.0]]}, "times"),
        ({"times": [1.0, 0.5, 0.5, 0.0]}, "strictly decreasing"),
        ({"times": [0.0, 0.5, 1.0]}, "strictly decreasing"),
        ({"times": [1.0, 0.5, 0.0], "direction": "invert"}, "strictly increasing"),
        ({"times": [1.5, 0.5, 0.0]}, r"\[0, 1\]"),
        ({"times": jnp.array([1.0, -0.1])}, r"\[0, 1\]"),
        ({"times": [1.0, float("nan")]}, "times"),
        ({"times": ["1", "0"]}, "times"),
        ({"times": [1.0, 0.5, 0.0], "num_steps": 3}, "num_steps"),
        ({"times": [1.0, 0.0], "grid": "shifted"}, "not both"),
    ],
)
def test_bad_config_raises_naming_the_field(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        FlowODE(**kwargs)


@pytest.mark.parametrize(
    "args, match",
    [
        (("bad", 1, (0.0,), ((0.0,),), (0.5,)), "sum"),
        (("bad", 1, (0.0, 1.0), ((0.0, 1.0), (1.0, 0.0)), (0.5, 0.5)), "lower triangular"),
        (("bad", 1, (0.0, 0.5), ((0.0, 0.0), (1.0, 0.0)), (0.5, 0.5)), "row sums"),
        (("bad", 1, (0.0,), ((0.0, 0.0),), (1.0,)), "shape"),
        (("bad", 0, (0.0,), ((0.0,),), (1.0,)), "order"),
    ],
)
def test_bad_tableau_raises(args, match):
    with pytest.raises(ValueError, match=match):
        ButcherTableau(*args)


def test_needs_a_flow_schedule():
    from jaxdiff.schedules import DiscreteSchedule

    with pytest.raises(TypeError, match="FlowSchedule"):
        _run(FlowODE(), linear_model, jnp.ones((1, 2)), DiscreteSchedule.create("linear", 100))


def test_tableaux_have_their_stated_orders():
    """Order conditions up to p (HNW 1993, Table II.2.1, the trees up to order 4)."""
    for tab in TABLEAUX.values():
        b, c, a = np.array(tab.b), np.array(tab.c), np.array(tab.a)
        conditions = [b.sum() - 1, b @ c - 1 / 2, b @ c**2 - 1 / 3, b @ a @ c - 1 / 6]
        conditions += [b @ c**3 - 1 / 4, (b * c) @ a @ c - 1 / 8, b @ a @ c**2 - 1 / 12]
        conditions += [b @ a @ a @ c - 1 / 24]
        count = {1: 1, 2: 2, 3: 4, 4: 8}[tab.order]
        np.testing.assert_allclose(conditions[:count], 0, atol=1e-14, err_msg=tab.name)
        if tab.order < 4:  # and the next order fails (the stated order is the order)
            nxt = {1: 2, 2: 4}[tab.order]
            assert np.abs(conditions[count:nxt]).max() > 1e-3, tab.name
