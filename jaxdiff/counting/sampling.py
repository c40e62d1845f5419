"""The reverse sampling loop of every Skellam bridge: one ``lax.scan``, one result struct.

Model contract. A bridge sampler calls ``model(key, x_t, t, context) -> x0`` with ``key``
a typed PRNG key (one per step), ``x_t`` int32 ``[batch, d]``, ``t`` float32 ``[batch]``
(the samplers' convention) and ``context`` passed through. This differs from the
diffusion samplers' ``model_fn(x, t, context)`` (DESIGN.md, convention 5) in one argument,
on purpose: a Counting Flows model is a *posterior sampler* (``energy.posterior_sampler``
draws ``x0 ~ p(x0 | x_t)`` from noise), so it needs fresh randomness at every step, and
keys are explicit in jaxdiff (convention 3). A deterministic ``model_fn(x, t, context)``
(e.g. ``jaxdiff.nets.bind(module, params)``) is used as ``lambda key, x, t, c:
model_fn(x, t, c)``.

Health. ``CountingSampleOutput`` reports whether every model output was finite (and the
first step that was not) and whether every count of the run -- states, rounded
predictions and the jump counts of each step -- stayed within ``MAX_COUNT = 2**24``, the
float32-exact integers the exact samplers of ``random.py`` are written for. Nothing is
wrapped: predictions are clipped to ``MAX_COUNT + 1`` before rounding, so an out-of-range
value shows as ``max_count > MAX_COUNT`` (``in_range`` False). A non-finite model output
entry is replaced by the current state (that entry does not move in that step), and every
row that met one holds ``INVALID_COUNT`` (the int32 minimum, far outside the count range)
in ``samples`` and, from that step on, in ``trajectory``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxdiff.counting.random import MAX_COUNT

__all__ = ["INVALID_COUNT", "CountingSampleOutput", "model_prediction", "run_reverse_chain"]

INVALID_COUNT = int(jnp.iinfo(jnp.int32).min)


@struct.dataclass
class CountingSampleOutput:
    """Result of ``bridge.sample`` (every bridge, whatever the flags).

    Attributes:
        samples: int32 ``[batch, d]`` generated ``x0``; rows that met a non-finite model
            output hold ``INVALID_COUNT``.
        trajectory: int32 ``[n_steps + 1, batch, d]`` states from ``x1`` (index 0) to the
            samples, or None without ``return_trajectory``.
        all_finite: bool ``[]``, every model output of the run was finite.
        first_nonfinite_step: int32 ``[]``, the first step (0 = the step from ``t = 1``)
            with a non-finite model output, -1 when none.
        max_count: int32 ``[]``, the largest ``|count|`` of the run (states, rounded
            predictions, jump counts); predictions are clipped at ``MAX_COUNT + 1``.
        in_range: bool ``[]``, ``max_count <= MAX_COUNT`` (``2**24``).
    """

    samples: jax.Array
    trajectory: jax.Array | None
    all_finite: jax.Array
    first_nonfinite_step: jax.Array
    max_count: jax.Array
    in_range: jax.Array


def time_grid(n_steps: int) -> jax.Array:
    """The uniform grid ``t_k = k / n_steps``, ``k = 0..n_steps`` (float, x64-aware)."""
    return jnp.linspace(0.0, 1.0, n_steps + 1, dtype=jnp.result_type(float))


def model_prediction(model, key, x_t, t, context, k, delta, gx0, gs):
    """The float ``[batch, d]`` prediction of ``x0`` at grid index ``k`` (not rounded).

    ``delta`` adds ``x_t`` back (the model predicts ``x0 - x_t``); with guidance the
    prediction becomes ``gs[k] * gx0 + (1 - gs[k]) * prediction``, as upstream.
    """
    out = model(key, x_t, t, context)
    try:
        out = jnp.asarray(out)
    except (TypeError, ValueError):
        raise TypeError(
            f"model output must be a numeric array [batch, d], got {type(out).__name__}"
        ) from None
    if out.shape != x_t.shape:
        raise ValueError(f"model output has shape {out.shape}; expected x_t's shape {x_t.shape}")
    if not (jnp.issubdtype(out.dtype, jnp.floating) or jnp.issubdtype(out.dtype, jnp.integer)):
        raise TypeError(f"model output must be real numbers, got dtype {out.dtype}")
    out = out.astype(jnp.result_type(float)) + (x_t if delta else 0)
    if gx0 is not None:
        out = gs[k] * gx0 + (1.0 - gs[k]) * out
    return out


def run_reverse_chain(key, x1, n_steps, predict, step, *, return_trajectory):
    """Run ``n_steps`` reverse steps from ``x1`` at ``t = 1`` to ``t = 0`` in one scan.

    Args:
        key: typed PRNG key; split once into one key per step.
        x1: int32 ``[batch, d]`` source counts.
        n_steps: number of steps (static int).
        predict: ``(key, k, t [batch] float32, x_t) -> float [batch, d]`` prediction of
            ``x0`` at grid index ``k`` (``model_prediction``).
        step: ``(key, k, x_t, x0_hat int32) -> (x_s, n_jumps)``, the reverse step from
            grid index ``k`` to ``k - 1`` and its jump counts (int32 ``[batch, d]``).
        return_trajectory: also stack the states (static bool).

    Returns:
        ``CountingSampleOutput``.
    """
    batch = x1.shape[0]
    grid = time_grid(n_steps)

    def body(carry, inp):
        x_t, bad_rows, first_bad, max_count = carry
        k, i, step_key = inp
        k_model, k_step = jax.random.split(step_key)
        t = jnp.full((batch,), grid[k], jnp.float32)
        out = predict(k_model, k, t, x_t)
        finite = jnp.isfinite(out)
        safe = jnp.where(finite, out, x_t.astype(out.dtype))
        x0_hat = jnp.round(jnp.clip(safe, -MAX_COUNT - 1, MAX_COUNT + 1)).astype(jnp.int32)
        x_s, n_jumps = step(k_step, k, x_t, x0_hat)
        bad_rows = bad_rows | ~jnp.all(finite, axis=1)
        first_bad = jnp.where((first_bad < 0) & ~jnp.all(finite), i, first_bad)
        seen = jnp.stack([jnp.abs(x0_hat).max(), jnp.abs(x_s).max(), n_jumps.max()])
        max_count = jnp.maximum(max_count, seen.max())
        shown = jnp.where(bad_rows[:, None], INVALID_COUNT, x_s) if return_trajectory else None
        return (x_s, bad_rows, first_bad, max_count), shown

    init = (x1, jnp.zeros((batch,), bool), jnp.int32(-1), jnp.abs(x1).max())
    xs = (jnp.arange(n_steps, 0, -1), jnp.arange(n_steps), jax.random.split(key, n_steps))
    (x0, bad_rows, first_bad, max_count), states = jax.lax.scan(body, init, xs)
    trajectory = jnp.concatenate([x1[None], states]) if return_trajectory else None
    return CountingSampleOutput(
        samples=jnp.where(bad_rows[:, None], INVALID_COUNT, x0),
        trajectory=trajectory,
        all_finite=first_bad < 0,
        first_nonfinite_step=first_bad,
        max_count=max_count,
        in_range=max_count <= MAX_COUNT,
    )
