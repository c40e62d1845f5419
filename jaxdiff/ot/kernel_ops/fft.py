"""The grid operators: exact Gibbs kernels on regular 1-D, 2-D and 3-D grids.

Input convention. The points are given as grid coordinates ``x`` of shape
``[*grid_shape, ndim]`` with ``ndim = len(grid_shape)`` in ``{1, 2, 3}``: a meshgrid with
``indexing="ij"``, e.g. ``jnp.stack(jnp.meshgrid(r0, r1, indexing="ij"), -1)`` for an
image. ``x[..., k]`` may only vary along grid axis ``k`` (checked when concrete). The
kernel acts on fields flattened in C order, ``N = prod(grid_shape)``: ``apply(v)`` takes
``v`` ``[N]`` or ``[N, k]`` and equals the direct operator on the flattened points
``x.reshape(-1, ndim)``. ``y`` must be None or the same grid (the kernel is then
symmetric and ``apply_transpose == apply``).

* Gaussian: ``exp(-|x - y|^2 / eps) = prod_k exp(-(x_k - y_k)^2 / eps)`` is separable, so
  ``K`` is the Kronecker product of 1-D kernels, applied one axis at a time: exactly
  ott-jax's :class:`~ott.geometry.grid.Grid` with squared-Euclidean 1-D costs, which is
  used as it is (kernel and log-domain products, ``O(N sum_k n_k)``, any rectilinear
  grid; Solomon et al. 2015, "Convolutional Wasserstein Distances", Sec. 4).
* Laplacian: ``exp(-|x - y| / eps)`` is not separable, so ott-jax's Grid cannot apply it;
  it is stationary on a uniform grid, so ``K v`` is a linear (not circular) convolution
  with the kernel sampled at all offsets ``-(n_k - 1) .. n_k - 1``, run as real FFTs of
  size ``2 n_k - 1`` per axis (zero padding: no wrap-around reaches the kept outputs).
  ``O(N log N)`` work; needs uniform spacing per axis (checked when concrete). This one
  is our own geometry (:class:`LaplacianGridGeometry`), kernel products only (no
  log-domain form: Sinkhorn runs in scaling space on it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import costs, geometry, grid

from jaxdiff._validation import check_finite_array, concrete_value
from jaxdiff.ot.kernel_ops.base import KernelOperator
from jaxdiff.ot.kernel_ops.config import SOLVERS, KernelConfig
from jaxdiff.ot.memory import check_allocation

__all__ = ["GaussianGridGeometry", "LaplacianGridGeometry", "grid_points", "make_fft"]


@jax.tree_util.register_pytree_node_class
class GaussianGridGeometry(KernelOperator, grid.Grid):
    """ott-jax's separable :class:`~ott.geometry.grid.Grid` with the gaussian kernel.

    Args:
        coords: per-axis coordinates, ``ndim`` arrays ``[n_k]``.
        epsilon: scalar regularisation (a pytree leaf).
    """

    solver_type = "fft"
    kernel_type = "gaussian"
    log_domain = True

    def __init__(self, coords, epsilon):
        super().__init__(x=tuple(coords), cost_fns=[costs.SqEuclidean()], epsilon=epsilon)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """The grid's shape ``(n_0, ..., n_{ndim-1})``."""
        return self.grid_size

    def tree_flatten(self):  # noqa: D102
        return (tuple(self.x), self._epsilon_init), None

    @classmethod
    def tree_unflatten(cls, aux_data, children):  # noqa: D102
        del aux_data
        return cls(*children)


@jax.tree_util.register_pytree_node_class
class LaplacianGridGeometry(KernelOperator, geometry.Geometry):
    """Laplacian Gibbs kernel on a uniform grid, applied by zero-padded FFTs.

    The kernel's spectrum is rebuilt from ``epsilon`` at each product (one extra FFT
    of the padded size), so the geometry's only numbers are the grid steps and
    ``epsilon``, and any ``eps`` ott-jax passes is honoured.

    Args:
        steps: ``[ndim]`` grid spacing per axis.
        epsilon: scalar regularisation (a pytree leaf).
        grid_shape: static grid shape.
    """

    solver_type = "fft"
    kernel_type = "laplacian"
    log_domain = False

    def __init__(self, steps: jax.Array, epsilon, grid_shape: tuple[int, ...]):
        super().__init__(epsilon=epsilon)
        self.steps = steps
        self.grid_shape = tuple(grid_shape)

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, N)`` with ``N = prod(grid_shape)``."""
        size = int(np.prod(self.grid_shape))
        return (size, size)

    @property
    def dtype(self):  # noqa: D102
        return self.steps.dtype

    @property
    def is_symmetric(self) -> bool:  # noqa: D102
        return True

    def _spectrum(self, eps) -> jax.Array:
        ndim = len(self.grid_shape)
        sq = jnp.zeros((), self.dtype)
        for k, n in enumerate(self.grid_shape):
            offsets = self.steps[k] * jnp.arange(-(n - 1), n, dtype=self.dtype)
            sq = sq + (offsets**2).reshape([-1 if j == k else 1 for j in range(ndim)])
        positive = sq > 0
        dist = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
        sizes = tuple(2 * n - 1 for n in self.grid_shape)
        return jnp.fft.rfftn(jnp.exp(-dist / eps), s=sizes)

    def apply_kernel(self, vec, eps=None, axis=0):
        """``K vec`` (the kernel is symmetric: ``axis`` does not matter), ``vec`` ``[N]``."""
        del axis
        eps = self.epsilon if eps is None else eps
        ndim = len(self.grid_shape)
        axes = tuple(range(ndim))
        sizes = tuple(2 * n - 1 for n in self.grid_shape)
        field = jnp.reshape(vec, self.grid_shape)
        spec = jnp.fft.rfftn(field, s=sizes, axes=axes) * self._spectrum(eps)
        full = jnp.fft.irfftn(spec, s=sizes, axes=axes)
        return full[tuple(slice(n - 1, 2 * n - 1) for n in self.grid_shape)].reshape(vec.shape)

    @property
    def cost_matrix(self):  # noqa: D102
        n, _ = self.shape
        raise ValueError(
            f"the laplacian fft operator never materialises its {n} x {n} matrix; apply it "
            "with apply / apply_transpose, or use solver_type='direct' for small grids"
        )

    @property
    def kernel_matrix(self):  # noqa: D102
        return self.cost_matrix

    def tree_flatten(self):  # noqa: D102
        return (self.steps, self._epsilon_init), (self.grid_shape,)

    @classmethod
    def tree_unflatten(cls, aux_data, children):  # noqa: D102
        return cls(*children, *aux_data)


def grid_points(x: jax.Array) -> jax.Array:
    """Flatten grid coordinates ``[*grid_shape, ndim]`` to points ``[N, ndim]`` (C order)."""
    return jnp.reshape(x, (-1, jnp.shape(x)[-1]))


def _axis_coordinates(x: jax.Array, axis: int) -> jax.Array:
    ndim = x.shape[-1]
    index = tuple(slice(None) if k == axis else 0 for k in range(ndim)) + (axis,)
    return x[index]


def _check_grid(field: str, x, uniform: bool) -> jax.Array:
    if isinstance(x, str):
        raise TypeError(f"{field} must be a real array of grid coordinates, got a str")
    arr = jnp.asarray(x)
    if arr.dtype == jnp.bool_ or not (
        jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
    ):
        raise TypeError(f"{field} must be a real floating (or integer) array, got {arr.dtype}")
    if arr.ndim < 2 or arr.shape[-1] != arr.ndim - 1 or arr.shape[-1] not in (1, 2, 3):
        raise ValueError(
            f"{field} must be grid coordinates of shape [*grid_shape, ndim] with "
            f"ndim = len(grid_shape) in (1, 2, 3) (a meshgrid, indexing='ij'), got {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(
            f"{field} is an empty grid (shape {arr.shape}); every axis needs >= 1 point"
        )
    check_finite_array(field, x)
    arr = arr.astype(jnp.result_type(arr.dtype, float))
    host = concrete_value(x)
    if host is None:  # traced: the grid structure is trusted
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


@SOLVERS.register("fft")
def make_fft(config: KernelConfig, x: jax.Array, y: jax.Array | None, key) -> KernelOperator:
    """Grid operator on grid coordinates ``x`` ``[*grid_shape, ndim]`` (see module doc).

    Raises:
        ValueError: ``x`` is not a 1-D/2-D/3-D grid (concrete values checked), or ``y``
            is not None and not the same grid.
    """
    del key  # deterministic
    uniform = config.kernel_type == "laplacian"
    x = _check_grid("x", x, uniform)
    if y is not None:
        y_arr = _check_grid("y", y, uniform)
        if y_arr.shape != x.shape:
            raise ValueError(
                f"the fft operator needs y=None or the same grid as x; got x {x.shape}, "
                f"y {y_arr.shape}"
            )
        host_x, host_y = concrete_value(x), concrete_value(y)
        if host_x is not None and host_y is not None and not np.allclose(host_x, host_y):
            raise ValueError("the fft operator needs y=None or the same grid as x (values differ)")
    grid_shape = tuple(x.shape[:-1])
    eps = jnp.asarray(config.epsilon, x.dtype)
    coords = [_axis_coordinates(x, k) for k in range(len(grid_shape))]
    if config.kernel_type == "gaussian":
        return GaussianGridGeometry(coords, eps)
    padded = int(np.prod([2 * n - 1 for n in grid_shape]))
    check_allocation(
        f"solver_type='fft' on the grid {grid_shape}",
        6 * padded * x.dtype.itemsize,
        "use a coarser grid",
    )
    steps = jnp.stack([c[1] - c[0] if c.shape[0] > 1 else jnp.zeros((), x.dtype) for c in coords])
    return LaplacianGridGeometry(steps, eps, grid_shape)
