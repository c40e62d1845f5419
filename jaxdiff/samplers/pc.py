"""Predictor-corrector (PC) sampling for continuous-time schedules.

Song et al. (2021), "Score-Based Generative Modeling through SDEs", section 4.2,
Algorithm 1 and appendix G.

Notation: time grid ``t_0 = 1 > t_1 > ... > t_{N-1} = t_min`` (``N = num_steps``) and
``t_N = 0``; at step ``i`` the model is evaluated at ``t = t_i``, ``s = score(x, t) =
-eps / sigma(t)``. Step ``i`` moves the state from ``t_i`` to ``t_{i+1}``:

1. corrector (``n_corrector_steps`` times, each a model call): annealed Langevin
   dynamics at ``t_i`` (Algorithms 4 and 5): ``e = 2 a_i^2 (r ||z|| / ||s||)^2``,
   ``x <- x + e s + sqrt(2 e) z``, with target ``snr = r``, norms per sample averaged
   over the batch (as score_sde does; or each sample's own, ``corrector_norm``), and
   ``a_i^2 = alpha(t_i)^2 / alpha(t_{i+1})^2`` (score_sde's ``alpha_i = 1 - beta_i``; 1 for
   variance-exploding schedules);
2. predictor (one model call):

   * ``reverse_diffusion`` (appendix E, eq. 46): discretise the forward SDE between
     ``t_{i+1}`` and ``t_i`` as ``x_i = a_i x_{i+1} + G_i z`` with ``a_i = alpha(t_i) /
     alpha(t_{i+1})`` and ``G_i^2 = sigma(t_i)^2 - a_i^2 sigma(t_{i+1})^2`` (VP: ``a_i =
     sqrt(1 - beta_i)``, ``G_i^2 = beta_i``; VE: ``G_i^2 = sigma_i^2 - sigma_{i+1}^2``);
     then ``x_mean = x - (a_i - 1) x + G_i^2 s`` and ``x <- x_mean + G_i z``;
   * ``euler_maruyama``: the reverse SDE ``dx = [f x - g^2 s] dt + g dW`` (eq. 6) with
     ``dt = t_{i+1} - t_i < 0``: ``x_mean = x + (f x - g^2 s) dt``,
     ``x <- x_mean + g sqrt(-dt) z``.

With ``denoise_final`` the last predictor step returns the model's ``x0`` estimate at
``t_min`` (Tweedie's posterior mean) instead of stepping to ``t = 0``; score_sde's
``noise_removal`` returns the last predictor's ``x_mean``, which agrees to first order.
Unlike score_sde, whose discretisation indexes a fixed ``N``-point beta table and takes
``dt = -1/N``, we use the exact schedule values on the actual grid.

Each scan row is one model call, so ``NFE = N (1 + n_corrector_steps)`` (``N`` when
``corrector="none"``). The Euler-Maruyama predictor is stiff where ``beta(t) dt`` is
large (the cosine schedule near ``t = 1``); ``reverse_diffusion`` is the robust default.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff._broadcast import broadcast_t
from jaxdiff._validation import check_int_range
from jaxdiff.samplers.base import check_knob, set_choice
from jaxdiff.samplers.continuous_base import ContinuousMethod
from jaxdiff.samplers.driver import Plan
from jaxdiff.samplers.noise import normal_like

__all__ = ["CORRECTORS", "CORRECTOR_NORMS", "PREDICTORS", "PredictorCorrector"]

PREDICTORS = ("reverse_diffusion", "euler_maruyama")
CORRECTORS = ("langevin", "none")
CORRECTOR_NORMS = ("batch", "example")


def _sample_norms(v, how: str):
    """Per-sample Euclidean norms of ``v`` ``[B, ...]``, for the Langevin step size.

    ``how="batch"``: their batch mean (a scalar); ``"example"``: ``[B, 1, ..., 1]``.
    """
    norms = jnp.linalg.norm(v.reshape(v.shape[0], -1), axis=-1)
    if how == "batch":
        return jnp.mean(norms)
    return broadcast_t(norms, v)


@struct.dataclass
class PredictorCorrector(ContinuousMethod):
    """Predictor-corrector sampler config (score_sde's ``pc_sampler``).

    Attributes:
      predictor: ``reverse_diffusion`` or ``euler_maruyama`` (static).
      corrector: ``langevin`` or ``none`` (static).
      n_corrector_steps: Langevin steps (model calls) per time step (static, >= 0).
      snr: Langevin target signal-to-noise ratio ``r`` (traced), default 0.16.
      corrector_norm: ``batch`` (the step size from norms averaged over the batch, as
        score_sde and diffusers do: a sample then depends on the rest of its batch) or
        ``example`` (each sample's own norms: batch-invariant with per-example keys,
        see :mod:`jaxdiff.samplers.noise`) (static).
      (and ``num_steps``, ``prediction_type``, ``t_min``, ``denoise_final`` from
      :class:`~jaxdiff.samplers.continuous_base.ContinuousMethod`).
    """

    predictor: str = struct.field(pytree_node=False, default="reverse_diffusion")
    corrector: str = struct.field(pytree_node=False, default="langevin")
    n_corrector_steps: int = struct.field(pytree_node=False, default=1)
    snr: float = 0.16
    corrector_norm: str = struct.field(pytree_node=False, default="batch")

    def __post_init__(self):
        super().__post_init__()
        set_choice(self, "predictor", PREDICTORS)
        set_choice(self, "corrector", CORRECTORS)
        set_choice(self, "corrector_norm", CORRECTOR_NORMS)
        check_int_range("n_corrector_steps", self.n_corrector_steps, 0)
        check_knob(self, "snr", low=0.0)

    def _names(self):
        c = 0 if self.corrector == "none" else int(self.n_corrector_steps)
        return self.predictor, self.corrector, c

    def plan(self, schedule) -> Plan:
        """``K = N (1 + C)`` rows: ``C`` corrector rows then one predictor row per step."""
        n = self.validate(schedule)
        _, _, c = self._names()
        ts = self.time_grid(n)
        t_next = jnp.concatenate([ts[1:], jnp.zeros((1,), ts.dtype)])
        alpha, sigma = schedule.alpha(ts), schedule.sigma(ts)
        a = alpha / schedule.alpha(t_next)
        per_step = {
            "alpha": alpha,
            "sigma": sigma,
            "a": a,
            "G2": jnp.maximum(sigma**2 - (a * schedule.sigma(t_next)) ** 2, 0.0),
            "f": schedule.f(ts),
            "g2": schedule.g2(ts),
            "dt": t_next - ts,
        }
        rows = {k: jnp.repeat(v, c + 1) for k, v in per_step.items()}
        rows["corrector"] = jnp.asarray(np.tile([True] * c + [False], n))
        rows["final"] = jnp.asarray(np.arange(n * (c + 1)) == n * (c + 1) - 1)
        return Plan(
            timesteps=jnp.repeat(ts, c + 1).astype(jnp.float32),
            steps=rows,
            init_noise_sigma=schedule.prior_std,
        )

    def init_state(self, x, plan):
        """Single-step method: no state."""
        return ()

    def step(self, key, state, x, model_output, step):
        """One corrector or predictor update (which one is given by ``step["corrector"]``)."""
        predictor, _, c = self._names()
        x0, _, score = self.predict(model_output, x, step["alpha"], step["sigma"])
        z = normal_like(key, x)
        # 1. Langevin corrector (Algorithms 4-5): e = 2 a_i^2 (r ||z|| / ||s||)^2
        if c > 0:
            how = self.corrector_norm
            ratio = self.snr * _sample_norms(z, how) / _sample_norms(score, how)
            e = 2.0 * step["a"] ** 2 * ratio**2
            x_corr = x + e * score + jnp.sqrt(2.0 * e) * z
        # 2. predictor
        if predictor == "reverse_diffusion":
            # x_mean = x - f_i(x) + G_i^2 s with f_i(x) = (a_i - 1) x (appendix E, eq. 46)
            x_mean = (2.0 - step["a"]) * x + step["G2"] * score
            x_new = x_mean + jnp.sqrt(step["G2"]) * z
        else:
            # Euler-Maruyama on the reverse SDE (eq. 6), dt < 0
            drift = step["f"] * x - step["g2"] * score
            x_mean = x + drift * step["dt"]
            x_new = x_mean + jnp.sqrt(-step["g2"] * step["dt"]) * z
        if self.denoise_final:
            # 3. last row: return E[x0 | x_{t_min}] instead of the last noisy step
            x_new = jnp.where(step["final"], x0.astype(x.dtype), x_new)
        if c > 0:
            x_new = jnp.where(step["corrector"], x_corr, x_new)
        return state, x_new.astype(x.dtype)
