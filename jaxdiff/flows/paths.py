"""Probability paths of conditional flow matching: ``x_t = alpha(t) x0 + beta(t) x1 + gamma(t) z``.

Notation: ``x0`` ``[B, ...]`` data (``t = 0``), ``x1`` ``[B, ...]`` source / noise samples
(``t = 1``) paired with it, ``z ~ N(0, I)`` ``[B, ...]``, ``t`` a scalar or ``[B]`` in
``[0, 1]``. A path is a Gaussian conditional ``p_t(x | x0, x1) = N(mu_t, sigma_t^2 I)`` with
``mu_t = alpha(t) x0 + beta(t) x1`` and ``sigma_t = gamma(t)``; its conditional velocity
is the time derivative of the sample at fixed ``(x0, x1, z)``,
``u_t = alpha' x0 + beta' x1 + gamma' z = mu_t' + (gamma' / gamma) (x_t - mu_t)``, and its
conditional score is ``grad_x log p_t(x | x0, x1) = -(x - mu_t) / sigma_t^2 = -z / gamma``.
A network regressed onto ``u_t`` (onto ``-z / gamma``) learns the marginal velocity
``E[u_t | x_t]`` (the score ``grad log p_t``), which transports the marginals ``p_t``
(Lipman et al. 2023; Tong et al. 2023; Albergo, Boffi & Vanden-Eijnden 2023).

**Time convention** (jaxdiff's, :mod:`jaxdiff.train.objectives`): ``t = 0`` is data,
``t = 1`` is the source. torchcfm (Tong et al. 2023), Lipman et al. 2023 and Albergo et
al. 2023 run time the other way: their ``x0`` is our ``x1`` (source), their ``x1`` our
``x0`` (data), their ``t`` is our ``1 - t`` and their velocity is minus ours:
``u_ours(x, t) = -u_torchcfm(x, 1 - t)``, with the same ``x_t``, ``sigma_t`` and score.

Paths (one struct, :class:`ProbabilityPath`, two static choices):

* :func:`independent_path` -- ``alpha = 1 - t``, ``beta = t``, constant ``gamma = sigma``
  (default 0: the rectified-flow path of
  :class:`~jaxdiff.train.objectives.FlowMatchingObjective`), ``u_t = x1 - x0``: I-CFM /
  OT-CFM (Tong et al. 2023, eqs. 14-15; torchcfm's ``ConditionalFlowMatcher``). At
  ``sigma = 0`` it is rectified flow (Liu et al. 2023) and Lipman et al. 2023's OT path
  (sec. 4.1) with ``sigma_min = 0``; for ``sigma_min > 0`` theirs shrinks the noise
  linearly (torchcfm's ``TargetConditionalFlowMatcher``), which is not this path.
* :func:`schrodinger_bridge_path` -- the Brownian bridge of ``dX = sigma dW``:
  ``gamma = sigma sqrt(t (1 - t))``, ``u_t = x1 - x0 + (1 - 2t) / (2 t (1 - t)) (x_t - mu_t)``
  (Tong et al. 2023, eqs. 20-21; torchcfm's ``SchrodingerBridgeConditionalFlowMatcher``).
  With pairs from the *static* Schrödinger bridge -- the entropic OT plan of the cost
  ``|x0 - x1|^2`` (not halved) at ``epsilon = 2 sigma^2`` -- its marginals are the
  Schrödinger bridge's. **sigma vs epsilon**: the reference process ``dX = sigma dW`` on
  ``[0, 1]`` has the transition density ``exp(-|x0 - x1|^2 / (2 sigma^2))``, so the static
  problem ``min KL(P | R_01)`` is ``min E_P |x0 - x1|^2 / (2 sigma^2) + KL(P | mu x nu)``;
  times ``2 sigma^2`` it is entropic OT ``min <P, C> + epsilon KL(P | a b^T)`` with
  ``epsilon = 2 sigma^2`` *absolute* -- POT's ``reg`` and
  ``jaxdiff.ot.ot_pairs(..., epsilon=2 * sigma**2, relative_epsilon=False)``, not a
  fraction of the mean cost and not ``sigma`` or ``sigma^2`` (Tong et al. 2023, SB-CFM;
  Bunne et al. 2023, "The Schrödinger bridge between Gaussian measures has a closed form").
* :func:`interpolant_path` -- stochastic interpolants (Albergo, Boffi & Vanden-Eijnden
  2023, "Stochastic Interpolants: A Unifying Framework for Flows and Diffusions"):
  ``x_t = alpha x0 + beta x1 + gamma z`` with ``gamma = sigma sqrt(t (1 - t))`` (their
  ``gamma = sqrt(a t (1 - t))`` with ``a = sigma^2``) and a linear (``alpha = 1 - t``,
  ``beta = t``) or trigonometric (``alpha = cos(pi t / 2)``, ``beta = sin(pi t / 2)``)
  interpolant; velocity ``b = E[u_t | x_t]`` and score ``s = E[-z / gamma | x_t]``. The
  linear one is the Schrödinger-bridge path: SB-CFM is this interpolant on entropic pairs.

Where ``gamma = 0`` (the bridge's endpoints, ``sigma = 0``) ``u_t`` takes ``gamma' /
gamma = 0`` (there ``x_t = mu_t``), and the score is undefined (non-finite).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import struct

from jaxdiff._broadcast import broadcast_t
from jaxdiff._keys import example_keys
from jaxdiff._validation import check_choice, check_real_array
from jaxdiff.train.objectives import _noise, _number

__all__ = [
    "INTERPOLATIONS",
    "NOISES",
    "ProbabilityPath",
    "independent_path",
    "interpolant_path",
    "schrodinger_bridge_path",
]

#: ``alpha(t), beta(t)``: ``"linear"`` ``(1 - t, t)``, ``"trig"`` ``(cos, sin)(pi t / 2)``.
INTERPOLATIONS = ("linear", "trig")
#: ``gamma(t)``: ``"constant"`` ``sigma``, ``"bridge"`` ``sigma sqrt(t (1 - t))``.
NOISES = ("constant", "bridge")


@struct.dataclass
class ProbabilityPath:
    """``x_t = alpha(t) x0 + beta(t) x1 + gamma(t) z`` (see the module docstring).

    Build with :func:`independent_path`, :func:`schrodinger_bridge_path` or
    :func:`interpolant_path` (which check their arguments); the struct itself takes
    any (also traced) ``sigma``.

    Attributes:
      sigma: noise scale ``>= 0`` (traced; same units as ``x``).
      interpolation: ``"linear"`` or ``"trig"`` (static).
      noise: ``"constant"`` or ``"bridge"`` (static).
    """

    sigma: Any = 0.0
    interpolation: str = struct.field(pytree_node=False, default="linear")
    noise: str = struct.field(pytree_node=False, default="constant")

    def _alpha_beta(self, t):
        """``(alpha, beta, alpha', beta')`` at ``t`` (same shape as ``t``)."""
        if self.interpolation == "linear":
            one = jnp.ones_like(t)
            return 1.0 - t, t, -one, one
        half_pi = 0.5 * jnp.pi
        c, s = jnp.cos(half_pi * t), jnp.sin(half_pi * t)
        return c, s, -half_pi * s, half_pi * c

    def _log_gamma_rate(self, t):
        """``gamma' / gamma`` at ``t``, 0 where ``gamma = 0``."""
        if self.noise == "constant":
            return jnp.zeros_like(t)
        den = 2.0 * t * (1.0 - t)
        return jnp.where(den > 0, (1.0 - 2.0 * t) / jnp.where(den > 0, den, 1.0), 0.0)

    def sigma_t(self, t):
        """``gamma(t)``, shape of ``t``: the conditional standard deviation."""
        t = jnp.asarray(t)
        sigma = jnp.asarray(self.sigma, t.dtype)
        if self.noise == "constant":
            return sigma * jnp.ones_like(t)
        return sigma * jnp.sqrt(jnp.clip(t * (1.0 - t), 0.0))

    def mu_t(self, x0, x1, t):
        """``alpha(t) x0 + beta(t) x1`` ``[B, ...]``: the conditional mean."""
        x0, x1, t = _checked(x0, x1, t)
        alpha, beta, _, _ = self._alpha_beta(t)
        return broadcast_t(alpha, x0) * x0 + broadcast_t(beta, x0) * x1

    def u_t(self, x0, x1, t, xt):
        """Conditional velocity ``d x_t / dt`` at ``xt`` ``[B, ...]`` (our time direction).

        ``alpha' x0 + beta' x1 + (gamma' / gamma) (xt - mu_t)``; at ``xt = mu_t + gamma z``
        this is ``alpha' x0 + beta' x1 + gamma' z``.
        """
        x0, x1, t = _checked(x0, x1, t)
        xt = _same_shape("xt", xt, x0)
        alpha, beta, d_alpha, d_beta = self._alpha_beta(t)
        mu = broadcast_t(alpha, x0) * x0 + broadcast_t(beta, x0) * x1
        d_mu = broadcast_t(d_alpha, x0) * x0 + broadcast_t(d_beta, x0) * x1
        return d_mu + broadcast_t(self._log_gamma_rate(t), x0) * (xt - mu)

    def score_t(self, x0, x1, t, xt):
        """Conditional score ``-(xt - mu_t) / sigma_t^2`` ``[B, ...]`` (needs ``sigma_t > 0``)."""
        x0, x1, t = _checked(x0, x1, t)
        xt = _same_shape("xt", xt, x0)
        return -(xt - self.mu_t(x0, x1, t)) / broadcast_t(self.sigma_t(t), x0) ** 2

    def sample_xt(self, key, x0, x1, t):
        """Draw ``x_t ~ N(mu_t, sigma_t^2 I)``; returns ``(xt, z)``, both ``[B, ...]``.

        Args:
          key: one key (split into ``B`` per-example keys) or ``[B]`` per-example keys
            (:func:`jaxdiff._keys.example_keys`): row ``i``'s ``z`` depends on its key only.
          x0: ``[B, ...]`` data rows.
          x1: ``[B, ...]`` paired source rows.
          t: scalar or ``[B]`` times.

        Returns:
          ``xt = mu_t + sigma_t z`` and the standard normal ``z`` used.
        """
        x0, x1, t = _checked(x0, x1, t)
        z = _noise(example_keys(key, x0.shape[0]), x0)
        return self.mu_t(x0, x1, t) + broadcast_t(self.sigma_t(t), x0) * z, z


def _same_shape(field: str, value, ref):
    arr = check_real_array(field, value)
    if arr.shape != ref.shape:
        raise ValueError(f"{field} must have the shape of x0 {ref.shape}, got {arr.shape}")
    return arr


def _checked(x0, x1, t):
    """``x0``, ``x1`` real ``[B, ...]`` arrays of one shape; ``t`` a float ``()`` or ``[B]``."""
    x0 = check_real_array("x0", x0)
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        x0 = x0.astype(jnp.zeros(()).dtype)
    x1 = _same_shape("x1", x1, x0).astype(x0.dtype)
    t = jnp.asarray(t)
    if t.dtype == jnp.bool_ or not jnp.issubdtype(t.dtype, jnp.number):
        raise TypeError(f"t must be a real scalar or [B] array, got dtype {t.dtype}")
    if t.shape not in ((), (x0.shape[0],)):
        raise ValueError(f"t must be a scalar or have shape [B]=({x0.shape[0]},), got {t.shape}")
    return x0, x1, t.astype(x0.dtype)


def independent_path(sigma=0.0) -> ProbabilityPath:
    """The I-CFM / OT-CFM path ``(1 - t) x0 + t x1 + sigma z``, ``u_t = x1 - x0``.

    Args:
      sigma: constant noise ``>= 0`` (torchcfm's ``ConditionalFlowMatcher(sigma)``); 0 is
        :class:`~jaxdiff.train.objectives.FlowMatchingObjective`'s rectified-flow path.
    """
    return ProbabilityPath(sigma=_number("sigma", sigma, 0.0))


def schrodinger_bridge_path(sigma=1.0) -> ProbabilityPath:
    """The Brownian-bridge path of ``dX = sigma dW``: ``gamma = sigma sqrt(t (1 - t))``.

    Pair its endpoints by the entropic plan with ``epsilon = 2 sigma^2`` (absolute, cost
    ``|x0 - x1|^2``) for SB-CFM (see the module docstring).

    Args:
      sigma: diffusion coefficient of the reference Brownian motion, ``> 0``.
    """
    return ProbabilityPath(sigma=_number("sigma", sigma, 0.0, strict=True), noise="bridge")


def interpolant_path(sigma=1.0, interpolation: str = "linear") -> ProbabilityPath:
    """A stochastic interpolant with ``gamma = sigma sqrt(t (1 - t))`` (Albergo et al. 2023).

    Args:
      sigma: ``>= 0`` (their ``a = sigma^2``; 0 is a deterministic interpolant).
      interpolation: ``"linear"`` (``1 - t, t``) or ``"trig"`` (``cos, sin`` of ``pi t / 2``).
    """
    return ProbabilityPath(
        sigma=_number("sigma", sigma, 0.0),
        interpolation=check_choice("interpolation", interpolation, INTERPOLATIONS),
        noise="bridge",
    )
