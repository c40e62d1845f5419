"""Fused GPU kernels (Pallas and raw Triton) with pure-``jnp`` references.

Importing this package needs neither Triton nor jax-triton: ``lse_dot_triton`` imports
them when called.
"""

from jaxdiff.kernels.lse_dot import lse_dot_pallas, lse_dot_reference
from jaxdiff.kernels.lse_dot_triton import lse_dot_triton

__all__ = ["lse_dot_pallas", "lse_dot_reference", "lse_dot_triton"]
