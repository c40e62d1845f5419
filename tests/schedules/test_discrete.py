"""DiscreteSchedule against diffusers' DDPMScheduler betas / alphas_cumprod and closed forms."""

import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr as torch_rescale

from jaxdiff.schedules.betas import rescale_zero_terminal_snr as jax_rescale
from jaxdiff.schedules.discrete import DiscreteSchedule

# ours -> diffusers' beta_schedule name
NAMES = {
    "linear": "linear",
    "scaled_linear": "scaled_linear",
    "cosine": "squaredcos_cap_v2",
    "squaredcos_cap_v2": "squaredcos_cap_v2",
    "sigmoid": "sigmoid",
}
SD = {"beta_start": 0.00085, "beta_end": 0.012}


def _ref(name, T=1000, **kw):
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=NAMES[name], **kw)
    return ref.betas.numpy(), ref.alphas_cumprod.numpy()


@pytest.mark.parametrize("name", list(NAMES))
@pytest.mark.parametrize("T, kw", [(1000, {}), (50, SD), (7, {})])
def test_named_schedules_match_diffusers(name, T, kw):
    sched = DiscreteSchedule.create(name, T, **kw)
    betas, ab = _ref(name, T, **kw)
    assert sched.betas.dtype == jnp.float32 and sched.betas.shape == (T,)
    # float32 rounding only (diffusers computes the cosine betas in float64 Python floats).
    np.testing.assert_allclose(sched.betas, betas, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(sched.alphas_cumprod, ab, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(sched.alphas, 1.0 - betas, rtol=1e-6)
    assert sched.num_train_timesteps == T


def test_quadratic_is_scaled_linear():
    a = DiscreteSchedule.create("quadratic", 100, **SD)
    b = DiscreteSchedule.create("scaled_linear", 100, **SD)
    np.testing.assert_array_equal(a.betas, b.betas)
    np.testing.assert_array_equal(a.alphas_cumprod, b.alphas_cumprod)


@pytest.mark.parametrize("T", [1000, 2])
def test_exponential_closed_form(T):
    b0, b1 = 1e-4, 0.02
    i = np.arange(T, dtype=np.float64)
    expected = b0 * (b1 / b0) ** (i / (T - 1))  # geometric interpolation
    sched = DiscreteSchedule.create("exponential", T, b0, b1)
    np.testing.assert_allclose(sched.betas, expected, rtol=1e-5)
    np.testing.assert_allclose(sched.alphas_cumprod, np.cumprod(1 - expected), rtol=1e-5)


def test_custom_betas_round_trip():
    betas = np.linspace(2e-4, 0.05, 200) ** 1.1
    sched = DiscreteSchedule.create(betas=betas)
    ref = diffusers.DDPMScheduler(trained_betas=betas.tolist(), num_train_timesteps=200)
    assert sched.schedule_type == "custom" and sched.num_train_timesteps == 200
    np.testing.assert_allclose(sched.betas, betas, rtol=1e-6)
    np.testing.assert_allclose(sched.alphas_cumprod, ref.alphas_cumprod.numpy(), rtol=1e-5)


def test_custom_alphas_cumprod_round_trip():
    _, ab = _ref("cosine", 300)
    sched = DiscreteSchedule.create(alphas_cumprod=ab)
    np.testing.assert_allclose(sched.alphas_cumprod, ab, rtol=1e-5)
    again = DiscreteSchedule.create(betas=sched.betas)
    np.testing.assert_allclose(again.alphas_cumprod, ab, rtol=1e-5)


@pytest.mark.parametrize("name, kw", [("linear", {}), ("scaled_linear", SD), ("cosine", {})])
def test_zero_snr_matches_diffusers(name, kw):
    sched = DiscreteSchedule.create(name, **kw, rescale_betas_zero_snr=True)
    betas, ab = _ref(name, **kw, rescale_betas_zero_snr=True)
    assert float(sched.alphas_cumprod[-1]) == 0.0 and ab[-1] == 0.0
    assert float(sched.betas[-1]) == 1.0
    # 1 - alpha with alpha near 1 (the first betas) and sqrt_ab - sqrt_ab_T (the last)
    # cancel in float32: torch and we are both ~1e-3 relative from the float64 betas at
    # the first steps (absolute error ~1e-7), hence the absolute tolerance.
    np.testing.assert_allclose(sched.betas, betas, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sched.alphas_cumprod, ab, rtol=1e-4, atol=1e-6)
    # Lin et al. 2024, Algorithm 1: sqrt(alpha_bar_0) is kept.
    plain = DiscreteSchedule.create(name, **kw)
    np.testing.assert_allclose(sched.alphas_cumprod[0], plain.alphas_cumprod[0], rtol=1e-6)


def test_zero_snr_rescale_function_matches_diffusers():
    betas = np.asarray(DiscreteSchedule.create("scaled_linear", **SD).betas)
    got = np.asarray(jax_rescale(jnp.asarray(betas)))
    ref = torch_rescale(torch.from_numpy(betas.copy())).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert got[-1] == 1.0


def test_schedule_info():
    sched = DiscreteSchedule.create("linear", 100, rescale_betas_zero_snr=True)
    info = sched.get_schedule_info()
    ab = np.asarray(sched.alphas_cumprod)
    assert info["schedule_type"] == "linear" and info["num_train_timesteps"] == 100
    assert info["rescaled_zero_snr"] is True
    assert info["betas_range"] == (float(np.min(sched.betas)), 1.0)
    assert info["alphas_cumprod_range"] == (0.0, float(ab[0]))
    assert info["snr"].shape == (100,) and info["snr"][-1] == 0.0
    np.testing.assert_allclose(info["snr"][:-1], ab[:-1] / (1 - ab[:-1]), rtol=1e-6)
    assert info["log_snr_range"][0] == -np.inf
    np.testing.assert_allclose(info["log_snr_range"][1], np.log(ab[0] / (1 - ab[0])), rtol=1e-5)
    plain = DiscreteSchedule.create("cosine", 100).get_schedule_info()
    assert plain["rescaled_zero_snr"] is False and np.isfinite(plain["log_snr_range"]).all()


def test_derived_arrays():
    sched = DiscreteSchedule.create("linear", 100)
    ab = np.asarray(sched.alphas_cumprod, np.float64)
    np.testing.assert_allclose(sched.alpha_t, np.sqrt(ab), rtol=1e-6)
    np.testing.assert_allclose(sched.sigma_t, np.sqrt(1 - ab), rtol=1e-5)
    np.testing.assert_allclose(sched.snr, ab / (1 - ab), rtol=1e-5)
    np.testing.assert_allclose(sched.karras_sigmas, np.sqrt((1 - ab) / ab), rtol=1e-5)


def test_jit_and_vmap_over_beta_end():
    ends = jnp.array([0.01, 0.02, 0.03])
    build = jax.jit(jax.vmap(lambda e: DiscreteSchedule.create("scaled_linear", 100, 1e-4, e)))
    batch = build(ends)
    assert batch.alphas_cumprod.shape == (3, 100) and batch.schedule_type == "scaled_linear"
    for k, e in enumerate([0.01, 0.02, 0.03]):
        _, ab = _ref("scaled_linear", 100, beta_start=1e-4, beta_end=e)
        np.testing.assert_allclose(batch.alphas_cumprod[k], ab, rtol=1e-5)
    # A schedule passes through jit as a pytree, custom betas may be traced.
    sched = DiscreteSchedule.create("linear", 100)
    out = jax.jit(lambda s: s.alphas_cumprod * 2)(sched)
    np.testing.assert_allclose(out, 2 * sched.alphas_cumprod)
    traced = jax.jit(lambda b: DiscreteSchedule.create(betas=b).alphas_cumprod)(sched.betas)
    np.testing.assert_allclose(traced, sched.alphas_cumprod, rtol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="schedule_type"):
        DiscreteSchedule.create("cubic")
    with pytest.raises(TypeError, match="schedule_type"):
        DiscreteSchedule.create(None)
    with pytest.raises(ValueError, match="schedule_type"):
        DiscreteSchedule.create("custom")  # no custom arrays given
    with pytest.raises(ValueError, match="custom_betas"):
        DiscreteSchedule.create(betas=[0.1, 0.2], alphas_cumprod=[0.9, 0.8])
    for bad in ([0.1, 0.0, 0.2], [0.1, 1.5], [-0.1, 0.2]):
        with pytest.raises(ValueError, match="custom_betas"):
            DiscreteSchedule.create(betas=bad)
    with pytest.raises(ValueError, match="custom_betas"):
        DiscreteSchedule.create(betas=[0.1, np.nan, 0.2])
    with pytest.raises(ValueError, match="custom_betas"):
        DiscreteSchedule.create(betas=np.zeros((2, 3)) + 0.1)
    with pytest.raises(ValueError, match="custom_alphas_cumprod"):
        DiscreteSchedule.create(alphas_cumprod=[0.9, 1.2])
    with pytest.raises(ValueError, match="num_train_timesteps"):
        DiscreteSchedule.create("linear", 0)
    with pytest.raises(TypeError, match="num_train_timesteps"):
        DiscreteSchedule.create("linear", 10.5)
