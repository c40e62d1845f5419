"""Sample-quality metrics and scoring rules.

* :func:`energy_distance` -- two-sample energy distance (Szekely & Rizzo 2013).
* :func:`energy_score`, :func:`crps` -- ensemble estimators of the energy score and of
  the continuous ranked probability score, strictly proper scoring rules (Gneiting &
  Raftery 2007, "Strictly proper scoring rules, prediction, and estimation", JASA,
  eqs. 20-22): for a forecast law ``P`` and an outcome ``y``,
  ``ES(P, y) = E|X - y| - 1/2 E|X - X'|`` with ``X, X' ~ P`` independent, and ``CRPS`` is
  its one-dimensional case. Lower is better; ``E_y[ES(P, y)]`` is minimised only by the
  law of ``y``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._validation import check_real, concrete_value, is_concrete

__all__ = ["crps", "energy_distance", "energy_score", "energy_score_terms"]


def _mean_dist(a, b):
    sq = jnp.sum(a**2, -1)[:, None] + jnp.sum(b**2, -1)[None, :] - 2.0 * a @ b.T
    return jnp.mean(jnp.sqrt(jnp.maximum(sq, 0.0)))


def energy_distance(x, y):
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (Szekely & Rizzo 2013).

    ``x`` ``[n, d]`` and ``y`` ``[m, d]`` samples; returns a scalar (V-statistic, so the
    self terms include the zero diagonal). Zero iff the distributions agree. Memory is
    ``O(n m)``.
    """
    return 2.0 * _mean_dist(x, y) - _mean_dist(x, x) - _mean_dist(y, y)


def _safe_norm(v):
    """Euclidean norm over the last axis with a zero (not NaN) gradient at ``v = 0``.

    The double ``where`` keeps ``sqrt`` away from 0 in both the forward and the backward
    pass, so coincident samples contribute a zero subgradient.
    """
    sq = jnp.sum(v * v, axis=-1)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _check_lambda(lambda_energy):
    if isinstance(lambda_energy, jax.Array | np.ndarray) and jnp.ndim(lambda_energy) == 0:
        if not is_concrete(lambda_energy):  # traced (an objective's leaf): its owner checks
            return
        lambda_energy = concrete_value(lambda_energy).item()
    check_real("lambda_energy", lambda_energy, 0.0)


def energy_score_terms(samples, y, *, fair=True):
    """The two terms of the ensemble energy score: ``(confinement, interaction)``.

    ``confinement = (1/m) sum_j |X_j - y|`` and ``interaction`` the mean of
    ``|X_j - X_j'|`` over the ``m (m - 1)`` ordered pairs ``j != j'`` (``fair=True``, an
    unbiased U-statistic for ``E|X - X'|``) or over all ``m^2`` pairs, the zero diagonal
    included (``fair=False``, the V-statistic, ``(m - 1) / m`` times the U-statistic).
    ``energy_score = confinement - lambda_energy / 2 * interaction``.

    Args:
        samples: float (or int) ``[..., m, d]`` ensemble of ``m`` samples in ``R^d``.
        y: ``[..., d]`` outcomes; its leading dims broadcast against ``samples[..., 0, :]``.
        fair: see above; ``fair=True`` needs ``m >= 2``.

    Returns:
        ``(confinement, interaction)``, each float ``[...]`` (the broadcast batch shape).
        Memory is ``O(m^2 d)`` per batch element.

    Raises:
        ValueError: ``samples`` not at least 2-D, ``y`` of another trailing size ``d`` or
            non-broadcastable batch dims, or ``fair=True`` with ``m < 2``.
    """
    samples, y = jnp.asarray(samples), jnp.asarray(y)
    if samples.ndim < 2:
        raise ValueError(f"samples must have shape [..., m, d] (>= 2-D), got {samples.shape}")
    m, d = samples.shape[-2:]
    if y.ndim < 1 or y.shape[-1] != d:
        raise ValueError(
            f"y must have shape [..., d] with d={d} (samples' last axis), got {y.shape}"
        )
    try:
        jnp.broadcast_shapes(samples.shape[:-2], y.shape[:-1])
    except ValueError:
        raise ValueError(
            f"y batch shape {y.shape[:-1]} does not broadcast with samples' {samples.shape[:-2]}"
        ) from None
    if m < 1 or (fair and m < 2):
        raise ValueError(f"samples has m={m} ensemble members; fair=True needs m >= 2 (else >= 1)")
    dtype = jnp.result_type(samples.dtype, y.dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    samples, y = samples.astype(dtype), y.astype(dtype)
    confinement = jnp.mean(_safe_norm(samples - y[..., None, :]), axis=-1)
    pair = _safe_norm(samples[..., :, None, :] - samples[..., None, :, :])  # [..., m, m]
    n_pairs = m * (m - 1) if fair else m * m
    interaction = jnp.sum(pair, axis=(-2, -1)) / n_pairs
    return confinement, interaction


def energy_score(samples, y, *, lambda_energy=1.0, fair=True):
    """Ensemble energy score ``mean_j |X_j - y| - (lambda / 2) mean_{j != j'} |X_j - X_j'|``.

    The energy score of Gneiting & Raftery (2007, eq. 22 with ``beta = 1``) estimated from
    an ensemble; with ``lambda_energy = 1`` and ``fair=True`` it is an unbiased estimate
    of ``ES(P, y)`` (a "fair" score: its expectation is minimised by ensembles drawn from
    the law of ``y``). ``lambda_energy < 1`` is the generalised score of De Bortoli et al.
    (2025, "Distributional Diffusion Models with Scoring Rules", eq. 14); only
    ``lambda_energy = 1`` is strictly proper. Gradients are finite when samples coincide
    with each other or with ``y`` (safe norm).

    Args:
        samples: float (or int) ``[..., m, d]``: ``m`` samples in ``R^d`` per outcome.
        y: ``[..., d]`` outcomes (leading dims broadcast with ``samples[..., 0, :]``).
        lambda_energy: weight of the interaction term (finite, ``>= 0``); may be traced.
        fair: mean over the ``m (m - 1)`` pairs ``j != j'`` (unbiased, needs ``m >= 2``),
            or ``False``: over all ``m^2`` pairs (V-statistic; biased upward by
            ``lambda / (2 m) E|X - X'|``).

    Returns:
        float ``[...]`` scores, in the units of ``y``.
    """
    _check_lambda(lambda_energy)
    confinement, interaction = energy_score_terms(samples, y, fair=fair)
    return confinement - 0.5 * lambda_energy * interaction


def crps(samples, y, *, fair=True):
    """Continuous ranked probability score of an ensemble (1-D energy score).

    ``CRPS = mean_j |X_j - y| - 1/2 mean_{j != j'} |X_j - X_j'|`` (Gneiting & Raftery
    2007, eq. 21 in its kernel form); ``fair=True`` is the unbiased ("fair") ensemble
    estimator, ``fair=False`` the V-statistic over all ``m^2`` pairs.

    Args:
        samples: float ``[..., m]``: ``m`` ensemble members per outcome.
        y: float ``[...]`` outcomes (broadcast with ``samples[..., 0]``).
        fair: see :func:`energy_score`.

    Returns:
        float ``[...]`` scores, in the units of ``y``.
    """
    samples, y = jnp.asarray(samples), jnp.asarray(y)
    if samples.ndim < 1:
        raise ValueError(f"samples must have shape [..., m] (>= 1-D), got {samples.shape}")
    return energy_score(samples[..., None], y[..., None], fair=fair)
