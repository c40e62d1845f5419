import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff
from jaxdiff import (
    AdvancedSamplingManager,
    NoiseSchedulerConfig,
    NoiseScheduleType,
    SamplingConfig,
    SamplingMethod,
    SamplingResult,
)
from jaxdiff.samplers.ddim import DDIM
from jaxdiff.samplers.driver import sample
from tests.oracles import gaussian_model

KEY = jax.random.key(0)


def _manager(method="ddim", steps=10, **kw):
    return jaxdiff.create_advanced_sampling_manager(
        "linear", method, num_inference_steps=steps, **kw
    )


def test_sample_result_contract_nchw():
    m = _manager()
    seen = {}

    def model(x, t, context):
        seen["shape"], seen["context"] = x.shape, context
        return jnp.zeros_like(x)

    latents = jax.random.normal(jax.random.key(1), (2, 4, 8, 6))
    res = m.sample(model, latents, key=KEY)
    assert isinstance(res, SamplingResult)
    assert res.samples.shape == latents.shape and res.samples.dtype == latents.dtype
    assert seen == {"shape": (2, 4, 8, 6), "context": None}
    assert res.num_function_evals == 10 and res.compile_time > 0 and res.processing_time > 0
    assert res.all_finite and res.errors == []
    again = m.sample(model, latents, key=KEY)
    assert again.compile_time == 0.0
    np.testing.assert_array_equal(again.samples, res.samples)


def test_facade_equals_pure_sampler():
    m = _manager("ddim", 12, eta=0.5, timestep_spacing="trailing")
    model = gaussian_model(m.scheduler.alphas_cumprod)
    latents = jax.random.normal(jax.random.key(1), (5, 3))
    got = m.sample(model, latents, key=KEY).samples
    ref = sample(
        KEY,
        DDIM(num_inference_steps=12, eta=0.5, timestep_spacing="trailing"),
        m.scheduler,
        model,
        latents,
    ).samples
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_guidance_batched_and_no_recompile():
    m = _manager(guidance_scale=7.5)
    shapes = []

    def model(x, t, context):
        shapes.append((x.shape, context.shape))
        return 0.1 * x + context[:, :1]

    latents = jax.random.normal(jax.random.key(1), (3, 2))
    prompt = jnp.ones((3, 5))
    r1 = m.sample(model, latents, prompt_embeds=prompt, key=KEY)
    r2 = m.sample(model, latents, prompt_embeds=prompt, key=KEY, guidance_scale=2.0)
    assert shapes[0] == ((6, 2), (6, 5))
    assert r1.num_function_evals == 10
    assert r2.compile_time == 0.0
    assert not np.allclose(r1.samples, r2.samples)
    neg = m.sample(model, latents, prompt_embeds=prompt, negative_prompt_embeds=prompt, key=KEY)
    # uncond == cond: guidance has no effect whatever the scale
    r_one = m.sample(model, latents, prompt_embeds=prompt, key=KEY, guidance_scale=1.0)
    np.testing.assert_allclose(neg.samples, r_one.samples, rtol=1e-5, atol=1e-6)


def test_enums_and_strings():
    assert SamplingMethod.parse("DDIM") is SamplingMethod.DDIM
    assert NoiseScheduleType.parse("Cosine") is NoiseScheduleType.COSINE
    assert {m.name for m in SamplingMethod} >= {
        "DDPM",
        "DDIM",
        "DPM_SOLVER",
        "EULER",
        "EULER_ANCESTRAL",
        "HEUN",
    }
    assert {m.name for m in NoiseScheduleType} == {
        "LINEAR",
        "SCALED_LINEAR",
        "COSINE",
        "QUADRATIC",
        "SIGMOID",
        "EXPONENTIAL",
        "CUSTOM",
        "FLOW",
    }
    cfg = SamplingConfig(method="Euler_Ancestral")
    assert cfg.method is SamplingMethod.EULER_ANCESTRAL


def test_original_defaults():
    s, c = NoiseSchedulerConfig(), SamplingConfig()
    assert (s.num_train_timesteps, s.beta_start, s.beta_end, s.schedule_type) == (
        1000,
        0.0001,
        0.02,
        NoiseScheduleType.LINEAR,
    )
    assert (
        s.clip_sample,
        s.clip_sample_range,
        s.sample_max_value,
        s.timestep_spacing,
        s.rescale_betas_zero_snr,
        s.custom_betas,
        s.custom_alphas_cumprod,
    ) == (False, 1.0, 1.0, "leading", False, None, None)
    assert (
        c.method,
        c.num_inference_steps,
        c.eta,
        c.guidance_scale,
        c.use_clipped_model_output,
        c.prediction_type,
        c.thresholding,
        c.dynamic_thresholding_ratio,
        c.algorithm_type,
        c.solver_type,
        c.lower_order_final,
        c.use_karras_sigmas,
    ) == (
        SamplingMethod.DDPM,
        50,
        0.0,
        7.5,
        False,
        "epsilon",
        False,
        0.995,
        "dpmsolver++",
        "midpoint",
        True,
        False,
    )
    assert (
        c.solver_order,
        c.final_sigmas_type,
        c.variance_type,
        s.steps_offset,
        s.set_alpha_to_one,
    ) == (2, "zero", "fixed_small", 0, True)


def test_unused_field_warns_and_used_field_does_not():
    with pytest.warns(UserWarning, match="solver_order=3"):
        _manager("ddim", solver_order=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _manager("ddim", eta=0.3)


def test_create_noise_scheduler_info():
    info = jaxdiff.create_noise_scheduler(NoiseScheduleType.COSINE).get_schedule_info()
    assert info["schedule_type"] == "cosine" and info["num_train_timesteps"] == 1000
    assert info["snr"].shape == (1000,)


@pytest.mark.parametrize(
    "kwargs, exc, field",
    [
        ({"num_inference_steps": 0}, ValueError, "num_inference_steps"),
        ({"num_inference_steps": 1001}, ValueError, "num_inference_steps"),
        ({"num_inference_steps": -3}, ValueError, "num_inference_steps"),
        ({"method": "plms"}, ValueError, "method"),
        ({"schedule_type": "zigzag"}, ValueError, "schedule_type"),
        ({"timestep_spacing": "middle"}, ValueError, "timestep_spacing"),
        ({"eta": -1.0}, ValueError, "eta"),
        ({"guidance_rescale": 2.0}, ValueError, "guidance_rescale"),
        ({"no_such_field": 1}, TypeError, "no_such_field"),
    ],
)
def test_bad_config(kwargs, exc, field):
    kwargs = {"schedule_type": "linear", "method": "ddim", **kwargs}
    with pytest.raises(exc, match=field):
        jaxdiff.create_advanced_sampling_manager(**kwargs)


def test_bad_sample_inputs():
    m = _manager()
    # A plain model: jnp.interp (the Gaussian oracle's) inside the loop with batch 1 hits an
    # XLA GPU compile error on JAX 0.11.2 (FAILED_PRECONDITION on a bitcast in the body).

    def model(x, t, context):
        return 0.1 * x

    with pytest.raises(TypeError, match="latents"):
        m.sample(model, jnp.ones((2, 3), jnp.int32), key=KEY)
    with pytest.raises(ValueError, match="latents"):
        m.sample(model, jnp.array([[np.nan, 1.0]]), key=KEY)
    with pytest.raises(TypeError, match="key"):
        m.sample(model, jnp.ones((2, 3)), key=5)
    with pytest.raises(ValueError, match="prompt_embeds"):
        m.sample(model, jnp.ones((2, 3)), prompt_embeds=jnp.ones((3, 4)), key=KEY)
    with pytest.raises(ValueError, match="negative_prompt_embeds"):
        m.sample(
            model,
            jnp.ones((2, 3)),
            prompt_embeds=jnp.ones((2, 4)),
            negative_prompt_embeds=jnp.ones((2, 5)),
            key=KEY,
        )


def test_nonfinite_in_result_and_debug_raises():
    m = _manager()

    def model(x, t, context):
        return jnp.where(t[:, None] < 450.0, jnp.inf, 0.0) * jnp.ones_like(x)

    res = m.sample(model, jnp.ones((2, 3)), key=KEY)
    assert not res.all_finite and res.first_nonfinite_step == 5 and "model call 5" in res.errors[0]
    with pytest.raises(FloatingPointError, match="model call 5"):
        m.sample(model, jnp.ones((2, 3)), key=KEY, debug=True)


def test_compare_sampling_methods():
    m = AdvancedSamplingManager(
        NoiseSchedulerConfig(timestep_spacing="trailing"), SamplingConfig(num_inference_steps=10)
    )
    model = gaussian_model(m.scheduler.alphas_cumprod)
    latents = jax.random.normal(jax.random.key(1), (4, 2))
    methods = [SamplingMethod.DDPM, "ddim", SamplingMethod.DPM_SOLVER, "euler", "heun"]
    res = m.compare_sampling_methods(model, latents, methods=methods, key=KEY)
    assert list(res) == ["ddpm", "ddim", "dpm_solver", "euler", "heun"]
    assert res["heun"].num_function_evals == 19
    assert all(r.samples.shape == latents.shape for r in res.values())


@pytest.mark.parametrize("method", ["ddim", "ddpm"])
def test_discrete_only_methods_refuse_flow_schedule_at_construction(method):
    with pytest.raises(TypeError, match="DiscreteSchedule"):
        jaxdiff.create_sampler("flow", method, num_inference_steps=10)


def test_flow_schedule_through_facade():
    m = jaxdiff.create_sampler(
        "flow", "euler", num_inference_steps=8, prediction_type="flow", shift=3.0
    )
    res = m.sample(lambda x, t, c: x, jnp.ones((2, 3)), key=KEY)
    assert res.num_function_evals == 8 and res.all_finite
