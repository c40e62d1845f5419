"""Continuous-time noise schedules (the SDE view) as pytrees.

Over continuous time ``t`` in ``[0, 1]`` data is corrupted as
``x_t = alpha(t) x_0 + sigma(t) eps``, the marginal of the linear SDE

    ``dx = f(t) x dt + g(t) dW``    (Song et al. 2021, "Score-Based Generative Modeling
    through Stochastic Differential Equations", eq. 5 and appendix B),

with ``f(t) = d log alpha / dt`` and ``g(t)^2 = d sigma^2 / dt - 2 f(t) sigma(t)^2``
(Kingma et al. 2021, "Variational Diffusion Models", appendix; Lu et al. 2022,
DPM-Solver, sec. 2). We also expose ``beta(t) = -2 f(t)`` (the ``beta`` of the VP-SDE,
eq. 11; zero for variance-exploding schedules) and the log signal-to-noise ratio
``log_snr(t) = log(alpha^2 / sigma^2)`` (VDM, eq. 3).

Each schedule is a ``flax.struct`` dataclass whose numbers (``beta_min``,
``sigma_max`` ...) are traced pytree leaves, so schedules pass through ``jit`` and
``vmap`` (for example a vmap over ``beta_max``); the kind is the class (static), and
``num_timesteps`` (static) is the default number of steps samplers use. Methods take
``t`` of any shape and return arrays of that shape in ``t``'s float dtype (float32, or
float64 under ``jax_enable_x64``).

Schedules here: :class:`VPLinearSchedule` (``"linear"``), :class:`VPCosineSchedule`
(``"cosine"``) and :class:`~jaxdiff.schedules.karras.KarrasSchedule` (``"karras"``);
:func:`make_schedule` builds one by name.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from jaxdiff._registry import Registry
from jaxdiff.schedules.checks import check_timesteps
from jaxdiff.schedules.continuous_base import ContinuousSchedule, as_time, check_positive, param
from jaxdiff.schedules.karras import KarrasSchedule

__all__ = [
    "CONTINUOUS_SCHEDULES",
    "ContinuousSchedule",  # re-exported from continuous_base
    "VPCosineSchedule",
    "VPLinearSchedule",
    "make_schedule",
]

# name -> schedule class, for make_schedule (the names users type)
CONTINUOUS_SCHEDULES: Registry[type] = Registry("name")


@CONTINUOUS_SCHEDULES.register("linear")
@struct.dataclass
class VPLinearSchedule(ContinuousSchedule):
    """VP-SDE with linear ``beta(t) = beta_min + t (beta_max - beta_min)``.

    Song et al. (2021), eq. 11 and appendix B: ``log alpha(t) = -t^2 (beta_max -
    beta_min) / 4 - t beta_min / 2`` and ``sigma(t)^2 = 1 - alpha(t)^2``; ``g(t)^2 =
    beta(t)``.

    Attributes:
      beta_min: ``beta(0)`` (traced), default 0.1.
      beta_max: ``beta(1)`` (traced), default 20.
    """

    beta_min: Any = 0.1
    beta_max: Any = 20.0

    kind: ClassVar[str] = "linear"

    @classmethod
    def create(cls, num_timesteps: int = 1000, beta_min=0.1, beta_max=20.0) -> VPLinearSchedule:
        """Build with validation (concrete values are range-checked)."""
        check_timesteps("num_timesteps", num_timesteps)
        check_positive("beta_min", beta_min, allow_zero=True)
        check_positive("beta_max", beta_max)
        return cls(num_timesteps=num_timesteps, beta_min=param(beta_min), beta_max=param(beta_max))

    def beta(self, t):
        """``beta(t) = beta_min + t (beta_max - beta_min)`` (Song et al. 2021, eq. 11)."""
        return self.beta_min + as_time(t) * (self.beta_max - self.beta_min)

    def log_alpha(self, t):
        """``-t^2 (beta_max - beta_min) / 4 - t beta_min / 2`` (appendix B)."""
        t = as_time(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def sigma(self, t):
        """``sqrt(1 - alpha^2)``, computed with ``expm1`` for accuracy near ``t = 0``."""
        return jnp.sqrt(-jnp.expm1(2.0 * self.log_alpha(t)))

    def log_snr(self, t):
        """``2 log alpha - log(1 - alpha^2)``."""
        la2 = 2.0 * self.log_alpha(t)
        return la2 - jnp.log(-jnp.expm1(la2))

    def t_from_log_snr(self, lam):
        """Invert in closed form: the root of ``d t^2 / 2 + beta_min t = -log sigmoid(lam)``.

        With ``d = beta_max - beta_min`` and ``L = log sigmoid(lam)`` the root is written
        ``t = -2 L / (beta_min + sqrt(beta_min^2 - 2 d L))``, stable also for ``d = 0``.
        """
        lam = as_time(lam)
        log_ab = -jax.nn.softplus(-lam)
        d = self.beta_max - self.beta_min
        return -2.0 * log_ab / (self.beta_min + jnp.sqrt(self.beta_min**2 - 2.0 * d * log_ab))

    def f(self, t):
        """``-beta(t) / 2``."""
        return -0.5 * self.beta(t)

    def g2(self, t):
        """``beta(t)``."""
        return self.beta(t)

    @property
    def prior_std(self):
        """The VP prior is ``N(0, I)``."""
        return jnp.ones((), jnp.asarray(self.beta_max).dtype)


@CONTINUOUS_SCHEDULES.register("cosine")
@struct.dataclass
class VPCosineSchedule(ContinuousSchedule):
    """VP schedule with the cosine ``alpha_bar`` of Nichol & Dhariwal (2021), eq. 17.

    ``alpha_bar(u) = cos^2(phi(u)) / cos^2(phi(0))`` with ``phi(u) = (u + s) / (1 + s)
    pi / 2``. Its beta, ``-d log alpha_bar / du = pi / (1 + s) tan(phi(u))``, diverges at
    ``u = 1``; as in DPM-Solver's cosine schedule (Lu et al. 2022, appendix), time is
    clipped to ``u_max`` where that beta reaches ``max_beta``. To keep the SDE smooth and
    ``t`` in ``[0, 1]``, we rescale rather than clamp: ``u = t u_max``, so ``beta(t) =
    u_max pi / (1 + s) tan(phi(t u_max))`` stays finite. With the default ``max_beta =
    999``, ``u_max ~ 0.998`` and ``alpha(1) ~ 3e-3``.

    Numerics: we work with the complementary angle ``psi(t) = pi/2 - phi(t u_max)``,
    which is linear in ``t`` from ``psi_0 = pi / (2 (1 + s))`` to ``psi_1 =
    atan(pi / (max_beta (1 + s)))``; then ``alpha = sin(psi) / sin(psi_0)`` stays
    accurate in float32 where ``cos(phi)`` would cancel near ``t = 1``.

    Attributes:
      s: offset ``s`` (traced), default 0.008.
      max_beta: bound on the unrescaled beta that fixes ``u_max`` (traced), default 999.
    """

    s: Any = 0.008
    max_beta: Any = 999.0

    kind: ClassVar[str] = "cosine"

    @classmethod
    def create(cls, num_timesteps: int = 1000, s=0.008, max_beta=999.0) -> VPCosineSchedule:
        """Build with validation (concrete values are range-checked)."""
        check_timesteps("num_timesteps", num_timesteps)
        check_positive("s", s, allow_zero=True)
        check_positive("max_beta", max_beta)
        return cls(num_timesteps=num_timesteps, s=param(s), max_beta=param(max_beta))

    def _psi_ends(self):
        psi0 = 0.5 * math.pi / (1.0 + self.s)
        psi1 = jnp.arctan(math.pi / (self.max_beta * (1.0 + self.s)))
        return psi0, psi1

    @property
    def u_max(self):
        """Unrescaled time ``1 - (1 + s) (2 / pi) psi_1`` at which the beta is ``max_beta``."""
        return 1.0 - (1.0 + self.s) * (2.0 / math.pi) * self._psi_ends()[1]

    def _psi(self, t):
        psi0, psi1 = self._psi_ends()
        return psi0 + as_time(t) * (psi1 - psi0)

    def log_alpha(self, t):
        """``log cos(phi) - log cos(phi(0)) = log sin(psi) - log sin(psi_0)``."""
        return jnp.log(jnp.sin(self._psi(t))) - jnp.log(jnp.sin(self._psi_ends()[0]))

    def _sigma2_times_c0(self, t):
        # sigma^2 sin^2(psi0) = sin^2(psi0) - sin^2(psi) = sin(psi0 - psi) sin(psi0 + psi)
        psi, psi0 = self._psi(t), self._psi_ends()[0]
        return jnp.sin(psi0 - psi) * jnp.sin(psi0 + psi)

    def sigma(self, t):
        """``sqrt(1 - alpha^2)`` in a cancellation-free form."""
        return jnp.sqrt(self._sigma2_times_c0(t)) / jnp.sin(self._psi_ends()[0])

    def log_snr(self, t):
        """``2 log sin(psi) - log(sin(psi_0 - psi) sin(psi_0 + psi))``."""
        return 2.0 * jnp.log(jnp.sin(self._psi(t))) - jnp.log(self._sigma2_times_c0(t))

    def t_from_log_snr(self, lam):
        """Invert in closed form: ``sin^2(psi) = sin^2(psi_0) sigmoid(lam)``, via ``atan2``."""
        lam = as_time(lam)
        psi0, psi1 = self._psi_ends()
        sin_psi = jnp.sin(psi0) * jnp.sqrt(jax.nn.sigmoid(lam))
        cos_psi = jnp.sqrt(jnp.cos(psi0) ** 2 + jnp.sin(psi0) ** 2 * jax.nn.sigmoid(-lam))
        return (psi0 - jnp.arctan2(sin_psi, cos_psi)) / (psi0 - psi1)

    def f(self, t):
        """``d log alpha / dt = (psi_1 - psi_0) / tan(psi)``."""
        psi0, psi1 = self._psi_ends()
        return (psi1 - psi0) / jnp.tan(self._psi(t))

    def g2(self, t):
        """``beta(t)`` (variance preserving)."""
        return self.beta(t)

    @property
    def prior_std(self):
        """The VP prior is ``N(0, I)``."""
        return jnp.ones((), jnp.asarray(self.s).dtype)


def make_schedule(name, num_timesteps: int = 1000, **kwargs) -> ContinuousSchedule:
    """Build a continuous schedule by name.

    Args:
      name: ``"linear"`` (VP-SDE; kwargs ``beta_min``, ``beta_max``), ``"cosine"``
        (VP cosine; ``s``, ``max_beta``) or ``"karras"`` (EDM variance exploding;
        ``sigma_min``, ``sigma_max``, ``rho``). Case-insensitive.
      num_timesteps: default number of steps samplers take on it (static, >= 1).
      **kwargs: the schedule's numbers (may be traced, e.g. under ``vmap``).

    Returns:
      A :class:`ContinuousSchedule`.

    Raises:
      ValueError: unknown ``name`` (the message lists the choices) or bad values.
      TypeError: a keyword the schedule does not take.
    """
    cls = CONTINUOUS_SCHEDULES.get(name)
    name = CONTINUOUS_SCHEDULES.canonical(name)
    allowed = [f.name for f in dataclasses.fields(cls) if f.name != "num_timesteps"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"make_schedule({name!r}) got unknown keywords {unknown}; allowed: {allowed}"
        )
    return cls.create(num_timesteps=num_timesteps, **kwargs)


CONTINUOUS_SCHEDULES.register("karras", KarrasSchedule)
