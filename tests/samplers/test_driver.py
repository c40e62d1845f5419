import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.samplers.ddim import DDIM
from jaxdiff.samplers.driver import sample
from jaxdiff.schedules.discrete import DiscreteSchedule
from tests.oracles import gaussian_model

SCHED = DiscreteSchedule.create("linear")
MODEL = gaussian_model(SCHED.alphas_cumprod)


def test_trajectory_and_nfe(key):
    noise = jax.random.normal(jax.random.key(1), (3, 2, 4))
    out = sample(key, DDIM(num_inference_steps=7), SCHED, MODEL, noise, return_trajectory=True)
    assert out.nfe == 7
    assert out.trajectory.shape == (7, 3, 2, 4)
    np.testing.assert_array_equal(out.trajectory[-1], out.samples)
    assert bool(out.all_finite) and int(out.first_nonfinite_step) == -1


def test_layout_untouched_and_t_contract(key):
    seen = {}

    def model(x, t, context):
        seen["x"], seen["t"] = x.shape, (t.shape, t.dtype)
        return jnp.zeros_like(x)

    noise = jnp.ones((2, 4, 8, 8))  # NCHW
    sample(key, DDIM(num_inference_steps=3), SCHED, model, noise)
    assert seen["x"] == (2, 4, 8, 8)
    assert seen["t"] == ((2,), jnp.float32)


def _nan_after(step_t):
    def model(x, t, context):
        return jnp.where(t[:, None] < step_t, jnp.nan, 0.0) * jnp.ones_like(x)

    return model


def test_nonfinite_reported(key):
    out = sample(key, DDIM(num_inference_steps=10), SCHED, _nan_after(500.0), jnp.ones((2, 3)))
    assert not bool(out.all_finite)
    assert int(out.first_nonfinite_step) == 5  # timesteps 900, 800, ..., 0 (leading)


def test_nonfinite_debug_raises(key):
    with pytest.raises(FloatingPointError, match="non-finite model output at model call 5"):
        sample(
            key,
            DDIM(num_inference_steps=10),
            SCHED,
            _nan_after(500.0),
            jnp.ones((2, 3)),
            debug=True,
        )


def test_bf16_latents_keep_fp32_schedule_math(key):
    noise = jax.random.normal(jax.random.key(1), (64, 2))
    ref = sample(key, DDIM(num_inference_steps=20), SCHED, MODEL, noise).samples
    got = sample(
        key, DDIM(num_inference_steps=20), SCHED, MODEL, noise.astype(jnp.bfloat16)
    ).samples
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), ref, atol=0.05)


def test_vmap_over_seeds():
    keys = jax.random.split(jax.random.key(3), 4)
    noise = jax.random.normal(jax.random.key(1), (4, 5, 2))
    method = DDIM(num_inference_steps=5, eta=1.0)
    batched = jax.vmap(lambda k, n: sample(k, method, SCHED, MODEL, n).samples)(keys, noise)
    single = sample(keys[2], method, SCHED, MODEL, noise[2]).samples
    np.testing.assert_allclose(batched[2], single, rtol=1e-5, atol=1e-6)


def test_bad_latents_dtype(key):
    with pytest.raises(TypeError, match="latents"):
        sample(key, DDIM(num_inference_steps=3), SCHED, MODEL, jnp.ones((2, 3), jnp.int32))
