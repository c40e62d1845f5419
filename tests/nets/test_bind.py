import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nets import MLP, bind
from jaxdiff.samplers import DDIM, sample
from jaxdiff.schedules import DiscreteSchedule


@pytest.fixture(scope="module")
def mlp():
    module = MLP(hidden_dim=16, depth=1)
    x = jnp.ones((3, 2))
    params = module.init(jax.random.key(0), x, jnp.zeros((3,)))["params"]
    return module, params, x


def test_bound_model_equals_module_apply_and_broadcasts_t(mlp):
    module, params, x = mlp
    ref = module.apply({"params": params}, x, jnp.full((3,), 0.5))
    model = bind(module, params)
    np.testing.assert_array_equal(model(x, jnp.full((3,), 0.5)), ref)
    np.testing.assert_array_equal(model(x, 0.5), ref)  # scalar t -> [B]
    np.testing.assert_array_equal(bind(module).apply_fn(params, x, 0.5, None), ref)


def test_bound_model_is_hashable_and_drives_the_sampler(mlp):
    module, params, x = mlp
    model = bind(module, params)
    assert hash(model) == hash(model) and model != bind(module, params)
    out = sample(
        jax.random.key(1),
        DDIM(num_inference_steps=3),
        DiscreteSchedule.create("linear", 50),
        model,
        x,
    )
    assert out.samples.shape == x.shape and bool(out.all_finite)


def test_apply_kwargs_reach_the_module():
    class Scaled(nn.Module):
        @nn.compact
        def __call__(self, x, t, context=None, *, scale=1.0):
            return scale * nn.Dense(2)(x)

    module = Scaled()
    x = jnp.ones((2, 2))
    params = module.init(jax.random.key(0), x, jnp.zeros((2,)))["params"]
    one = bind(module, params)(x, 0.0)
    np.testing.assert_allclose(bind(module, params, scale=3.0)(x, 0.0), 3.0 * one, rtol=1e-6)


def test_bind_refuses_what_it_cannot_call(mlp):
    module, params, x = mlp
    with pytest.raises(TypeError, match="flax.linen.Module"):
        bind(lambda x, t, c: x, params)
    with pytest.raises(ValueError, match="inner 'params'"):
        bind(module, {"params": params})
    with pytest.raises(ValueError, match="no params"):
        bind(module)(x, 0.0)
