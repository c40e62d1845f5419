"""Energy-score posterior for Counting Flows: a noise-driven sampler of ``p(x0 | x_t)``.

Instead of regressing ``E[x0 | x_t]``, a generator ``f(x_t, t, z, eps) -> x0_hat`` with
``eps ~ N(0, I_noise_dim)`` is trained so that the law of ``f(x_t, t, z, eps)`` matches the
bridge posterior ``p(x0 | x_t, t, z)``. The loss is the generalised energy score of De
Bortoli et al. (2025, "Distributional Diffusion Models with Scoring Rules", eq. 14) with
``m`` generator samples ``xhat_ij`` per training example::

    L = mean_i [ (1/m) sum_j |x0_i - xhat_ij| - lambda/2 mean_{j != j'} |xhat_ij - xhat_ij'| ]

which for ``lambda = 1`` is the fair ensemble energy score (Gneiting & Raftery 2007), a
strictly proper scoring rule: its expectation is minimised exactly when the generator's
law equals the posterior. Reference code: github.com/njwfish/counting_flows,
``models/energy.py`` (``EnergyScoreLoss`` with an MLP architecture, torch).

In the engine's ``apply_fn(params, x_t, t, context)`` contract the noise travels in the
context: ``context = {"noise": float [B, noise_dim], "condition": float [B, c] or None}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxdiff._broadcast import broadcast_t
from jaxdiff._keys import example_keys
from jaxdiff._validation import check_int_range, check_real
from jaxdiff.counting.checks import check_counts
from jaxdiff.metrics import energy_score_terms
from jaxdiff.nets.bind import bind
from jaxdiff.nets.embeddings import sinusoidal_embedding
from jaxdiff.train.objectives import as_batch

__all__ = [
    "EnergyScoreObjective",
    "EnergyScorePosterior",
    "posterior_apply",
    "posterior_sampler",
]


def _batch_time(t, x_t):
    """``t`` (scalar, ``[B]`` or ``[B, 1]``) as float32 ``[B, 1]`` for ``x_t`` ``[B, d]``."""
    t = jnp.asarray(t, jnp.float32)
    batch = x_t.shape[0]
    if t.shape not in ((), (batch,), (batch, 1)):
        raise ValueError(f"t has shape {t.shape}; expected (), ({batch},) or ({batch}, 1)")
    return jnp.broadcast_to(broadcast_t(t.reshape(-1) if t.ndim else t, x_t), (batch, 1))


def _split_context(context, batch: int, noise_dim: int):
    """``(noise [B, noise_dim], condition [B, c] or None)`` from the context dict."""
    if not isinstance(context, dict) or "noise" not in context:
        raise TypeError(
            "context must be a dict {'noise': [B, noise_dim], 'condition': [B, c] or None}, "
            f"got {type(context).__name__}"
            + (f" with keys {sorted(context)}" if isinstance(context, dict) else "")
        )
    noise = jnp.asarray(context["noise"])
    if noise.shape != (batch, noise_dim):
        raise ValueError(
            f"context['noise'] has shape {noise.shape}; expected ({batch}, {noise_dim}) "
            "(batch, noise_dim)"
        )
    cond = context.get("condition")
    if cond is not None:
        cond = jnp.asarray(cond)
        if cond.ndim != 2 or cond.shape[0] != batch:
            raise ValueError(
                f"context['condition'] has shape {cond.shape}; expected ({batch}, c) or None"
            )
    return noise, cond


class EnergyScorePosterior(nn.Module):
    """MLP generator ``x0_hat = x_t + net([x_t, t, eps, z])`` (upstream's layout).

    Attributes:
        hidden_dim: width of the hidden layers.
        depth: number of hidden layers (upstream: 3).
        noise_dim: width of the noise input ``eps`` (``>= 1``).
        activation: hidden nonlinearity (upstream: SELU).
        log1p_inputs: feed ``sign(x_t) log1p|x_t|`` instead of raw counts (large counts);
            the residual base stays the raw ``x_t``.
        residual: output ``x_t + net(...)`` (an ``x0`` prediction, upstream); False:
            ``net(...)`` alone (e.g. for ``delta`` bridges, whose target is ``x0 - x_t``).
        time_features: 0 feeds raw ``t`` as one feature (upstream); ``>= 2`` adds that many
            sinusoidal features of ``t``.
        dtype: compute dtype of the dense layers (parameters stay float32); None: float32.
    """

    hidden_dim: int = 64
    depth: int = 3
    noise_dim: int = 16
    activation: Callable = nn.selu
    log1p_inputs: bool = False
    residual: bool = True
    time_features: int = 0
    dtype: Any = None

    def _check_fields(self):
        check_int_range("hidden_dim", self.hidden_dim, 1)
        check_int_range("depth", self.depth, 0)
        check_int_range("noise_dim", self.noise_dim, 1)
        if check_int_range("time_features", self.time_features, 0) == 1:
            raise ValueError("time_features=1 is not allowed; use 0 or an int >= 2")

    @nn.compact
    def __call__(self, x_t, t, context=None):
        """Draw-specific prediction of ``x0``.

        Args:
            x_t: int or float ``[B, d]`` bridge state (counts).
            t: float time in ``[0, 1]``: a scalar, ``[B]`` or ``[B, 1]``.
            context: dict ``{"noise": float [B, noise_dim], "condition": float [B, c] or
                None}`` (``"condition"`` may be absent).

        Returns:
            float ``[B, d]`` (``dtype``, default float32): an ``x0`` sample (or ``net``
            output alone with ``residual=False``).
        """
        self._check_fields()
        x_t = jnp.asarray(x_t)
        if x_t.ndim != 2:
            raise ValueError(f"x_t has shape {x_t.shape}; expected [B, d] (2-D)")
        batch, d = x_t.shape
        dtype = self.dtype or jnp.float32
        t = _batch_time(t, x_t)
        noise, cond = _split_context(context, batch, self.noise_dim)
        xf = x_t.astype(jnp.float32)
        x_in = jnp.sign(xf) * jnp.log1p(jnp.abs(xf)) if self.log1p_inputs else xf
        feats = [x_in, t]
        if self.time_features:
            feats.append(sinusoidal_embedding(t[:, 0], self.time_features))
        feats.append(noise.astype(jnp.float32))
        if cond is not None:
            feats.append(cond.astype(jnp.float32))
        h = jnp.concatenate(feats, axis=-1).astype(dtype)
        for i in range(self.depth):
            h = self.activation(nn.Dense(self.hidden_dim, dtype=self.dtype, name=f"hidden_{i}")(h))
        out = nn.Dense(d, dtype=self.dtype, name="out")(h)
        return xf.astype(out.dtype) + out if self.residual else out


def posterior_apply(module: nn.Module) -> Callable:
    """The engine's ``apply_fn(params, x_t, t, context)`` for ``module``.

    Shorthand for ``jaxdiff.nets.bind(module).apply_fn`` (``t`` broadcast to ``[B]``).
    """
    return bind(module).apply_fn


@struct.dataclass
class EnergyScoreObjective:
    """Energy-score training objective on a Skellam-type bridge (De Bortoli et al. eq. 14).

    Per call: one bridge draw ``(t, x_t, target) = bridge(k_bridge, x, x1)`` for the whole
    (micro-)batch, then ``m_samples`` generator draws per example, each with its own noise
    ``eps ~ N(0, I_noise_dim)``; the loss is the batch mean of
    :func:`jaxdiff.metrics.energy_score` (fair, ``lambda_energy``) between the ``m``
    predictions and ``target`` (``x0``, or ``x0 - x_t`` for ``delta`` bridges).

    Keys: ``key`` is one typed key or the engine's ``[B]`` per-example keys
    (:func:`~jaxdiff.train.objectives.example_keys`). The noise of example ``i`` comes
    from its own key; the bridge draw (which couples the batch: one call, and one shared
    ``t`` with ``homogeneous_time``) uses a key derived from the first example's key, so
    each micro-batch draws its own bridge samples and accumulated gradients equal
    big-batch gradients only in distribution, not bit for bit.

    Batch: ``{"x": int [B, d] data x0, "x1": int [B, d] source, "context": float [B, c]
    (optional)}``. Memory: ``B * m`` model rows and ``B * m^2 * d`` pair differences.

    Attributes:
        bridge: the bridge, ``bridge(key, x0, x1) -> (t [B, 1], x_t int [B, d], target)``
            (static).
        noise_dim: width of the generator's noise (static).
        m_samples: generator samples per example, ``>= 2`` (static).
        lambda_energy: interaction weight (traced); 1 gives the strictly proper score.
    """

    bridge: Any = struct.field(pytree_node=False)
    noise_dim: int = struct.field(pytree_node=False, default=16)
    m_samples: int = struct.field(pytree_node=False, default=16)
    lambda_energy: float = 1.0

    @classmethod
    def create(cls, bridge, *, noise_dim=16, m_samples=16, lambda_energy=1.0):
        """Validate and build (``m_samples >= 2``, ``noise_dim >= 1``, finite ``lambda > 0``)."""
        if not callable(bridge):
            raise TypeError(
                f"bridge must be callable (key, x0, x1) -> (t, x_t, target), got {bridge!r}"
            )
        noise_dim = check_int_range("noise_dim", noise_dim, 1)
        m_samples = check_int_range("m_samples", m_samples, 2)
        lambda_energy = check_real("lambda_energy", lambda_energy, 0.0, strict=True)
        return cls(
            bridge=bridge,
            noise_dim=noise_dim,
            m_samples=m_samples,
            lambda_energy=jnp.asarray(lambda_energy, jnp.float32),
        )

    def __call__(self, key, params, apply_fn, batch) -> tuple[jax.Array, dict]:
        """Return ``(loss, aux)``: the scalar batch-mean energy score and diagnostics.

        ``aux`` holds ``loss``, ``confinement`` and ``interaction`` (batch means of the
        two terms of :func:`~jaxdiff.metrics.energy_score_terms`, the latter without the
        factor ``lambda / 2``), all float32 scalars.
        """
        batch = as_batch(batch)
        if "x1" not in batch:
            raise ValueError(f"batch needs an 'x1' entry (source counts), got keys {sorted(batch)}")
        x0 = check_counts("batch['x']", batch["x"])
        x1 = check_counts("batch['x1']", batch["x1"], x0.shape)
        b, m = x0.shape[0], self.m_samples
        keys = jax.vmap(jax.random.split)(example_keys(key, b))  # [B, 2]
        t, x_t, target = self.bridge(keys[0, 0], x0, x1)
        noise = jax.vmap(lambda k: jax.random.normal(k, (m, self.noise_dim)))(keys[:, 1])
        cond = batch.get("context")
        if cond is not None:
            cond = jnp.repeat(jnp.asarray(cond), m, axis=0)
        preds = apply_fn(
            params,
            jnp.repeat(x_t, m, axis=0),
            jnp.repeat(t.reshape(-1), m, axis=0),
            {"noise": noise.reshape(b * m, self.noise_dim), "condition": cond},
        )
        preds = jnp.asarray(preds).astype(jnp.float32).reshape(b, m, -1)
        target = target.astype(jnp.float32)
        conf, inter = energy_score_terms(preds, target)  # the pair distances, once
        loss = jnp.mean(conf - 0.5 * self.lambda_energy * inter)  # = energy_score
        aux = jax.lax.stop_gradient({"confinement": jnp.mean(conf), "interaction": jnp.mean(inter)})
        return loss, {"loss": loss, **aux}


def posterior_sampler(apply_fn: Callable, params, *, noise_dim: int) -> Callable:
    """``model(key, x_t, t, context)`` for ``bridge.sample``: one posterior draw per row.

    Draws ``eps ~ N(0, I)`` ``[B, noise_dim]`` from ``key`` and returns the float ``[B, d]``
    ``apply_fn(params, x_t, t [B], {"noise": eps, "condition": context})`` (the bridge
    sampler rounds it).
    """
    if not callable(apply_fn):
        raise TypeError(
            f"apply_fn must be callable (params, x_t, t, context), got {apply_fn!r:.60}"
        )
    noise_dim = check_int_range("noise_dim", noise_dim, 1)

    def model(key, x_t, t, context=None):
        batch = jnp.shape(x_t)[0]
        noise = jax.random.normal(key, (batch, noise_dim))
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32).reshape(-1), (batch,))
        return apply_fn(params, x_t, t, {"noise": noise, "condition": context})

    return model
