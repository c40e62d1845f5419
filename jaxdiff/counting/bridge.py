"""Skellam birth-death bridge between integer vectors (Counting Flows).

Notation (paper: Counting Flows, "Count-based Flow Matching"; code:
github.com/njwfish/counting_flows, ``bridges/cupy/skellam.py``). Data ``x0`` sits at
``t = 0``, the source ``x1`` at ``t = 1``; sampling runs from ``t = 1`` down to ``t = 0``.
For one entry with ``diff = x1 - x0`` and slack ``M``:

1. ``N_1 = |diff| + 2 M`` jumps, ``B_1 = (N_1 + diff) / 2`` of them births ("up"),
   ``N_1 - B_1`` deaths;
2. ``N_t ~ Binomial(N_1, w(t))``, ``B_t | N_t ~ Hypergeometric(B_1, N_1 - B_1, N_t)``
   (drawn in the equivalent form ``B_t ~ Binomial(B_1, w)``, ``N_t - B_t ~ Binomial(N_1 -
   B_1, w)``, see ``skellam_thin``);
3. ``x_t = x0 + 2 B_t - N_t`` (so ``x_0 = x0`` and ``x_1 = x1`` exactly).

Steps 2-3 thin the births and the deaths independently with probability ``w(t)``, hence
``E[x_t] = x0 + w(t) diff`` and ``Var[x_t | M] = w(t) (1 - w(t)) N_1``.

Reverse step ``t -> s < t`` given a prediction ``x0_hat``: rebuild the latent from
``diff = x_t - x0_hat`` and a fresh slack ``M_t = slack(key, |diff|, w(t))``, then thin with
``rho = w(s) / w(t)``: ``N_s ~ Binomial(N_t, rho)``, ``B_s ~ Hypergeometric(B_t, N_t - B_t,
N_s)``, ``x_s = x_t - 2 (B_t - B_s) + (N_t - N_s)``; ``s = 0`` returns ``x0_hat``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._validation import check_int_range
from jaxdiff.counting.random import binomial_thin
from jaxdiff.counting.schedules import make_weight_schedule

__all__ = ["SkellamBridge", "bridge_latent", "skellam_reverse_step", "skellam_thin"]


def check_counts(field: str, x, batch_shape=None):
    """``x`` as an int32 ``[batch, d]`` array; TypeError for non-integers, ValueError shape."""
    arr = jnp.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"{field} must be an integer array (counts), got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{field} must have shape [batch, d] (2-D), got {arr.shape}")
    if batch_shape is not None and arr.shape != tuple(batch_shape):
        raise ValueError(f"{field} has shape {arr.shape}, expected {tuple(batch_shape)}")
    return arr.astype(jnp.int32)


def check_slack_sampler(slack_sampler):
    if not callable(slack_sampler):
        raise TypeError(f"slack_sampler must be callable (key, abs_diff, w), got {slack_sampler!r}")


def check_time_values(t):
    """Raise if a concrete ``t`` has entries outside ``[0, 1]`` or NaN (skipped for tracers)."""
    try:
        host = np.asarray(t, dtype=np.float64)
    except Exception:  # traced: values cannot be checked here
        return None
    if not np.all((host >= 0.0) & (host <= 1.0)):
        raise ValueError(f"t must lie in [0, 1]; got values in [{host.min()}, {host.max()}]")
    return host


def check_model(model):
    if not callable(model):
        raise TypeError(f"model must be callable (key, x_t, t, context) -> x0, got {model!r}")


def broadcast_time(key, t, batch: int, homogeneous: bool):
    """Times as float ``[batch, 1]``: uniform draws when ``t`` is None, else ``t`` broadcast."""
    ft = jnp.result_type(float)
    if t is None:
        shape = (1, 1) if homogeneous else (batch, 1)
        return jnp.broadcast_to(jax.random.uniform(key, shape, ft), (batch, 1))
    t = jnp.asarray(t, ft)
    if t.shape not in ((), (batch,), (batch, 1)):
        raise ValueError(f"t must be a float or have shape ({batch}, 1), got shape {t.shape}")
    check_time_values(t)
    return jnp.broadcast_to(t.reshape(-1, 1) if t.ndim else t, (batch, 1))


def bridge_latent(diff, slack):
    """Jump counts of an entry: ``N = |diff| + 2 slack`` and births ``B = (N + diff) / 2``."""
    n = jnp.abs(diff) + 2 * slack
    return n, (n + diff) // 2


def skellam_thin(key, n, b, rho):
    """Keep each of ``n`` jumps (``b`` births) with probability ``rho``: ``(n_kept, b_kept)``.

    The law of the paper's two-stage draw ``n_kept ~ Binomial(n, rho)``, ``b_kept | n_kept
    ~ Hypergeometric(b, n - b, n_kept)`` -- which is independent thinning of the births and
    the deaths -- drawn as that: ``b_kept ~ Binomial(b, rho)`` and ``d_kept ~ Binomial(n -
    b, rho)`` in one stacked call, ``n_kept = b_kept + d_kept``. One sampling loop instead
    of two in sequence (half the time on a GPU, where each loop iteration is a round trip).
    """
    kept = binomial_thin(key, jnp.stack(jnp.broadcast_arrays(b, n - b)), rho)
    return kept[0] + kept[1], kept[0]


def skellam_reverse_step(key, x_t, x0_hat, w_t, w_s, slack_sampler):
    """One reverse step ``t -> s`` of the Skellam bridge (int32 ``[batch, d]`` in and out).

    Args:
        key: PRNG key.
        x_t: int32 ``[batch, d]`` state at time ``t``.
        x0_hat: int32 ``[batch, d]`` predicted data.
        w_t: schedule weight at ``t`` (``> 0``), float broadcastable to ``[batch, 1]``.
        w_s: schedule weight at ``s`` (``0 <= w_s <= w_t``).
        slack_sampler: ``(key, abs_diff, w) -> M``.
    """
    k_m, k_thin = jax.random.split(key)
    diff = x_t - x0_hat
    m = slack_sampler(k_m, jnp.abs(diff), w_t).astype(jnp.int32)
    n_t, b_t = bridge_latent(diff, m)
    rho = jnp.where(w_t > 0, w_s / jnp.where(w_t > 0, w_t, 1.0), 0.0)
    n_s, b_s = skellam_thin(k_thin, n_t, b_t, rho)
    return x_t - 2 * (b_t - b_s) + (n_t - n_s)


def check_guidance(guidance_x0, guidance_schedule, shape, n_steps):
    if guidance_x0 is None:
        return None, None
    if guidance_schedule is None:
        raise ValueError("guidance_schedule is required when guidance_x0 is given")
    gx0 = jnp.asarray(guidance_x0)
    if gx0.shape != tuple(shape):
        raise ValueError(f"guidance_x0 has shape {gx0.shape}, expected {tuple(shape)}")
    gs = jnp.asarray(guidance_schedule, jnp.result_type(float))
    if gs.shape != (n_steps + 1,):
        raise ValueError(
            f"guidance_schedule must have shape ({n_steps + 1},) (n_steps + 1), got {gs.shape}"
        )
    return gx0.astype(jnp.result_type(float)), gs


def predict_x0(model, key, x_t, t, context, k, delta, gx0, gs):
    """Model call -> rounded int32 ``x0_hat`` (delta targets and guidance as upstream)."""
    out = jnp.asarray(model(key, x_t, t, context))
    out = out.astype(jnp.result_type(float)) + (x_t if delta else 0)
    if gx0 is not None:
        out = gs[k] * gx0 + (1.0 - gs[k]) * out
    return jnp.round(out).astype(jnp.int32)


def init_bridge(bridge, slack_sampler, schedule_type, delta, homogeneous_time, schedule_kwargs):
    """Validate and store the constructor arguments shared by every Skellam bridge."""
    check_slack_sampler(slack_sampler)
    bridge.slack_sampler = slack_sampler
    bridge.weight_schedule = make_weight_schedule(schedule_type, **schedule_kwargs)
    bridge.schedule_type = bridge.weight_schedule.schedule_type
    bridge.delta = bool(delta)
    bridge.homogeneous_time = bool(homogeneous_time)


class SkellamBridge:
    """Skellam birth-death bridge (facade of the upstream ``SkellamBridge``).

    Args:
        slack_sampler: ``(key, abs_diff, w) -> M`` (``ConstantM``, ``PoissonM``, ``BesselM``).
        schedule_type: weight schedule name (``jaxdiff.counting.schedules``).
        delta: train on ``x0 - x_t`` instead of ``x0``; in ``sample`` the model output is
            then a delta and ``x_t`` is added back.
        homogeneous_time: one shared random ``t`` per batch instead of one per row.
        **schedule_kwargs: ``concentration`` / ``steepness`` of the schedule.
    """

    def __init__(
        self,
        slack_sampler,
        *,
        schedule_type="linear",
        delta=False,
        homogeneous_time=False,
        **schedule_kwargs,
    ):
        init_bridge(self, slack_sampler, schedule_type, delta, homogeneous_time, schedule_kwargs)

    def __call__(self, key, x0, x1, t=None):
        """Sample ``x_t`` from the bridge: returns ``(t, x_t, target)``.

        Args:
            key: PRNG key.
            x0: int ``[batch, d]`` data (``t = 0``).
            x1: int ``[batch, d]`` source (``t = 1``).
            t: None (uniform draws), a float, or float ``[batch, 1]``.

        Returns:
            ``t`` float32 ``[batch, 1]``, ``x_t`` int32 ``[batch, d]``, ``target`` int32: ``x0``
            or, with ``delta=True``, ``x0 - x_t``.
        """
        x0 = check_counts("x0", x0)
        x1 = check_counts("x1", x1, x0.shape)
        k_t, k_m, k_thin = jax.random.split(key, 3)
        t = broadcast_time(k_t, t, x0.shape[0], self.homogeneous_time)
        diff = x1 - x0
        m = self.slack_sampler(k_m, jnp.abs(diff), self.weight_schedule(1.0))
        n_1, b_1 = bridge_latent(diff, m.astype(jnp.int32))
        n_t, b_t = skellam_thin(k_thin, n_1, b_1, self.weight_schedule(t))
        x_t = x0 + 2 * b_t - n_t
        return t.astype(jnp.float32), x_t, (x0 - x_t) if self.delta else x0

    def sample_step(self, key, t_curr, t_next, x_t, x0_hat):
        """Reverse step from ``t_curr`` to ``t_next < t_curr`` given int ``x0_hat``."""
        w = self.weight_schedule
        return skellam_reverse_step(key, x_t, x0_hat, w(t_curr), w(t_next), self.slack_sampler)

    def sample(
        self,
        key,
        x1,
        model,
        n_steps,
        *,
        context=None,
        return_trajectory=False,
        guidance_x0=None,
        guidance_schedule=None,
    ):
        """Generate ``x0`` from ``x1`` in ``n_steps`` uniform steps: one ``lax.scan``.

        Args:
            key: PRNG key.
            x1: int ``[batch, d]`` source counts at ``t = 1``.
            model: ``model(key, x_t, t, context) -> x0`` prediction (float or int
                ``[batch, d]``; a delta ``x0 - x_t`` when ``delta=True``); ``x_t`` is int32,
                ``t`` float ``[batch, 1]``.
            n_steps: number of steps (static int >= 1).
            context: passed through to ``model``.
            return_trajectory: also return the states ``[n_steps + 1, batch, d]`` from
                ``x1`` to ``x0``.
            guidance_x0: int or float ``[batch, d]``; the prediction becomes
                ``g[k] * guidance_x0 + (1 - g[k]) * x0_hat`` at grid index ``k``, as upstream.
            guidance_schedule: ``g``, float ``[n_steps + 1]`` (needed with ``guidance_x0``).

        Returns:
            int32 ``[batch, d]`` samples (and the trajectory when asked).
        """
        x1 = check_counts("x1", x1)
        check_model(model)
        n_steps = check_int_range("n_steps", n_steps, 1)
        gx0, gs = check_guidance(guidance_x0, guidance_schedule, x1.shape, n_steps)
        grid = jnp.linspace(0.0, 1.0, n_steps + 1, dtype=jnp.result_type(float))
        batch = x1.shape[0]

        def body(x_t, inp):
            k, step_key = inp
            k_model, k_step = jax.random.split(step_key)
            t = jnp.full((batch, 1), grid[k])
            x0_hat = predict_x0(model, k_model, x_t, t, context, k, self.delta, gx0, gs)
            x_s = self.sample_step(k_step, grid[k], grid[k - 1], x_t, x0_hat)
            return x_s, x_s

        steps = jnp.arange(n_steps, 0, -1)
        x0, traj = jax.lax.scan(body, x1, (steps, jax.random.split(key, n_steps)))
        if return_trajectory:
            return x0, jnp.concatenate([x1[None], traj])
        return x0
