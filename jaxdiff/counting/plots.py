"""Figures of a counting run: loss curve, bridge marginals over time, count histograms.

All functions write one PNG (matplotlib, Agg backend) and return its path.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["plot_bridge_marginals", "plot_histograms", "plot_loss"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def plot_loss(history: list[dict], path, *, title="energy-score loss") -> Path:
    """Loss (and confinement / interaction terms when logged) against the step."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    steps = [r["step"] for r in history]
    for name in ("loss", "confinement", "interaction"):
        if history and name in history[0]:
            ax.plot(steps, [r[name] for r in history], label=name)
    ax.set(xlabel="step", ylabel="value", title=title)
    ax.legend()
    return _save(fig, path)


def plot_bridge_marginals(bridge, key, x0, x1, path, *, dim=0, times=(0.0, 0.25, 0.5, 0.75, 1.0)):
    """Histograms of the bridge marginal ``x_t[:, dim]`` at several times.

    Args:
        bridge: a Counting Flows bridge, ``bridge(key, x0, x1, t) -> (t, x_t, target)``.
        key: PRNG key.
        x0: int ``[n, d]`` data rows.
        x1: int ``[n, d]`` source rows (paired with ``x0`` as given).
        path: PNG file to write.
        dim: the feature shown.
        times: the times ``t`` in ``[0, 1]``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x0, x1 = jnp.asarray(x0), jnp.asarray(x1)
    draw = jax.jit(lambda k, t: bridge(k, x0, x1, jnp.full((x0.shape[0], 1), t))[1])
    cmap = plt.get_cmap("viridis")
    for i, (t, k) in enumerate(zip(times, jax.random.split(key, len(times)), strict=True)):
        x_t = draw(k, jnp.float32(t))
        col = np.asarray(x_t[:, dim])
        bins = np.arange(col.min(), col.max() + 2) - 0.5
        color = cmap(i / max(len(times) - 1, 1))
        ax.hist(col, bins=bins, histtype="step", density=True, color=color, label=f"t={t:g}")
    ax.set(xlabel=f"x_t[:, {dim}] (counts)", ylabel="frequency", title="bridge marginals")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_histograms(generated, heldout, path, *, max_dims=6, source=None) -> Path:
    """Per-feature count histograms: generated vs held-out data (and the source)."""
    plt = _pyplot()
    gen, held = np.asarray(generated), np.asarray(heldout)
    d = min(gen.shape[1], max_dims)
    cols = min(d, 3)
    rows = -(-d // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False)
    for j, ax in enumerate(axes.ravel()):
        if j >= d:
            ax.set_axis_off()
            continue
        parts = [("held-out data", held[:, j]), ("generated", gen[:, j])]
        if source is not None:
            parts.append(("source x1", np.asarray(source)[:, j]))
        lo = min(p[1].min() for p in parts)
        hi = max(p[1].max() for p in parts)
        bins = np.linspace(lo - 0.5, hi + 0.5, min(int(hi - lo) + 2, 60))
        for label, values in parts:
            ax.hist(values, bins=bins, histtype="step", density=True, label=label)
        ax.set_title(f"feature {j}", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    return _save(fig, path)
