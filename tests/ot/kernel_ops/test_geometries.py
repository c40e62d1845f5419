"""The operators are ott-jax geometries: explicit pytree children, epsilon a traced leaf."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import geometry, grid, low_rank

from jaxdiff.ot.kernel_ops import (
    DirectGeometry,
    FeatureGeometry,
    GaussianGridGeometry,
    KernelConfig,
    LaplacianGridGeometry,
    make_kernel_operator,
)

_R = np.linspace(0.0, 1.0, 4)
GRID = np.stack(np.meshgrid(_R, _R, indexing="ij"), -1).astype(np.float32)
CLOUD = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)

CASES = [
    (KernelConfig(epsilon=0.37), CLOUD, DirectGeometry, geometry.Geometry),
    (KernelConfig("gaussian", 0.37, "fft"), GRID, GaussianGridGeometry, grid.Grid),
    (KernelConfig("laplacian", 0.37, "fft"), GRID, LaplacianGridGeometry, geometry.Geometry),
    (
        KernelConfig(epsilon=0.37, solver_type="rff", num_features=16),
        CLOUD,
        FeatureGeometry,
        low_rank.LRKGeometry,
    ),
    (
        KernelConfig(epsilon=0.37, solver_type="nystrom", rank=4),
        CLOUD,
        FeatureGeometry,
        low_rank.LRKGeometry,
    ),
]


@pytest.mark.parametrize("cfg,points,cls,ott_base", CASES)
def test_flatten_unflatten_round_trip(cfg, points, cls, ott_base):
    op = make_kernel_operator(cfg, points, key=jax.random.key(0))
    assert type(op) is cls and isinstance(op, ott_base)
    leaves, treedef = jax.tree_util.tree_flatten(op)
    assert any(leaf.shape == () and np.isclose(leaf, 0.37) for leaf in map(np.asarray, leaves))
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert type(back) is cls and back.shape == op.shape
    assert (back.solver_type, back.kernel_type) == (op.solver_type, op.kernel_type)
    np.testing.assert_allclose(float(back.epsilon), 0.37, rtol=1e-6)
    v = np.linspace(0.0, 1.0, op.shape[1], dtype=np.float32)
    np.testing.assert_array_equal(back.apply(v), op.apply(v))
    doubled = jax.tree_util.tree_map(lambda leaf: leaf * 2, op)  # every child is a leaf
    assert type(doubled) is cls and np.isclose(float(doubled.epsilon), 0.74)


def test_kernel_config_round_trip_and_traced_leaves():
    cfg = KernelConfig("Laplacian", 0.2, "RFF", num_features=32, rank=3, nystrom_rcond=1e-3)
    leaves, treedef = jax.tree_util.tree_flatten(cfg)
    assert leaves == [0.2, 1e-3]
    assert jax.tree_util.tree_unflatten(treedef, leaves) == cfg
    seen = []

    @jax.jit
    def eps_of(c):
        seen.append(c.epsilon)
        return c.epsilon * 2

    assert float(eps_of(cfg)) == pytest.approx(0.4)
    assert float(eps_of(KernelConfig("laplacian", 0.3, "rff", 32, 3, nystrom_rcond=1e-3))) == (
        pytest.approx(0.6)
    )
    assert len(seen) == 1 and isinstance(seen[0], jax.core.Tracer)


def test_laplacian_grid_honours_a_traced_epsilon():
    pts = GRID.reshape(-1, 2).astype(np.float64)
    dist = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    v = jnp.linspace(0.0, 1.0, 16, dtype=jnp.float32)
    apply = jax.jit(
        lambda eps: make_kernel_operator(KernelConfig("laplacian", eps, "fft"), GRID).apply(v)
    )
    for eps in (0.2, 0.5):
        np.testing.assert_allclose(apply(jnp.float32(eps)), np.exp(-dist / eps) @ v, rtol=1e-5)
    assert apply._cache_size() == 1
