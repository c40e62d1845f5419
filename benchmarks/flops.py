"""Model FLOPs of a JAX function, counted on its jaxpr (backend-independent).

XLA's ``Lowered.cost_analysis()`` returns None on some GPU builds (JAX 0.11.2 on the
H200 machine), and after compilation cuDNN / cuBLAS custom calls are not counted at
all. This counts the matrix work instead, on the traced program: ``2 * M * N * K`` for
every ``dot_general`` and ``2 * out_size * in_features_per_group * kernel_size`` for
every ``conv_general_dilated`` (forward and the backward convolutions alike), through
nested jaxprs (``jit``, ``remat``, ``custom_vjp``/``custom_jvp``, ``cond`` takes the most
expensive branch, ``scan`` and ``while`` with a known trip count multiply by it).
Elementwise work is ignored: MFU counts tensor-core FLOPs.
"""

from __future__ import annotations

import math

import jax
from jax.extend import core as jcore


def _sub_jaxprs(eqn):
    for value in eqn.params.values():
        items = value if isinstance(value, tuple | list) else (value,)
        for item in items:
            if isinstance(item, jcore.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jcore.Jaxpr):
                yield item


def _eqn_flops(eqn) -> float:
    name = eqn.primitive.name
    if name == "dot_general":
        (lhs_contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        k = math.prod(lhs[d] for d in lhs_contract)
        return 2.0 * math.prod(eqn.outvars[0].aval.shape) * k
    if name == "conv_general_dilated":
        rhs = eqn.invars[1].aval.shape
        spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, *spatial)
        per_out = rhs[spec[1]] * math.prod(rhs[d] for d in spec[2:])
        return 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_out
    subs = [jaxpr_flops(j) for j in _sub_jaxprs(eqn)]
    if not subs:
        return 0.0
    if name == "cond":
        return max(subs)
    if name == "scan":
        return eqn.params["length"] * sum(subs)
    return sum(subs)


def jaxpr_flops(jaxpr) -> float:
    """Matrix FLOPs of one evaluation of ``jaxpr`` (a ``Jaxpr``)."""
    return sum(_eqn_flops(eqn) for eqn in jaxpr.eqns)


def count_flops(fn, *args, **kwargs) -> float:
    """Matrix FLOPs of one call ``fn(*args, **kwargs)`` (traced, not run)."""
    return jaxpr_flops(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)
