"""Progress lines for long Sinkhorn solves (``sinkhorn(..., progress=True)``).

ott-jax's :class:`~ott.solvers.linear.sinkhorn.Sinkhorn` calls its ``progress_fn`` from
the compiled loop through ``jax.debug.callback`` after every iteration, with the status
``(iteration, inner_iterations, max_iterations, state)``. The callback below prints one
line each time the solver has evaluated the marginal error, i.e. every
``inner_iterations`` iterations. It is one module-level function, so solves that use it
share their compiled programs.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["print_progress"]


def print_progress(status) -> None:
    """Print ``sinkhorn: iteration k/max, error e`` to stderr after each error evaluation.

    Args:
        status: ott-jax's progress status: the 0-based iteration just run, the
            iterations between error evaluations, the iteration cap and the solver
            state, whose ``errors`` is ``[max_iterations / inner_iterations, 1]`` (the
            1-norm marginal error, ``inf`` where not evaluated, e.g. before
            ``min_iterations``).
    """
    iteration, inner_iterations, max_iterations, state = status
    done, inner = int(iteration) + 1, int(inner_iterations)
    if done % inner:
        return
    error = float(np.asarray(state.errors)[done // inner - 1, 0])
    print(
        f"sinkhorn: iteration {done}/{int(max_iterations)}, error {error:.3e}",
        file=sys.stderr,
        flush=True,
    )
