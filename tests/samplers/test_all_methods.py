"""Properties every discrete-schedule method must have (one parametrised file)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.samplers.config import SamplingMethod, method_class
from jaxdiff.samplers.driver import sample
from jaxdiff.schedules.discrete import DiscreteSchedule
from tests.oracles import MU, STD, gaussian_model

SCHED = DiscreteSchedule.create("linear")  # alpha_bar_T ~ 4e-5: pure-noise start is exact
METHODS = list(SamplingMethod)
# first-order methods need more steps to reach the data moments within 0.03
STEPS = {
    SamplingMethod.DDPM: 300,
    SamplingMethod.DDIM: 100,
    SamplingMethod.EULER: 100,
    SamplingMethod.EULER_ANCESTRAL: 300,
}


def _method(m, **kw):
    return method_class(m)(num_inference_steps=STEPS.get(m, 30), timestep_spacing="trailing", **kw)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.value)
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_every_prediction_type_reproduces_gaussian(method, prediction_type):
    model = gaussian_model(SCHED.alphas_cumprod, prediction_type)
    noise = jax.random.normal(jax.random.key(1), (4000, 1))
    out = sample(
        jax.random.key(2), _method(method, prediction_type=prediction_type), SCHED, model, noise
    )
    x = np.asarray(out.samples)
    assert abs(x.mean() - MU) < 0.03 and abs(x.std() - STD) < 0.03, (x.mean(), x.std())


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.value)
def test_bf16_model_output_keeps_fp32_state(method):
    model = gaussian_model(SCHED.alphas_cumprod)

    def bf16_model(x, t, context):
        return model(x.astype(jnp.bfloat16), t, context).astype(jnp.bfloat16)

    noise = jax.random.normal(jax.random.key(1), (256, 2))
    ref = sample(jax.random.key(2), _method(method), SCHED, model, noise).samples
    got = sample(jax.random.key(2), _method(method), SCHED, bf16_model, noise).samples
    assert got.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(got)))
    np.testing.assert_allclose(got, ref, atol=0.05)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.value)
def test_final_step_moves_sample(method):
    # diffusers#6477: a repeated last sigma makes the final step a no-op.
    model = gaussian_model(SCHED.alphas_cumprod)
    noise = jax.random.normal(jax.random.key(1), (8, 2))
    out = sample(jax.random.key(2), _method(method), SCHED, model, noise, return_trajectory=True)
    assert not np.allclose(out.trajectory[-1], out.trajectory[-2])
    assert out.trajectory.shape[0] == out.nfe


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.value)
def test_jit_vmap_over_seeds(method):
    model = gaussian_model(SCHED.alphas_cumprod)
    keys = jax.random.split(jax.random.key(5), 3)
    noise = jax.random.normal(jax.random.key(1), (3, 4, 2))
    m = _method(method)
    run = jax.jit(jax.vmap(lambda k, n: sample(k, m, SCHED, model, n).samples))
    batched = run(keys, noise)
    single = sample(keys[1], m, SCHED, model, noise[1]).samples
    np.testing.assert_allclose(batched[1], single, rtol=1e-5, atol=1e-5)
