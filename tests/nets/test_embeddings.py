"""Time embeddings against diffusers' PyTorch implementations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.models.embeddings import GaussianFourierProjection as TorchFourier
from diffusers.models.embeddings import TimestepEmbedding, get_timestep_embedding

from jaxdiff.nets import GaussianFourierProjection, TimestepMLP, sinusoidal_embedding

T = np.array([0, 1, 3, 17.5, 999], dtype=np.float32)


@pytest.mark.parametrize("dim", [8, 33, 320])
@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_sinusoidal_matches_diffusers(dim, flip, shift):
    want = get_timestep_embedding(
        torch.tensor(T), dim, flip_sin_to_cos=flip, downscale_freq_shift=shift
    ).numpy()
    got = sinusoidal_embedding(
        jnp.asarray(T), dim, flip_sin_to_cos=flip, downscale_freq_shift=shift
    )
    assert got.shape == (5, dim)
    # float32 arguments near t = 999 are rounded differently by the two exp() orders
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("log,flip", [(True, False), (False, True)])
def test_gaussian_fourier_matches_diffusers(log, flip):
    torch.manual_seed(0)
    ref = TorchFourier(embedding_size=16, scale=2.0, log=log, flip_sin_to_cos=flip)
    mod = GaussianFourierProjection(dim=32, scale=2.0, log=log, flip_sin_to_cos=flip)
    t = jnp.asarray([0.01, 0.5, 3.0])
    params = {"params": {"weight": jnp.asarray(ref.weight.detach().numpy())}}
    want = ref(torch.tensor(np.asarray(t))).detach().numpy()
    np.testing.assert_allclose(mod.apply(params, t), want, rtol=1e-5, atol=1e-5)
    # the projection is fixed: no gradient reaches it
    grad = jax.grad(lambda p: jnp.sum(mod.apply(p, t)))(params)
    assert np.all(np.asarray(grad["params"]["weight"]) == 0)


def test_timestep_mlp_matches_diffusers_timestep_embedding():
    torch.manual_seed(0)
    ref = TimestepEmbedding(8, 24)
    mod = TimestepMLP(dim=24)
    params = {
        "params": {
            name: {
                "kernel": jnp.asarray(getattr(ref, name).weight.detach().numpy().T),
                "bias": jnp.asarray(getattr(ref, name).bias.detach().numpy()),
            }
            for name in ("linear_1", "linear_2")
        }
    }
    feats = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    want = ref(torch.tensor(feats)).detach().numpy()
    np.testing.assert_allclose(mod.apply(params, jnp.asarray(feats)), want, rtol=1e-5, atol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="timesteps must have shape"):
        sinusoidal_embedding(jnp.zeros((2, 1)), 8)
    with pytest.raises(ValueError, match="dim must be >= 2"):
        sinusoidal_embedding(jnp.zeros(2), 1)
    with pytest.raises(ValueError, match="dim must be even"):
        GaussianFourierProjection(dim=7).init(jax.random.key(0), jnp.ones(2))
