import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxdiff.schedules.flow import FlowSchedule
from tests.oracles import MU, STD, torch_model


def flow_gaussian_model(num_train_timesteps=1000, prediction_type="flow", mu=MU, std=STD):
    """Exact prediction for Gaussian data N(mu, std^2) on x = (1 - s) x0 + s eps.

    The model gets t = s T. With a = 1 - s, x is Gaussian with variance a^2 std^2 + s^2
    and E[x0 | x] = mu + a std^2 (x - a mu) / v, E[eps | x] = s (x - a mu) / v.
    """

    def model(x, t, context=None):
        s = (t / num_train_timesteps).reshape((-1,) + (1,) * (x.ndim - 1))
        a = 1.0 - s
        v = a**2 * std**2 + s**2
        x0 = mu + a * std**2 * (x - a * mu) / v
        eps = s * (x - a * mu) / v
        if prediction_type == "flow":
            return eps - x0
        if prediction_type == "sample":
            return x0
        if prediction_type == "epsilon":
            return eps
        if prediction_type == "score":
            return -(x - a * mu) / v
        raise ValueError(prediction_type)

    return model


def run_flow_diffusers(scheduler, model, noise, n=None, sigmas=None):
    """diffusers' flow-matching loop (these schedulers have no input scaling)."""
    tmodel = torch_model(model)
    if sigmas is None:
        scheduler.set_timesteps(n)
    else:
        scheduler.set_timesteps(sigmas=list(sigmas))
    x = torch.from_numpy(np.asarray(noise, np.float32).copy())
    for t in scheduler.timesteps:
        x = scheduler.step(tmodel(x, t), t, x).prev_sample
    return x.numpy()


def test_train_and_inference_sigmas_match_diffusers():
    ref = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched = FlowSchedule.create(shift=3.0)
    np.testing.assert_allclose(sched.train_sigmas, ref.sigmas.numpy(), rtol=1e-6)
    assert float(sched.sigma_max) == 1.0
    np.testing.assert_allclose(sched.sigma_min, ref.sigma_min, rtol=1e-6)
    ref.set_timesteps(12)
    np.testing.assert_allclose(sched.inference_sigmas(12), ref.sigmas[:-1].numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        sched.timestep(sched.inference_sigmas(12)), ref.timesteps.numpy(), rtol=1e-6
    )


def test_custom_sigmas_are_shifted_like_diffusers():
    custom = [1.0, 0.8, 0.5, 0.2, 0.05]
    ref = diffusers.FlowMatchEulerDiscreteScheduler(shift=2.0)
    ref.set_timesteps(sigmas=custom)
    sched = FlowSchedule.create(shift=2.0, sigmas=custom)
    assert sched.num_custom_sigmas == 5
    np.testing.assert_allclose(sched.inference_sigmas(5), ref.sigmas[:-1].numpy(), rtol=1e-6)


def test_shift_formula_and_path():
    sched = FlowSchedule.create(shift=3.0)
    t = jnp.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(sched.sigma(t), 3 * t / (1 + 2 * t), rtol=1e-6, atol=1e-7)
    x0, eps = jnp.full((2, 3), 0.5), jnp.full((2, 3), -1.0)
    xt = FlowSchedule.add_noise(x0, eps, jnp.array([0.25, 1.0]))
    np.testing.assert_allclose(xt[:, 0], [0.75 * 0.5 - 0.25, -1.0], rtol=1e-6)
    np.testing.assert_allclose(FlowSchedule.velocity(x0, eps), -1.5)
    assert float(FlowSchedule.alpha(0.25)) == 0.75


def test_add_noise_matches_diffusers_scale_noise():
    ref = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    ref.set_timesteps(10)
    x0 = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    eps = np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)
    t = ref.timesteps[3:4].repeat(2)
    expected = ref.scale_noise(torch.from_numpy(x0), t, torch.from_numpy(eps)).numpy()
    got = FlowSchedule.add_noise(jnp.asarray(x0), jnp.asarray(eps), ref.sigmas[3].item())
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_shift_is_traced_and_vmappable():
    fn = jax.jit(lambda shift: FlowSchedule.create(shift=shift).inference_sigmas(8))
    a, b = fn(1.0), fn(3.0)
    assert fn._cache_size() == 1
    np.testing.assert_allclose(a, np.linspace(1.0, 1e-3, 8), rtol=1e-5)
    assert np.all(np.asarray(b) >= np.asarray(a))
    stacked = jax.vmap(lambda s: FlowSchedule(shift=s).sigma(0.5))(jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(stacked, [0.5, 0.75], rtol=1e-6)


def test_exact_model_is_consistent():
    # x0 and eps recovered from the oracle's flow output satisfy x = (1-s) x0 + s eps.
    x = jnp.linspace(-2.0, 2.0, 6).reshape(6, 1)
    t = jnp.full((6,), 400.0)
    u = flow_gaussian_model(prediction_type="flow")(x, t)
    x0 = flow_gaussian_model(prediction_type="sample")(x, t)
    eps = flow_gaussian_model(prediction_type="epsilon")(x, t)
    np.testing.assert_allclose(u, eps - x0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(0.6 * x0 + 0.4 * eps, x, rtol=1e-5, atol=1e-6)


def test_schedule_info():
    info = FlowSchedule.create(num_train_timesteps=100, shift=3.0).get_schedule_info()
    assert info["schedule_type"] == "flow" and info["num_train_timesteps"] == 100
    assert info["shift"] == 3.0 and info["snr"].shape == (100,)
    assert info["sigmas_range"][1] == 1.0 and info["custom_sigmas"] is None
    assert np.all(np.diff(info["snr"]) > 0)  # SNR grows as sigma falls


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"shift": 0.0}, "shift"),
        ({"shift": -2.0}, "shift"),
        ({"shift": float("nan")}, "shift"),
        ({"num_train_timesteps": 0}, "num_train_timesteps"),
        ({"sigmas": [0.5, 0.8]}, "sigmas"),
        ({"sigmas": [1.2, 0.5]}, "sigmas"),
        ({"sigmas": [0.5, 0.0]}, "sigmas"),
        ({"sigmas": [[0.5, 0.2]]}, "sigmas"),
        ({"sigmas": [0.5, float("nan")]}, "sigmas"),
    ],
)
def test_bad_inputs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FlowSchedule.create(**kwargs)


def test_custom_sigmas_fix_the_step_count():
    sched = FlowSchedule.create(sigmas=[0.9, 0.5, 0.1])
    with pytest.raises(ValueError, match="num_inference_steps"):
        sched.inference_sigmas(4)
    with pytest.raises(ValueError, match="num_inference_steps"):
        FlowSchedule.create().inference_sigmas(0)
