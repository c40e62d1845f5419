"""The grid operator: exact Gibbs kernels on regular 1-D, 2-D and 3-D grids.

Input convention. The points are given as grid coordinates ``x`` of shape
``[*grid_shape, ndim]`` with ``ndim = len(grid_shape)`` in ``{1, 2, 3}``: a meshgrid with
``indexing="ij"``, e.g. ``jnp.stack(jnp.meshgrid(r0, r1, indexing="ij"), -1)`` for an
image. ``x[..., k]`` may only vary along grid axis ``k`` (checked when concrete). The
kernel acts on fields flattened in C order, ``N = prod(grid_shape)``: ``apply(v)`` takes
``v`` ``[N]`` or ``[N, k]`` and equals the direct operator on the flattened points
``x.reshape(-1, ndim)``. ``y`` must be None or the same grid (the kernel is then
symmetric and ``apply_transpose == apply``).

* Gaussian: ``exp(-|x - y|^2 / eps) = prod_k exp(-(x_k - y_k)^2 / eps)`` is separable, so
  ``K`` is the Kronecker product of 1-D kernels and is applied one axis at a time with
  the dense ``[n_k, n_k]`` factors: ``O(N sum_k n_k)`` work, exact, and valid on any
  rectilinear grid (uniform spacing not needed). (Solomon et al. 2015, "Convolutional
  Wasserstein Distances", Sec. 4, use the same separable Gaussian convolution.)
* Laplacian: ``exp(-|x - y| / eps)`` is not separable but stationary on a uniform grid,
  so ``K v`` is a linear (not circular) convolution with the kernel sampled at all
  offsets ``-(n_k - 1) .. n_k - 1``; it runs as a product of real FFTs of size
  ``2 n_k - 1`` per axis, which is enough for no wrap-around to reach the kept
  outputs. ``O(N log N)`` work; needs uniform spacing per axis (checked when concrete).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff._validation import check_finite_array
from jaxdiff.ot.kernel_ops.base import as_matrix
from jaxdiff.ot.kernel_ops.config import KernelConfig

__all__ = ["GridKernel", "grid_points", "make_fft"]


@struct.dataclass
class GridKernel:
    """Gibbs kernel on a regular grid, applied without forming ``[N, N]``.

    Attributes:
        factors: gaussian: per-axis ``[n_k, n_k]`` 1-D kernels; laplacian: empty.
        spectrum: laplacian: ``rfftn`` of the sampled kernel, shape
            ``[2 n_0 - 1, ..., (2 n_last - 1) // 2 + 1]``; gaussian: None.
        grid_shape: static grid shape.
        config: static :class:`KernelConfig`.
    """

    factors: tuple[jax.Array, ...]
    spectrum: jax.Array | None
    grid_shape: tuple[int, ...] = struct.field(pytree_node=False)
    config: KernelConfig = struct.field(pytree_node=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, N)`` with ``N = prod(grid_shape)``."""
        size = int(np.prod(self.grid_shape))
        return (size, size)

    @property
    def _dtype(self):
        if self.spectrum is None:
            return self.factors[0].dtype
        return jnp.real(self.spectrum).dtype

    def _apply_grid(self, v: jax.Array) -> jax.Array:
        ndim = len(self.grid_shape)
        field = v.reshape(*self.grid_shape, v.shape[-1])
        if self.spectrum is None:
            for axis, factor in enumerate(self.factors):
                field = jnp.moveaxis(jnp.tensordot(factor, field, axes=(1, axis)), 0, axis)
        else:
            axes = tuple(range(ndim))
            sizes = tuple(2 * n - 1 for n in self.grid_shape)
            spec = jnp.fft.rfftn(field, s=sizes, axes=axes) * self.spectrum[..., None]
            full = jnp.fft.irfftn(spec, s=sizes, axes=axes)
            field = full[tuple(slice(n - 1, 2 * n - 1) for n in self.grid_shape)]
        return field.reshape(v.shape)

    def apply(self, v: jax.Array) -> jax.Array:
        """``K v``: ``[N]`` or ``[N, k]`` (C-order flattened fields) -> same shape."""
        return as_matrix("v", v, self.shape[1], self._apply_grid, self._dtype)

    def apply_transpose(self, u: jax.Array) -> jax.Array:
        """``K^T u`` (``K`` is symmetric): ``[N]`` or ``[N, k]`` -> same shape."""
        return as_matrix("u", u, self.shape[0], self._apply_grid, self._dtype)


def grid_points(x: jax.Array) -> jax.Array:
    """Flatten grid coordinates ``[*grid_shape, ndim]`` to points ``[N, ndim]`` (C order)."""
    return jnp.reshape(x, (-1, jnp.shape(x)[-1]))


def _axis_coordinates(x: jax.Array, axis: int) -> jax.Array:
    ndim = x.shape[-1]
    index = tuple(slice(None) if k == axis else 0 for k in range(ndim)) + (axis,)
    return x[index]


def _check_grid(field: str, x, uniform: bool) -> jax.Array:
    arr = jnp.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.floating) and not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"{field} must be a real floating (or integer) array, got {arr.dtype}")
    if arr.ndim < 2 or arr.shape[-1] != arr.ndim - 1 or arr.shape[-1] not in (1, 2, 3):
        raise ValueError(
            f"{field} must be grid coordinates of shape [*grid_shape, ndim] with "
            f"ndim = len(grid_shape) in (1, 2, 3) (a meshgrid, indexing='ij'), got {arr.shape}"
        )
    check_finite_array(field, x)
    arr = arr.astype(jnp.result_type(arr.dtype, float))
    try:
        host = np.asarray(x, dtype=np.float64)
    except Exception:  # traced: the grid structure is trusted
        return arr
    ndim = host.shape[-1]
    scale = max(float(np.abs(host).max()), 1e-30)
    for k in range(ndim):
        coords = np.asarray(_axis_coordinates(host, k))
        shape = [1] * ndim
        shape[k] = -1
        if not np.allclose(host[..., k], coords.reshape(shape), rtol=0, atol=1e-6 * scale):
            raise ValueError(
                f"{field} is not a rectilinear grid: coordinate {k} must vary only along "
                f"grid axis {k} (build it with jnp.meshgrid(..., indexing='ij'))"
            )
        steps = np.diff(coords)
        if uniform and steps.size and not np.allclose(steps, steps[0], rtol=1e-5, atol=0):
            raise ValueError(
                f"{field} must have uniform spacing along grid axis {k} for the laplacian "
                f"fft operator, got steps in [{steps.min()}, {steps.max()}]"
            )
    return arr


def make_fft(config: KernelConfig, x: jax.Array, y: jax.Array | None = None) -> GridKernel:
    """Grid operator on grid coordinates ``x`` ``[*grid_shape, ndim]`` (see module doc).

    Raises:
        ValueError: ``x`` is not a 1-D/2-D/3-D grid (concrete values checked), or ``y``
            is not None and not the same grid.
    """
    uniform = config.kernel_type == "laplacian"
    x = _check_grid("x", x, uniform)
    if y is not None:
        y_arr = _check_grid("y", y, uniform)
        if y_arr.shape != x.shape:
            raise ValueError(
                f"the fft operator needs y=None or the same grid as x; got x {x.shape}, "
                f"y {y_arr.shape}"
            )
        try:
            same = np.allclose(np.asarray(y, np.float64), np.asarray(x, np.float64))
        except Exception:  # traced: trusted
            same = True
        if not same:
            raise ValueError("the fft operator needs y=None or the same grid as x (values differ)")
    grid_shape = tuple(x.shape[:-1])
    ndim = len(grid_shape)
    eps = jnp.asarray(config.epsilon, x.dtype)
    coords = [_axis_coordinates(x, k) for k in range(ndim)]
    if config.kernel_type == "gaussian":
        factors = tuple(jnp.exp(-((c[:, None] - c[None, :]) ** 2) / eps) for c in coords)
        return GridKernel(factors, None, grid_shape=grid_shape, config=config)
    sq = jnp.zeros((), x.dtype)
    for k, (n, c) in enumerate(zip(grid_shape, coords, strict=True)):
        step = c[1] - c[0] if n > 1 else jnp.zeros((), x.dtype)
        offsets = step * jnp.arange(-(n - 1), n, dtype=x.dtype)
        sq = sq + (offsets**2).reshape([-1 if j == k else 1 for j in range(ndim)])
    positive = sq > 0
    dist = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
    sizes = tuple(2 * n - 1 for n in grid_shape)
    spectrum = jnp.fft.rfftn(jnp.exp(-dist / eps), s=sizes)
    return GridKernel((), spectrum, grid_shape=grid_shape, config=config)
