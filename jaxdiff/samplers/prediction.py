"""Conversions between what a denoiser predicts, and x0 post-processing.

With ``x_t = alpha_t x_0 + sigma_t eps`` a network may predict

* ``epsilon``: the noise ``eps`` (Ho et al. 2020);
* ``v_prediction``: ``v = alpha_t eps - sigma_t x_0`` (Salimans & Ho 2022, eq. 11),
  defined for variance-preserving schedules (``alpha^2 + sigma^2 = 1``);
* ``sample``: ``x_0`` itself;
* ``flow``: the rectified-flow velocity ``u = eps - x_0`` for ``alpha_t = 1 - sigma_t``
  (Liu et al. 2023; Esser et al. 2024);
* ``score``: ``grad log p_t(x_t) = -eps / sigma_t``.

This module is the one place where these conversions live.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxdiff._validation import check_choice

__all__ = [
    "PREDICTION_TYPES",
    "check_prediction_type",
    "to_x0_eps",
    "clip_or_threshold",
    "dynamic_threshold",
]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow", "score")


def check_prediction_type(value) -> str:
    """Normalised prediction type, or ``ValueError`` listing the allowed ones."""
    return check_choice("prediction_type", value, PREDICTION_TYPES)


def to_x0_eps(model_output, x, alpha, sigma, prediction_type: str):
    """Return ``(x0, eps)`` implied by a model output at ``x = alpha x0 + sigma eps``.

    ``alpha`` and ``sigma`` are scalars or arrays broadcastable to ``x`` (``[batch, ...]``).
    ``prediction_type`` is static (case-insensitive).
    """
    prediction_type = check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        eps = model_output
        return (x - sigma * eps) / alpha, eps
    if prediction_type == "sample":
        x0 = model_output
        return x0, (x - alpha * x0) / sigma
    if prediction_type == "v_prediction":
        return alpha * x - sigma * model_output, alpha * model_output + sigma * x
    if prediction_type == "flow":
        x0 = x - sigma * model_output
        return x0, x + alpha * model_output
    eps = -sigma * model_output  # score: eps = -sigma s
    return (x - sigma * eps) / alpha, eps


def dynamic_threshold(x0, ratio, max_value):
    """Dynamic thresholding (Saharia et al. 2022, Imagen, section 2.3).

    Per sample, ``s`` is the ``ratio`` quantile of ``|x0|``, clipped to
    ``[1, max_value]``; ``x0`` is clipped to ``[-s, s]`` and divided by ``s``.
    ``x0`` is ``[batch, ...]``; the quantile is computed in float32.
    """
    dtype = x0.dtype
    flat = x0.reshape(x0.shape[0], -1).astype(jnp.float32)
    s = jnp.quantile(jnp.abs(flat), ratio, axis=1, keepdims=True)
    s = jnp.clip(s, 1.0, max_value)
    out = jnp.clip(flat, -s, s) / s
    return out.reshape(x0.shape).astype(dtype)


def clip_or_threshold(x0, *, thresholding: bool, clip_sample: bool, ratio, max_value, clip_range):
    """Apply dynamic thresholding or clipping to a predicted ``x0`` (diffusers' order).

    ``thresholding`` and ``clip_sample`` are static; thresholding wins when both are set.
    """
    if thresholding:
        return dynamic_threshold(x0, ratio, max_value)
    if clip_sample:
        return jnp.clip(x0, -clip_range, clip_range)
    return x0
