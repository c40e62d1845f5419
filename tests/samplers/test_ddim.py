import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from diffusers.schedulers import scheduling_ddim

from jaxdiff.samplers.ddim import DDIM
from jaxdiff.samplers.driver import sample
from jaxdiff.schedules.discrete import DiscreteSchedule
from tests.oracles import gaussian_model, patch_noise, run_diffusers

SHAPE = (4, 3, 5)


def _both(
    key,
    *,
    beta_schedule="linear",
    ours_schedule="linear",
    n=20,
    eta=0.0,
    prediction_type="epsilon",
    spacing="leading",
    zero_snr=False,
    extra=None,
    monkeypatch=None,
    **kw,
):
    extra = extra or {}
    sched = DiscreteSchedule.create(ours_schedule, rescale_betas_zero_snr=zero_snr)
    model = gaussian_model(sched.alphas_cumprod, prediction_type)
    noise = np.asarray(jax.random.normal(jax.random.key(1), SHAPE))
    ref = diffusers.DDIMScheduler(
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
        timestep_spacing=spacing,
        rescale_betas_zero_snr=zero_snr,
        clip_sample=False,
        **extra,
    )
    if monkeypatch is not None:
        patch_noise(monkeypatch, scheduling_ddim, key, n, SHAPE)
    expected = run_diffusers(ref, model, noise, n, {"eta": eta, **kw})
    method = DDIM(
        num_inference_steps=n,
        eta=eta,
        prediction_type=prediction_type,
        timestep_spacing=spacing,
        **extra,
        **{k: v for k, v in kw.items() if k == "use_clipped_model_output"},
    )
    got = sample(key, method, sched, model, jnp.asarray(noise)).samples
    return np.asarray(got), expected


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_ddim_matches_diffusers(key, spacing, prediction_type):
    got, expected = _both(key, spacing=spacing, prediction_type=prediction_type)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_ddim_trailing_zero_snr_v(key):
    got, expected = _both(
        key,
        ours_schedule="scaled_linear",
        beta_schedule="scaled_linear",
        spacing="trailing",
        prediction_type="v_prediction",
        zero_snr=True,
    )
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_ddim_eta_noise_matches(key, monkeypatch):
    got, expected = _both(key, eta=0.7, monkeypatch=monkeypatch)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_ddim_eta_traced_no_recompile(key):
    sched = DiscreteSchedule.create("linear")
    model = gaussian_model(sched.alphas_cumprod)
    noise = jax.random.normal(jax.random.key(1), SHAPE)
    fn = jax.jit(lambda m: sample(key, m, sched, model, noise).samples)
    a = fn(DDIM(num_inference_steps=10, eta=0.0))
    b = fn(DDIM(num_inference_steps=10, eta=1.0))
    assert fn._cache_size() == 1
    assert not np.allclose(a, b)
