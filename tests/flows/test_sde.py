"""FlowSDE: Euler-Maruyama keeps the Gaussian Schrödinger bridge's marginals, for any eps.

Oracle: the closed-form Gaussian Schrödinger bridge of ``dX = sigma dW`` between
``p_0 = N(m0, S0)`` (data, ``t = 0``) and ``p_1 = N(m1, S1)`` (source) (Bunne et al. 2023;
``bunne_bridge`` of ``tests/flows/test_paths.py``): the static bridge is the Gaussian
coupling with cross-covariance ``C = E[(x0 - m0)(x1 - m1)^T]`` and the SB path
``x_t = (1 - t) x0 + t x1 + gamma z``, ``gamma = sigma sqrt(t (1 - t))``, has the marginal
``N(mu_t, Sigma_t)``, ``mu_t = (1 - t) m0 + t m1``,
``Sigma_t = (1 - t)^2 S0 + t^2 S1 + t (1 - t) (C + C^T + sigma^2 I)``.

Exact velocity and score (derivation). ``(x0, x1, z)`` is jointly Gaussian, so the
conditional velocity ``u_t = x1 - x0 + gamma' z`` and ``x_t`` are jointly Gaussian and
``b(x, t) = E[u_t | x_t = x] = E u_t + Cov(u_t, x_t) Sigma_t^{-1} (x - mu_t)`` (Gaussian
conditioning), linear in ``x``, with ``E u_t = m1 - m0`` and

    K_t = Cov(u_t, x_t) = Cov(x1 - x0, (1 - t) x0 + t x1) + gamma gamma' I
        = (1 - t) (C^T - S0) + t (S1 - C) + sigma^2 (1 - 2 t) / 2 I

(``Cov(x1, x0) = C^T``; ``gamma gamma' = (gamma^2)' / 2``). ``K_t + K_t^T = Sigma_t'``, the
covariance equation of the linear ODE, as it must. The score of ``N(mu_t, Sigma_t)`` is
``s(x, t) = -Sigma_t^{-1} (x - mu_t)``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.flows import FlowODE, FlowSDE
from jaxdiff.samplers import sample
from jaxdiff.schedules.flow import FlowSchedule
from tests.flows.test_paths import bunne_bridge

UNIT = FlowSchedule.create(num_train_timesteps=1)  # the model is told t itself
SIGMA = 1.0
M0, M1 = np.array([1.0, -1.0]), np.array([-0.5, 2.0])
S0 = np.array([[1.0, 0.3], [0.3, 0.5]])
S1 = np.array([[2.0, -0.4], [-0.4, 0.8]])
CROSS, COV_T = bunne_bridge(S0, S1, SIGMA)
NUM = 20_000


def mean_t(t):
    return (1 - t) * M0 + t * M1


def bridge_model(x, t, context=None):
    """Exact ``[b, s]`` of the Gaussian SB path (module docstring), ``x`` ``[B, 2]``, ``t`` [B]."""
    t = t.astype(x.dtype)[:, None, None]
    s0, s1, c, m0, m1 = (jnp.asarray(a, x.dtype) for a in (S0, S1, CROSS, M0, M1))
    eye = jnp.eye(2, dtype=x.dtype)
    cov = (1 - t) ** 2 * s0 + t**2 * s1 + t * (1 - t) * (c + c.T + SIGMA**2 * eye)
    k = (1 - t) * (c.T - s0) + t * (s1 - c) + 0.5 * SIGMA**2 * (1 - 2 * t) * eye
    w = jnp.linalg.solve(cov, (x - (1 - t[:, 0]) * m0 - t[:, 0] * m1)[..., None])[..., 0]
    return jnp.concatenate([(m1 - m0) + jnp.einsum("bij,bj->bi", k, w), -w], axis=-1)


def velocity_model(x, t, context=None):
    """The velocity half of :func:`bridge_model` (a FlowODE model)."""
    return bridge_model(x, t)[..., :2]


def endpoint(key, t_start, num=NUM):
    """``num`` exact draws of ``p_t`` at ``t_start`` in ``{0, 1}``, float32."""
    mean, cov = (M1, S1) if t_start == 1 else (M0, S0)
    return jax.random.multivariate_normal(
        key, jnp.asarray(mean, jnp.float32), jnp.asarray(cov, jnp.float32), (num,)
    )


def assert_marginal(x, t, bias):
    """Sample mean and covariance of ``x`` ``[n, 2]`` within 5 standard errors + ``bias``.

    Standard errors of ``N(mu, Sigma)`` draws: ``sqrt(Sigma_ii / n)`` for a mean,
    ``sqrt((Sigma_ii Sigma_jj + Sigma_ij^2) / n)`` for a covariance entry (Anderson 2003,
    Thm. 3.4.4); ``bias`` allows for the Euler-Maruyama ``O(h)`` error.
    """
    x, cov = np.asarray(x, np.float64), COV_T(t)
    n, var = x.shape[0], np.diag(cov)
    mean_se = np.sqrt(var / n)
    cov_se = np.sqrt((np.outer(var, var) + cov**2) / n)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean_t(t)), 5 * mean_se + bias)
    np.testing.assert_array_less(np.abs(np.cov(x.T) - cov), 5 * cov_se + bias)


# 256 uniform steps: the exact Euler-Maruyama covariance recursion of this chain is off by
# at most 0.0026 at t = 0 (eps = 1), below BIAS; 5 standard errors at n = 20000 are 0.02-0.06.
STEPS, BIAS = 256, 0.005


@pytest.mark.parametrize(
    "schedule, eps, direction",
    [
        ("constant", 0.0, "generate"),
        ("constant", 0.5, "generate"),
        ("constant", 1.0, "generate"),
        ("bridge", 2.0, "generate"),
        ("constant", 1.0, "invert"),
    ],
)
def test_sde_keeps_the_bridge_marginals(schedule, eps, direction):
    method = FlowSDE(
        diffusion=eps, diffusion_schedule=schedule, num_steps=STEPS, direction=direction
    )
    t_start = 1.0 if direction == "generate" else 0.0
    x = endpoint(jax.random.key(1), t_start)
    out = sample(jax.random.key(2), method, UNIT, bridge_model, x, return_trajectory=True)
    assert out.nfe == method.num_model_calls == STEPS and bool(out.all_finite)
    grid = np.asarray(method.time_grid(UNIT), np.float64)
    for row in (63, 127, 191, 255):  # trajectory[k] is the state at t_{k+1}
        assert_marginal(out.trajectory[row], grid[row + 1], BIAS)
    np.testing.assert_array_equal(out.samples, out.trajectory[-1])


def test_sde_on_a_user_grid_reaches_the_data_marginal():
    times = 1.0 - jnp.linspace(0.0, 1.0, 257) ** 2  # denser near t = 1
    method = FlowSDE(diffusion=0.5, times=times)
    assert method.num_steps == 256
    out = sample(jax.random.key(3), method, UNIT, bridge_model, endpoint(jax.random.key(4), 1))
    assert_marginal(out.samples, 0.0, BIAS)


def test_zero_diffusion_is_flow_ode_euler_exactly():
    x = endpoint(jax.random.key(5), 1, num=512)
    sde = sample(jax.random.key(6), FlowSDE(diffusion=0.0, num_steps=16), UNIT, bridge_model, x)
    ode = sample(jax.random.key(7), FlowODE(solver="euler", num_steps=16), UNIT, velocity_model, x)
    np.testing.assert_array_equal(sde.samples, ode.samples)
    # and eps > 0 draws noise from the key: different keys, different samples
    noisy = [
        sample(jax.random.key(k), FlowSDE(diffusion=0.5, num_steps=16), UNIT, bridge_model, x)
        for k in (6, 7)
    ]
    assert float(jnp.abs(noisy[0].samples - noisy[1].samples).min()) > 0


def test_per_example_keys_make_a_sample_independent_of_its_batch():
    x = endpoint(jax.random.key(8), 1, num=4)
    keys = jax.random.split(jax.random.key(9), 4)
    method = FlowSDE(diffusion=1.0, num_steps=8)
    full = sample(keys, method, UNIT, bridge_model, x).samples
    half = sample(keys[:2], method, UNIT, bridge_model, x[:2]).samples
    np.testing.assert_allclose(full[:2], half, rtol=1e-6, atol=1e-6)


def test_covariance_error_at_the_end_is_first_order_in_h():
    """``max |Cov(x_n) - S0|`` for n = 2..16 steps at eps = 1, 100000 samples.

    Measured: 0.39, 0.17, 0.084, 0.041 (the exact recursion of the chain gives 0.394, 0.174,
    0.084, 0.041), slope 1.07; Monte-Carlo standard error about 0.006.
    """
    x = endpoint(jax.random.key(10), 1, num=100_000)
    ns = np.array([2, 4, 8, 16])
    errors = []
    for n in ns:
        out = sample(
            jax.random.key(11), FlowSDE(diffusion=1.0, num_steps=int(n)), UNIT, bridge_model, x
        )
        errors.append(np.abs(np.cov(np.asarray(out.samples, np.float64).T) - S0).max())
    slope = -np.polyfit(np.log(ns), np.log(errors), 1)[0]
    assert np.all(np.diff(errors) < 0) and 0.85 < slope < 1.25, (errors, slope)


@pytest.mark.parametrize(
    "kwargs, error, field",
    [
        (dict(diffusion=-0.1), ValueError, "diffusion"),
        (dict(diffusion=float("nan")), ValueError, "diffusion"),
        (dict(diffusion="1"), TypeError, "diffusion"),
        (dict(diffusion_schedule="linear"), ValueError, "diffusion_schedule"),
        (dict(num_steps=0), ValueError, "num_steps"),
        (dict(direction="forward"), ValueError, "direction"),
        (dict(times=np.array([0.0, 0.5, 1.0])), ValueError, "times"),  # generate needs 1 -> 0
        (dict(times=np.array([1.0, 0.5, -0.1])), ValueError, "times"),
        (dict(times=np.array([1.0, 0.5, 0.0]), num_steps=3), ValueError, "num_steps"),
    ],
)
def test_bad_config_raises_naming_the_field(kwargs, error, field):
    with pytest.raises(error, match=field):
        FlowSDE(**kwargs)


def test_bad_model_output_and_schedule_raise():
    x = endpoint(jax.random.key(12), 1, num=4)
    with pytest.raises(ValueError, match="velocity then score"):
        sample(jax.random.key(0), FlowSDE(num_steps=2), UNIT, velocity_model, x)
    with pytest.raises(TypeError, match="schedule"):
        FlowSDE().plan(object())


def test_plan_diffusion_schedules_and_a_deterministic_last_step():
    grid = np.linspace(1.0, 0.0, 5)[:-1]
    for schedule, want in (("constant", np.full(4, 0.7)), ("bridge", 0.7 * grid * (1 - grid))):
        plan = FlowSDE(diffusion=0.7, diffusion_schedule=schedule, num_steps=4).plan(UNIT)
        np.testing.assert_allclose(plan.steps["eps"], np.append(want[:-1], 0.0), atol=1e-7)
        np.testing.assert_allclose(plan.steps["h"], -0.25)
        np.testing.assert_allclose(plan.timesteps, grid)
    # one step is the last step: no noise, no score term -- the ODE's Euler step
    x = endpoint(jax.random.key(13), 1, num=64)
    one = sample(jax.random.key(14), FlowSDE(diffusion=1.0, num_steps=1), UNIT, bridge_model, x)
    ode = FlowODE(solver="euler", num_steps=1)
    euler = sample(jax.random.key(14), ode, UNIT, velocity_model, x)
    np.testing.assert_array_equal(one.samples, euler.samples)
