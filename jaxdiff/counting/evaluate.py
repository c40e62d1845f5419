"""Quality of generated counts against held-out data: energy distance and moment errors.

``sample_quality(generated, heldout, reference=...)`` reports, for int ``[n, d]`` arrays:

- ``energy_distance``: :func:`jaxdiff.metrics.energy_distance` (V-statistic) between the
  generated and the held-out rows (0 iff the laws agree);
- ``energy_distance_floor``: the same between two halves of the held-out rows, i.e. the
  value that a perfect generator of ``n / 2`` rows would show from sampling noise alone;
- ``energy_distance_source``: between the source rows ``x1`` (the untrained starting
  point) and the held-out rows, when ``source`` is given;
- ``mean_abs_error``: ``mean_j |mean(gen_j) - mean(held_j)|`` (counts), and
  ``mean_rel_error`` the same divided by ``mean_j mean(held_j)``;
- ``var_rel_error``: ``mean_j |var(gen_j) - var(held_j)| / var(held_j)``;
- per feature: ``mean_heldout``, ``mean_generated``, ``var_heldout``, ``var_generated``
  (lists of ``d`` floats);
- ``crps``: mean per-dimension CRPS of the generated marginal as a forecast of held-out
  values (:func:`jaxdiff.metrics.crps`, the first ``crps_ensemble`` generated values of
  a column forming the ensemble).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.metrics import crps, energy_distance

__all__ = ["sample_quality"]


def _as_float(name, x):
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape [n, d], got {x.shape}")
    return x.astype(np.float64)


def _energy(a, b):
    return float(jax.jit(energy_distance)(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)))


def sample_quality(generated, heldout, *, source=None, crps_points=500, crps_ensemble=1000) -> dict:
    """Energy distances and per-dimension moment errors (module docstring).

    Args:
        generated: int or float ``[n, d]`` generated counts.
        heldout: ``[m, d]`` held-out data (``m >= 4``).
        source: optional ``[k, d]`` source counts for the no-model baseline.
        crps_points: held-out rows scored by CRPS.
        crps_ensemble: generated rows forming each dimension's forecast ensemble.

    Returns:
        dict of floats (and the per-feature lists).
    """
    gen, held = _as_float("generated", generated), _as_float("heldout", heldout)
    if gen.shape[1] != held.shape[1]:
        raise ValueError(f"generated has d={gen.shape[1]}, heldout has d={held.shape[1]}")
    half = held.shape[0] // 2
    mean_g, mean_h = gen.mean(0), held.mean(0)
    var_g, var_h = gen.var(0), held.var(0)
    ens = jnp.asarray(gen[:crps_ensemble].T[:, None, :], jnp.float32)  # [d, 1, m] ensembles
    obs = jnp.asarray(held[:crps_points].T, jnp.float32)  # [d, p]
    out = {
        "energy_distance": _energy(gen, held),
        "energy_distance_floor": _energy(held[:half], held[half : 2 * half]),
        "mean_abs_error": float(np.abs(mean_g - mean_h).mean()),
        "mean_rel_error": float(np.abs(mean_g - mean_h).mean() / max(mean_h.mean(), 1e-12)),
        "var_rel_error": float((np.abs(var_g - var_h) / np.maximum(var_h, 1e-12)).mean()),
        "crps": float(jnp.mean(crps(ens, obs))),
        "mean_heldout": mean_h.tolist(),
        "mean_generated": mean_g.tolist(),
        "var_heldout": var_h.tolist(),
        "var_generated": var_g.tolist(),
    }
    if source is not None:
        out["energy_distance_source"] = _energy(_as_float("source", source), held)
    return out
