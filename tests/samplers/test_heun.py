import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from diffusers.schedulers.scheduling_heun_discrete import betas_for_alpha_bar

from jaxdiff.samplers.driver import sample
from jaxdiff.samplers.heun import Heun
from jaxdiff.schedules.discrete import DiscreteSchedule
from jaxdiff.schedules.flow import FlowSchedule
from tests.oracles import MU, STD, gaussian_model, run_diffusers
from tests.schedules.test_flow import flow_gaussian_model, run_flow_diffusers

SHAPE = (4, 3, 5)
SD = {"beta_start": 0.00085, "beta_end": 0.012}


def _noise():
    return np.asarray(jax.random.normal(jax.random.key(1), SHAPE))


def _sd_schedule():
    return DiscreteSchedule.create("scaled_linear", **SD)


def _both(key, *, n=8, prediction_type="epsilon", beta_schedule="scaled_linear", **kw):
    if beta_schedule == "squaredcos_cap_v2":  # diffusers' float64 betas (ours are float32)
        sched = DiscreteSchedule.create(betas=betas_for_alpha_bar(1000).numpy())
    else:
        sched = DiscreteSchedule.create(beta_schedule, **SD)
    model = gaussian_model(sched.alphas_cumprod, prediction_type)
    ref = diffusers.HeunDiscreteScheduler(
        beta_schedule=beta_schedule, **SD, prediction_type=prediction_type, **kw
    )
    expected = run_diffusers(ref, model, _noise(), n)
    method = Heun(num_inference_steps=n, prediction_type=prediction_type, **kw)
    out = sample(key, method, sched, model, jnp.asarray(_noise()))
    assert out.nfe == 2 * n - 1 == len(ref.timesteps)
    return np.asarray(out.samples), expected


@pytest.mark.parametrize(
    "spacing, prediction_type",
    [
        ("linspace", "epsilon"),
        ("leading", "v_prediction"),
        ("trailing", "sample"),
        ("trailing", "v_prediction"),
    ],
)
def test_heun_matches_diffusers(key, spacing, prediction_type):
    got, expected = _both(key, prediction_type=prediction_type, timestep_spacing=spacing)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kw",
    [
        {"use_karras_sigmas": True},
        {
            "use_karras_sigmas": True,
            "timestep_spacing": "trailing",
            "prediction_type": "v_prediction",
        },
        {"use_karras_sigmas": True, "beta_schedule": "squaredcos_cap_v2"},
        {"clip_sample": True, "clip_sample_range": 0.8, "prediction_type": "v_prediction"},
    ],
)
def test_heun_options_match_diffusers(key, kw):
    got, expected = _both(key, **kw)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", [{}, {"use_karras_sigmas": True, "timestep_spacing": "leading"}])
def test_plan_rows_interleave_stages(kw):
    # 2n - 1 rows: t0, t1, t1, ..., t_{n-1}, t_{n-1}; stages alternate, ending with a first
    # stage into sigma = 0; a second stage reuses the dt of its first stage.
    sched = _sd_schedule()
    plan = Heun(num_inference_steps=6, **kw).plan(sched)
    ref = diffusers.HeunDiscreteScheduler(beta_schedule="scaled_linear", **SD, **kw)
    ref.set_timesteps(6)
    assert plan.num_model_calls == 11
    np.testing.assert_allclose(plan.timesteps, ref.timesteps.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(plan.steps["sigma"], ref.sigmas[:-1].numpy(), rtol=1e-5)
    first = np.asarray(plan.steps["first"])
    assert first.tolist() == [True, False] * 5 + [True]
    dt = np.asarray(plan.steps["dt"])
    np.testing.assert_allclose(dt[1::2], dt[0:-1:2])
    np.testing.assert_allclose(dt[-1], -ref.sigmas[-2].item(), rtol=1e-6)
    assert np.all(dt < 0)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_heun_matches_diffusers(key, shift):
    model = flow_gaussian_model()
    ref = diffusers.FlowMatchHeunDiscreteScheduler(shift=shift)
    expected = run_flow_diffusers(ref, model, _noise(), n=8)
    method = Heun(num_inference_steps=8, prediction_type="flow")
    out = sample(key, method, FlowSchedule.create(shift=shift), model, jnp.asarray(_noise()))
    assert out.nfe == 15
    np.testing.assert_allclose(out.samples, expected, rtol=1e-4, atol=1e-5)


def test_flow_heun_custom_sigmas_are_second_order(key):
    # No diffusers oracle for custom sigmas with Heun: check against the exact ODE
    # solution instead, x(0) = mu + (x(s0) - (1 - s0) mu) std / sqrt((1-s0)^2 std^2 + s0^2),
    # started on the data marginal at s0 = 0.9 (error ~1e-3 with 12 steps; Euler: ~3e-2).
    s0 = 0.9
    sched = FlowSchedule.create(sigmas=list(np.linspace(s0, 0.05, 12)))
    x0 = jax.random.normal(jax.random.key(2), (64, 1)) * STD + MU
    eps = jax.random.normal(jax.random.key(3), (64, 1))
    xs = FlowSchedule.add_noise(x0, eps, s0)
    exact = MU + (xs - (1 - s0) * MU) * STD / np.sqrt((1 - s0) ** 2 * STD**2 + s0**2)
    out = sample(
        key, Heun(num_inference_steps=12, prediction_type="flow"), sched, flow_gaussian_model(), xs
    )
    err = np.max(np.abs(np.asarray(out.samples) - exact))
    assert err < 5e-3, err


@pytest.mark.parametrize(
    "method, sched_fn",
    [
        (Heun(num_inference_steps=30), lambda: DiscreteSchedule.create("linear")),
        (
            Heun(num_inference_steps=30, use_karras_sigmas=True, prediction_type="v_prediction"),
            lambda: DiscreteSchedule.create("linear"),
        ),
        (
            Heun(num_inference_steps=20, prediction_type="flow"),
            lambda: FlowSchedule.create(shift=3.0),
        ),
    ],
)
def test_gaussian_closed_form(method, sched_fn):
    # Exact denoiser for N(0.7, 0.5^2); 4000 samples (sampling error ~0.006), Heun's
    # discretisation error here is ~0.01; a wrong stage or scaling is off by far more.
    sched = sched_fn()
    if isinstance(sched, FlowSchedule):
        model = flow_gaussian_model()
    else:
        model = gaussian_model(sched.alphas_cumprod, method.prediction_type)
    noise = jax.random.normal(jax.random.key(7), (4000, 1))
    x = np.asarray(sample(jax.random.key(3), method, sched, model, noise).samples)
    assert abs(x.mean() - MU) < 0.03 and abs(x.std() - STD) < 0.03


def test_final_step_moves_the_sample(key):
    sched = _sd_schedule()
    out = sample(
        key,
        Heun(num_inference_steps=6, use_karras_sigmas=True),
        sched,
        gaussian_model(sched.alphas_cumprod),
        jnp.asarray(_noise()),
        return_trajectory=True,
    )
    traj = np.asarray(out.trajectory)
    assert np.max(np.abs(traj[-1] - traj[-2])) > 1e-3


@pytest.mark.parametrize(
    "method, sched_fn, exc, field",
    [
        (lambda: Heun(num_inference_steps=0), _sd_schedule, ValueError, "num_inference_steps"),
        (lambda: Heun(num_inference_steps=1001), _sd_schedule, ValueError, "num_inference_steps"),
        (lambda: Heun(timestep_spacing="middle"), _sd_schedule, ValueError, "timestep_spacing"),
        (lambda: Heun(prediction_type="velocity"), _sd_schedule, ValueError, "prediction_type"),
        (lambda: Heun(prediction_type="flow"), _sd_schedule, ValueError, "prediction_type"),
        (
            lambda: Heun(prediction_type="v_prediction"),
            FlowSchedule.create,
            ValueError,
            "prediction_type",
        ),
        (
            lambda: Heun(num_inference_steps=4),
            lambda: FlowSchedule.create(sigmas=[0.9, 0.1]),
            ValueError,
            "num_inference_steps",
        ),
        (lambda: Heun(), lambda: {"alphas_cumprod": None}, TypeError, "schedule"),
    ],
)
def test_bad_inputs(method, sched_fn, exc, field):
    # static fields are checked when the method is built, the rest when it plans
    with pytest.raises(exc, match=field):
        method().plan(sched_fn())


def test_heun_has_no_euler_only_options():
    with pytest.raises(TypeError, match="interpolation_type"):
        Heun(interpolation_type="log_linear")
