"""Per-example keys: a sample does not depend on its batch (jaxdiff.samplers.noise)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.samplers import (
    DDIM,
    DDPM,
    AdvancedSamplingManager,
    DPMSolver,
    Euler,
    EulerAncestral,
    PredictorCorrector,
    SamplingConfig,
    sample,
)
from jaxdiff.samplers.noise import normal_like, step_keys
from jaxdiff.schedules import DiscreteSchedule, NoiseSchedulerConfig, make_schedule
from tests.oracles import gaussian_model
from tests.samplers.test_sde import exact_model

DISCRETE = DiscreteSchedule.create("linear")
VP = make_schedule("linear")
SHAPE = (8, 3, 2)
NOISE = jax.random.normal(jax.random.key(7), SHAPE)
KEYS = jax.random.split(jax.random.key(3), SHAPE[0])

STOCHASTIC = {
    "ddpm": (DDPM(num_inference_steps=8), DISCRETE),
    "ddim_eta": (DDIM(num_inference_steps=8, eta=0.7), DISCRETE),
    "euler_ancestral": (EulerAncestral(num_inference_steps=8), DISCRETE),
    "euler_churn": (Euler(num_inference_steps=8, s_churn=4.0), DISCRETE),
    "sde_dpmsolver": (DPMSolver(num_inference_steps=8, algorithm_type="sde-dpmsolver++"), DISCRETE),
    "pc_langevin": (PredictorCorrector(num_steps=6, corrector_norm="example"), VP),
    "pc_euler_maruyama": (
        PredictorCorrector(num_steps=6, predictor="euler_maruyama", corrector="none"),
        VP,
    ),
}


# one model object per schedule: the model is a static argument, a new closure recompiles
MODELS = {id(DISCRETE): gaussian_model(DISCRETE.alphas_cumprod), id(VP): exact_model(VP)}


def _model(schedule):
    return MODELS[id(schedule)]


def _run(method, schedule, key, noise):
    return np.asarray(sample(key, method, schedule, _model(schedule), noise).samples)


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", list(STOCHASTIC))
def test_batch_of_8_equals_8_runs_of_1_and_two_halves(name):
    method, schedule = STOCHASTIC[name]
    full = _run(method, schedule, KEYS, NOISE)
    singles = np.concatenate(
        [_run(method, schedule, KEYS[i : i + 1], NOISE[i : i + 1]) for i in range(8)]
    )
    halves = np.concatenate(
        [_run(method, schedule, KEYS[:4], NOISE[:4]), _run(method, schedule, KEYS[4:], NOISE[4:])]
    )
    _close(full, singles)
    _close(full, halves)
    # the keys matter: other keys give other samples from the same latents
    other = _run(method, schedule, jax.random.split(jax.random.key(4), 8), NOISE)
    assert np.max(np.abs(other - full)) > 1e-3


def test_batch_norm_corrector_depends_on_the_batch():
    # corrector_norm="batch" (score_sde's step size) couples the samples; "example" does not.
    method = PredictorCorrector(num_steps=6, corrector_norm="batch")
    full = _run(method, VP, KEYS, NOISE)
    half = _run(method, VP, KEYS[:4], NOISE[:4])
    assert np.max(np.abs(full[:4] - half)) > 1e-4


def test_legacy_uint32_keys_per_example():
    method, schedule = STOCHASTIC["ddpm"]
    raw = jax.random.key_data(KEYS)  # [8, 2] uint32
    _close(_run(method, schedule, raw, NOISE), _run(method, schedule, KEYS, NOISE))


def test_single_key_draw_is_unchanged():
    # One key keeps the layout the diffusers-oracle tests reproduce:
    # normal(split(key, K)[k], x.shape).
    key = jax.random.key(0)
    x = jnp.zeros(SHAPE)
    keys = step_keys(key, 5)
    assert keys.shape == (5,)
    np.testing.assert_array_equal(
        normal_like(keys[2], x), jax.random.normal(jax.random.split(key, 5)[2], SHAPE)
    )


def test_per_example_step_keys_layout():
    keys = step_keys(KEYS, 5)
    assert keys.shape == (5, 8)
    x = jnp.zeros(SHAPE)
    draw = normal_like(keys[3], x)
    expected = jax.random.normal(jax.random.split(KEYS[6], 5)[3], SHAPE[1:])
    np.testing.assert_array_equal(draw[6], expected)


@pytest.mark.parametrize(
    "bad", [jax.random.split(jax.random.key(0), 3), jax.random.split(jax.random.key(0), (8, 2))]
)
def test_key_shape_must_match_batch(bad):
    method, schedule = STOCHASTIC["ddpm"]
    with pytest.raises(ValueError, match="key"):
        sample(bad, method, schedule, _model(schedule), NOISE)


def test_facade_passes_per_example_keys():
    manager = AdvancedSamplingManager(
        NoiseSchedulerConfig(), SamplingConfig(method="ddpm", num_inference_steps=6)
    )
    model = gaussian_model(manager.scheduler.alphas_cumprod)
    latents = NOISE.reshape(8, 6)
    full = np.asarray(manager.sample(model, latents, key=KEYS).samples)
    halves = np.concatenate(
        [
            np.asarray(manager.sample(model, latents[i : i + 4], key=KEYS[i : i + 4]).samples)
            for i in (0, 4)
        ]
    )
    _close(full, halves)
    with pytest.raises(ValueError, match="key"):
        manager.sample(model, latents, key=KEYS[:3])
    with pytest.raises(TypeError, match="key"):
        manager.sample(model, latents, key=0)
