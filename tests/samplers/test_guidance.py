import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.guiders.guider_utils import rescale_noise_cfg

from jaxdiff.samplers.guidance import check_contexts, guided_model, rescale_guidance


def _model(x, t, context):
    # depends on x, t and context so that the row order matters
    return x * 0.5 + t[:, None] * 0.01 + context.sum(axis=1, keepdims=True)


def test_cfg_one_batched_call_uncond_first():
    calls = []

    def model(x, t, context):
        calls.append((x.shape, context))
        return _model(x, t, context)

    x = jnp.arange(6.0).reshape(3, 2)
    t = jnp.full((3,), 10.0)
    cond = jnp.ones((3, 4))
    neg = -jnp.ones((3, 4))
    f = guided_model(model, cond, neg, 3.0)
    out = f(x, t)
    assert len(calls) == 1 and calls[0][0] == (6, 2)
    np.testing.assert_array_equal(calls[0][1][:3], neg)
    np.testing.assert_array_equal(calls[0][1][3:], cond)
    u, c = _model(x, t, neg), _model(x, t, cond)
    np.testing.assert_allclose(out, u + 3.0 * (c - u), rtol=1e-6)


def test_no_context_passes_none():
    seen = []
    f = guided_model(lambda x, t, c: seen.append(c) or x, None, None, 7.5)
    f(jnp.ones((2, 2)), jnp.ones(2))
    assert seen == [None]


def test_rescale_matches_diffusers():
    rng = np.random.default_rng(0)
    guided = rng.standard_normal((3, 4, 5, 6)).astype(np.float32) * 3
    cond = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    for phi in (0.0, 0.3, 0.7, 1.0):
        ref = rescale_noise_cfg(torch.from_numpy(guided), torch.from_numpy(cond), phi).numpy()
        got = rescale_guidance(jnp.asarray(guided), jnp.asarray(cond), phi)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_rescale_zero_keeps_constant_output_finite():
    g = jnp.ones((2, 3))
    np.testing.assert_array_equal(rescale_guidance(g, g, 0.0), g)


def test_contexts_validation():
    assert check_contexts(None, None, 3) is None
    np.testing.assert_array_equal(check_contexts(jnp.ones((3, 2)), None, 3), jnp.zeros((3, 2)))
    diffusers = ("prompt_embeds", "negative_prompt_embeds")
    with pytest.raises(ValueError, match="^context must have batch size 3"):
        check_contexts(jnp.ones((4, 2)), None, 3)
    with pytest.raises(ValueError, match="^prompt_embeds must have batch size 3"):
        check_contexts(jnp.ones((4, 2)), None, 3, names=diffusers)
    with pytest.raises(ValueError, match="^uncond_context shape .* must equal context shape"):
        check_contexts(jnp.ones((3, 2)), jnp.ones((3, 5)), 3)
    with pytest.raises(ValueError, match="^negative_prompt_embeds shape"):
        check_contexts(jnp.ones((3, 2)), jnp.ones((3, 5)), 3, names=diffusers)
    with pytest.raises(ValueError, match="^negative_prompt_embeds given without prompt_embeds"):
        check_contexts(None, jnp.ones((3, 5)), 3, names=diffusers)


def test_guidance_scale_traced_under_jit():
    f = jax.jit(
        lambda s: guided_model(_model, jnp.ones((2, 3)), None, s)(jnp.ones((2, 2)), jnp.ones(2))
    )
    a, b = f(1.0), f(5.0)
    assert f._cache_size() == 1
    assert not np.allclose(a, b)
