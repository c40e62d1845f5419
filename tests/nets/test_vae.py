"""AutoencoderKL module: shapes, validation, posterior sampling (closed-form moments)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nets.vae import AutoencoderKL, VAEConfig, sample_latent

TINY = VAEConfig(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)


@pytest.fixture(scope="module")
def model():
    module = AutoencoderKL(TINY)
    params = module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    return module, params


def test_shapes_jitted_and_not(model, key):
    module, params = model
    x = jax.random.normal(key, (2, 8, 8, 3))
    encode = lambda p, x: module.apply({"params": p}, x, method=module.encode)  # noqa: E731
    mean, logvar = encode(params, x)
    mean_j, logvar_j = jax.jit(encode)(params, x)
    assert mean.shape == logvar.shape == (2, 4, 4, 4)
    np.testing.assert_allclose(mean, mean_j, atol=1e-5)
    np.testing.assert_allclose(logvar, logvar_j, atol=1e-5)
    assert float(logvar.min()) >= -30.0 and float(logvar.max()) <= 20.0
    decoded = module.apply({"params": params}, mean, method=module.decode)
    assert decoded.shape == (2, 8, 8, 3)
    # __call__: mean without a key, a posterior draw with one
    np.testing.assert_allclose(module.apply({"params": params}, x), decoded, atol=1e-5)
    sampled = module.apply({"params": params}, x, key=jax.random.key(1))
    assert sampled.shape == decoded.shape and not np.allclose(sampled, decoded)


def test_bf16_compute_keeps_float32_params(key):
    module = AutoencoderKL(VAEConfig(**{**TINY.__dict__, "dtype": "bfloat16"}))
    x = jnp.zeros((1, 8, 8, 3))
    variables = module.init(key, x, method=module.encode)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
    mean, _ = module.apply(variables, x, method=module.encode)
    assert mean.dtype == jnp.bfloat16


def test_sample_latent_moments(key):
    mean = jnp.full((4000, 2, 2, 1), 1.5)
    logvar = jnp.full((4000, 2, 2, 1), np.log(0.25))
    z = np.asarray(sample_latent(key, mean, logvar))
    # standard error of the mean ~ 0.5 / sqrt(16000) ~ 0.004
    assert abs(z.mean() - 1.5) < 0.02 and abs(z.std() - 0.5) < 0.02


def test_bad_inputs_raise(model):
    module, params = model
    with pytest.raises(ValueError, match="divisible by 2"):
        module.apply({"params": params}, jnp.zeros((1, 7, 8, 3)), method=module.encode)
    with pytest.raises(ValueError, match="NHWC"):
        module.apply({"params": params}, jnp.zeros((1, 3, 8, 8)), method=module.encode)
    with pytest.raises(ValueError, match="NHWC"):
        module.apply({"params": params}, jnp.zeros((1, 4, 4, 3)), method=module.decode)
    with pytest.raises(ValueError, match="norm_num_groups"):
        VAEConfig(block_out_channels=(8, 12), norm_num_groups=8)
    with pytest.raises(ValueError, match="dtype"):
        VAEConfig(dtype="int8")
    with pytest.raises(TypeError, match="latent_channels"):
        VAEConfig(latent_channels=2.0)
