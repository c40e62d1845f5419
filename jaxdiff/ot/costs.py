"""The cost names of :func:`jaxdiff.ot.sinkhorn`, mapped to ott-jax cost classes."""

from __future__ import annotations

from ott.geometry import costs

from jaxdiff._registry import Registry

__all__ = ["COSTS", "cost_name", "make_cost_fn"]

#: ``cost`` names (case-insensitive) -> ott-jax cost classes.
COSTS: Registry[type[costs.CostFn]] = Registry("cost")
COSTS.register("sqeuclidean", costs.SqEuclidean)  # |x - y|^2, not halved (as POT's ot.dist)
COSTS.register("euclidean", costs.Euclidean)  # |x - y|
COSTS.register("cosine", costs.Cosine)  # 1 - <x, y> / (|x| |y|)


def make_cost_fn(name: str) -> costs.CostFn:
    """The ott-jax cost object for a cost name (case-insensitive; ValueError if unknown)."""
    return COSTS.get(name)()


def cost_name(cost_fn: costs.CostFn) -> str:
    """The jaxdiff name of an ott-jax cost object (ValueError for other costs)."""
    for name in COSTS:
        if type(cost_fn) is COSTS.get(name):
            return name
    raise ValueError(
        f"cost_fn: jaxdiff supports the costs {list(COSTS.names())} "
        f"(ott-jax {[COSTS.get(n).__name__ for n in COSTS]}), got {type(cost_fn).__name__}"
    )
