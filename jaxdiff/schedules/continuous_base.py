"""The interface of continuous-time schedules (score_sde's ``SDE`` in closed form).

:class:`ContinuousSchedule` is what the continuous samplers plan on; the schedules
themselves live in :mod:`jaxdiff.schedules.continuous` (VP linear, VP cosine) and
:mod:`jaxdiff.schedules.karras` (EDM), both of which import this module (and nothing
imports them back). Notation as in :mod:`jaxdiff.schedules.continuous`:
``x_t = alpha(t) x_0 + sigma(t) eps``, ``dx = f(t) x dt + g(t) dW``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from jaxdiff._broadcast import broadcast_t
from jaxdiff.schedules.checks import check_number

__all__ = ["ContinuousSchedule", "as_time", "check_positive", "param"]


def as_time(t):
    """``t`` as a floating array (integers become the default float dtype)."""
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.zeros(()).dtype)
    return t


def param(value):
    """Return a schedule number as an array of the default float dtype (may be traced)."""
    return jnp.asarray(value, dtype=jnp.zeros(()).dtype)


def check_positive(field: str, value, *, allow_zero: bool = False) -> None:
    """Raise unless ``value`` is a real number ``> 0`` (``>= 0``), checked when concrete.

    Tracers pass; strings, bools and other non-numbers raise ``TypeError``.
    """
    check_number(field, value, low=0.0, low_open=not allow_zero)


@struct.dataclass
class ContinuousSchedule:
    """Interface of a continuous-time schedule (score_sde's ``SDE`` in closed form).

    Subclasses implement ``log_alpha``, ``sigma``, ``log_snr``, ``t_from_log_snr``,
    ``f``, ``g2`` and ``prior_std``; everything else is derived here.

    Attributes:
      num_timesteps: default number of sampler steps (static).
      kind: schedule name (class constant, static).
      variance_preserving: ``alpha^2 + sigma^2 = 1`` (class constant, static).
    """

    num_timesteps: int = struct.field(pytree_node=False, default=1000)

    kind: ClassVar[str] = ""
    variance_preserving: ClassVar[bool] = True

    # --- closed forms supplied by each schedule -------------------------------------
    def log_alpha(self, t):
        """``log alpha(t)``."""
        raise NotImplementedError

    def sigma(self, t):
        """Noise scale ``sigma(t)``."""
        raise NotImplementedError

    def log_snr(self, t):
        """``lambda(t) = log(alpha^2 / sigma^2)``, decreasing in ``t``."""
        raise NotImplementedError

    def t_from_log_snr(self, lam):
        """Inverse of :meth:`log_snr`: the time whose log-SNR is ``lam``."""
        raise NotImplementedError

    def f(self, t):
        """Drift coefficient ``f(t) = d log alpha / dt`` (SDE drift is ``f(t) x``)."""
        raise NotImplementedError

    def g2(self, t):
        """Squared diffusion ``g(t)^2 = d sigma^2/dt - 2 f(t) sigma^2``."""
        raise NotImplementedError

    @property
    def prior_std(self):
        """Scalar standard deviation of the prior ``p_1`` (1 for VP, ``sigma(1)`` for VE)."""
        raise NotImplementedError

    # --- derived -------------------------------------------------------------------
    def alpha(self, t):
        """Signal scale ``alpha(t) = exp(log_alpha(t))``."""
        return jnp.exp(self.log_alpha(t))

    def beta(self, t):
        """``beta(t) = -2 f(t)``: the VP-SDE's beta (Song et al. 2021, eq. 11); 0 for VE."""
        return -2.0 * self.f(t)

    def g(self, t):
        """Diffusion coefficient ``g(t) = sqrt(g2(t))``."""
        return jnp.sqrt(self.g2(t))

    def marginal_mean(self, x0, t):
        """Mean ``alpha(t) x0`` of ``p_t(x | x0)``; ``x0`` ``[B, ...]``, ``t`` scalar or ``[B]``."""
        return broadcast_t(self.alpha(t), x0) * x0

    def marginal_std(self, t):
        """Return the std ``sigma(t)`` of ``p_t(x | x0)`` (same shape as ``t``)."""
        return self.sigma(t)

    def marginal(self, x0, t):
        """``(mean, std)`` of the perturbation kernel (Song et al. 2021, appendix B)."""
        return self.marginal_mean(x0, t), self.marginal_std(t)

    def sde(self, x, t):
        """``(drift, diffusion)`` of the forward SDE: ``(f(t) x, g(t))`` for ``x`` ``[B, ...]``."""
        return broadcast_t(self.f(t), x) * x, self.g(t)

    def prior_sample(self, key, shape, dtype=jnp.float32):
        """Sample ``[*shape]`` from the prior ``N(0, prior_std^2 I)``."""
        return (self.prior_std * jax.random.normal(key, shape, dtype)).astype(dtype)

    def prior_logp(self, z):
        """``[B]`` log-density of ``z`` ``[B, ...]`` under the prior, summed per sample."""
        z = jnp.asarray(z)
        flat = z.reshape(z.shape[0], -1)
        var = jnp.asarray(self.prior_std, flat.dtype) ** 2
        n = flat.shape[1]
        return -0.5 * n * jnp.log(2.0 * math.pi * var) - jnp.sum(flat**2, axis=1) / (2.0 * var)
