"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper around a denoiser.

With a context, the model is called once per step on a batch of ``2B`` rows,
``[unconditional; conditional]`` in that order, and the outputs are combined as
``u + w (c - u)``. ``guidance_rescale`` (Lin et al. 2024, eq. 15-16) rescales the
guided output to the standard deviation of the conditional one. ``guidance_scale`` and
``guidance_rescale`` are traced numbers: changing them never recompiles.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["check_contexts", "guided_model", "rescale_guidance"]


def rescale_guidance(guided, cond, rescale):
    """Blend ``guided`` with its copy rescaled to the per-sample std of ``cond``."""
    axes = tuple(range(1, guided.ndim))
    std_c = jnp.std(cond, axis=axes, keepdims=True)
    std_g = jnp.std(guided, axis=axes, keepdims=True)
    blended = rescale * (guided * (std_c / std_g)) + (1.0 - rescale) * guided
    return jnp.where(rescale > 0, blended, guided)


def check_contexts(context, uncond_context, batch: int, names=("context", "uncond_context")):
    """Validate shapes; return the unconditional context (zeros when none is given).

    ``context`` is ``[batch, ...]``; ``uncond_context`` must have the same shape.
    ``names``: the two arguments' names as the caller's user knows them (messages).
    """
    cond_name, uncond_name = names
    if context is None:
        if uncond_context is not None:
            raise ValueError(f"{uncond_name} given without {cond_name}")
        return None
    if context.ndim < 1 or context.shape[0] != batch:
        raise ValueError(
            f"{cond_name} must have batch size {batch} (the latents' first axis); "
            f"got shape {tuple(context.shape)}"
        )
    if uncond_context is None:
        return jnp.zeros_like(context)
    if uncond_context.shape != context.shape:
        raise ValueError(
            f"{uncond_name} shape {tuple(uncond_context.shape)} must equal "
            f"{cond_name} shape {tuple(context.shape)}"
        )
    return uncond_context.astype(context.dtype)


def guided_model(model_fn, context, uncond_context, guidance_scale, guidance_rescale=0.0):
    """Return ``f(x, t) -> prediction`` applying CFG when ``context`` is not None.

    Args:
      model_fn: ``model_fn(x, t, context) -> prediction`` with ``x`` ``[B, ...]`` and
        ``t`` ``[B]``.
      context: ``[B, ...]`` conditional context, or None (no guidance; the model gets
        ``context=None``).
      uncond_context: ``[B, ...]`` unconditional context; zeros when None.
      guidance_scale: traced scalar ``w``.
      guidance_rescale: traced scalar in ``[0, 1]``.
    """
    if context is None:
        return lambda x, t: model_fn(x, t, None)
    if uncond_context is None:
        uncond_context = jnp.zeros_like(context)
    both = jnp.concatenate([uncond_context, context], axis=0)

    def guided(x, t):
        out = model_fn(jnp.concatenate([x, x], axis=0), jnp.concatenate([t, t], axis=0), both)
        uncond, cond = jnp.split(out, 2, axis=0)
        guided_out = uncond + guidance_scale * (cond - uncond)
        return rescale_guidance(guided_out, cond, guidance_rescale)

    return guided
