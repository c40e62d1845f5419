"""Traced health checks of a Sinkhorn problem and its solution.

Concrete inputs are validated eagerly at the API boundary (clear ``ValueError``); under
``jit``/``vmap`` values are tracers, so the same conditions are evaluated on device and
reported in the result (``OTResult.input_errors``, ``converged`` false), and with
``debug=True`` raised through :mod:`jax.experimental.checkify` (DESIGN.md, convention 9).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import checkify

__all__ = ["INPUT_CHECKS", "check_all", "input_flags"]

#: What each entry of ``OTResult.input_errors`` reports (True = the check failed).
INPUT_CHECKS = (
    "x has non-finite values",
    "y has non-finite values",
    "a has negative or non-finite values",
    "b has negative or non-finite values",
    "a or b does not sum to 1 (balanced problem)",
    "epsilon is not a finite number > 0",
)
_MASS_ATOL = 1e-5


def input_flags(x, y, a, b, epsilon, balanced: bool) -> jax.Array:
    """``[len(INPUT_CHECKS)]`` booleans, True where the input check fails.

    ``x`` / ``y`` may be None (a kernel operator: its points were checked when it was
    built); their flags are then False.
    """

    def bad_points(p):
        return jnp.asarray(False) if p is None else ~jnp.all(jnp.isfinite(p))

    def bad_weights(w):
        return ~jnp.all(jnp.isfinite(w) & (w >= 0))

    mass_bad = jnp.asarray(False)
    if balanced:
        mass_bad = (jnp.abs(jnp.sum(a) - 1) > _MASS_ATOL) | (jnp.abs(jnp.sum(b) - 1) > _MASS_ATOL)
    return jnp.stack(
        [
            bad_points(x),
            bad_points(y),
            bad_weights(a),
            bad_weights(b),
            mass_bad,
            ~(jnp.isfinite(epsilon) & (epsilon > 0)),
        ]
    )


def check_all(flags: jax.Array, outputs_finite: jax.Array, converged: jax.Array) -> None:
    """``checkify.check`` each input flag, the outputs' finiteness and convergence."""
    for i, name in enumerate(INPUT_CHECKS):
        checkify.check(~flags[i], f"sinkhorn: {name}")
    checkify.check(outputs_finite, "sinkhorn: non-finite potentials or costs")
    checkify.check(converged, "sinkhorn: did not converge within max_iterations")
