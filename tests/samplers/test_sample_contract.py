"""``sample``'s contract: the final carry in the result, argument checks, model output shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.samplers import DDIM, DDPM, DPMSolver, Heun, sample
from jaxdiff.schedules import DiscreteSchedule
from tests.oracles import gaussian_model

SCHED = DiscreteSchedule.create("linear")
MODEL = gaussian_model(SCHED.alphas_cumprod)
NOISE = jax.random.normal(jax.random.key(1), (3, 4))


def test_state_is_the_final_carry(key):
    # DPM-Solver++ keeps the last converted output (x0) in its history; with a zero final
    # sigma the last, first-order step lands exactly on it.
    out = sample(key, DPMSolver(num_inference_steps=6), SCHED, MODEL, NOISE)
    assert isinstance(out.state, tuple) and len(out.state) == 1
    np.testing.assert_allclose(out.state[0], out.samples, rtol=1e-6, atol=1e-6)
    three = sample(key, DPMSolver(num_inference_steps=6, solver_order=3), SCHED, MODEL, NOISE)
    assert len(three.state) == 2 and three.state[1].shape == NOISE.shape
    assert sample(key, DDIM(num_inference_steps=4), SCHED, MODEL, NOISE).state == ()


def test_state_through_jit(key):
    run = jax.jit(lambda k, x: sample(k, Heun(num_inference_steps=4), SCHED, MODEL, x))
    out = run(key, NOISE)
    d_prev, x_start = out.state
    assert d_prev.shape == x_start.shape == NOISE.shape
    assert bool(jnp.all(jnp.isfinite(d_prev)))


@pytest.mark.parametrize("bad", [None, 0, 1.5, "key", np.zeros(2, np.float32)])
def test_bad_key(bad):
    with pytest.raises(TypeError, match="key"):
        sample(bad, DDIM(num_inference_steps=3), SCHED, MODEL, NOISE)


@pytest.mark.parametrize("bad", [None, [[0.0, 1.0]], "noise"])
def test_bad_noise(key, bad):
    with pytest.raises(TypeError, match="noise"):
        sample(key, DDIM(num_inference_steps=3), SCHED, MODEL, bad)


def test_empty_batch(key):
    with pytest.raises(ValueError, match="batch"):
        sample(key, DDIM(num_inference_steps=3), SCHED, MODEL, jnp.zeros((0, 4)))


class _Unhashable:
    __hash__ = None

    def __call__(self, x, t, context):
        return x


@pytest.mark.parametrize("bad", ["model", None, 3, _Unhashable()])
def test_bad_model(key, bad):
    with pytest.raises(TypeError, match="model_fn"):
        sample(key, DDIM(num_inference_steps=3), SCHED, bad, NOISE)


@pytest.mark.parametrize(
    "kwargs, error, field",
    [
        ({"guidance_scale": "7.5"}, TypeError, "guidance_scale"),
        ({"guidance_scale": float("nan")}, ValueError, "guidance_scale"),
        ({"guidance_rescale": 2.0}, ValueError, "guidance_rescale"),
        ({"guidance_rescale": "0.5"}, TypeError, "guidance_rescale"),
        ({"unroll": 0}, ValueError, "unroll"),
        ({"unroll": 1.5}, TypeError, "unroll"),
        ({"return_trajectory": "no"}, TypeError, "return_trajectory"),
        ({"debug": "yes"}, TypeError, "debug"),
        ({"progress": "no"}, TypeError, "progress"),
    ],
)
def test_bad_options(key, kwargs, error, field):
    with pytest.raises(error, match=field):
        sample(key, DDIM(num_inference_steps=3), SCHED, MODEL, NOISE, **kwargs)


def test_wrong_output_shape_named_at_first_call(key):
    def model(x, t, context):
        return jnp.zeros((x.shape[0], 5))

    with pytest.raises(ValueError, match=r"model_fn output has shape \(3, 5\).*\(3, 4\)"):
        sample(key, DDIM(num_inference_steps=3), SCHED, model, NOISE)


def test_model_returning_no_array(key):
    with pytest.raises(TypeError, match="model_fn must return an array"):
        sample(key, DDIM(num_inference_steps=3), SCHED, lambda x, t, c: None, NOISE)


def test_learned_variance_output_shape(key):
    # learned variance types need 2C channels; a C-channel output is named with both shapes
    method = DDPM(num_inference_steps=3, variance_type="learned_range")
    with pytest.raises(ValueError, match=r"model_fn output.*\(3, 8\).*\(3, 4\)"):
        sample(key, method, SCHED, MODEL, NOISE)

    def doubled(x, t, context):
        return jnp.concatenate([MODEL(x, t, context), jnp.zeros_like(x)], axis=-1)

    assert sample(key, method, SCHED, doubled, NOISE).samples.shape == NOISE.shape
