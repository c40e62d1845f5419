"""KernelConfig validation and the operators' input errors."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxdiff.ot.kernel_ops import KernelConfig, make_kernel_operator


def test_defaults_and_case_insensitive_names():
    cfg = KernelConfig()
    assert (cfg.kernel_type, cfg.epsilon, cfg.solver_type) == ("gaussian", 0.1, "direct")
    assert (cfg.num_features, cfg.rank, cfg.feature_map) == (1024, 256, "positive")
    assert KernelConfig(epsilon=np.float32(0.5)).epsilon == 0.5
    cfg = KernelConfig(kernel_type="Laplacian", solver_type="RFF")
    assert (cfg.kernel_type, cfg.solver_type) == ("laplacian", "rff")
    assert hash(cfg) == hash(KernelConfig(kernel_type="laplacian", solver_type="rff"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epsilon = 1.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kernel_type="cauchy"), "kernel_type='cauchy'.*gaussian"),
        (dict(solver_type="lowrank"), "solver_type='lowrank'.*nystrom"),
        (dict(feature_map="orf"), "feature_map='orf'.*positive"),
        (dict(epsilon=0.0), "epsilon"),
        (dict(epsilon=-1.0), "epsilon"),
        (dict(epsilon=float("nan")), "epsilon"),
        (dict(num_features=0), "num_features"),
        (dict(rank=0), "rank"),
        (dict(nystrom_rcond=1.5), "nystrom_rcond"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KernelConfig(**kwargs)


def test_bad_config_types():
    with pytest.raises(TypeError, match="epsilon"):
        KernelConfig(epsilon="0.1")
    with pytest.raises(TypeError, match="rank"):
        KernelConfig(rank=2.5)
    with pytest.raises(TypeError, match="KernelConfig"):
        make_kernel_operator({"solver_type": "direct"}, np.zeros((3, 2)))


@pytest.mark.parametrize("solver", ["rff", "nystrom"])
def test_key_required(solver):
    with pytest.raises(ValueError, match=f"key is required for solver_type='{solver}'"):
        make_kernel_operator(KernelConfig(solver_type=solver), np.zeros((3, 2)))


def test_point_errors():
    cfg = KernelConfig()
    with pytest.raises(ValueError, match="same dimension"):
        make_kernel_operator(cfg, np.zeros((3, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"x must have shape \[num_points, dim\]"):
        make_kernel_operator(cfg, np.zeros((3,)))
    with pytest.raises(ValueError, match="y has non-finite"):
        make_kernel_operator(cfg, np.zeros((3, 2)), np.array([[0.0, np.nan]]))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="x has non-finite"):
        make_kernel_operator(KernelConfig(solver_type="rff"), np.array([[np.nan, 0.0]]), key=key)
    op = make_kernel_operator(cfg, np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"v must have shape \[4\] or \[4, k\]"):
        op.apply(np.ones(3))
    with pytest.raises(ValueError, match=r"u must have shape \[3\] or \[3, k\]"):
        op.apply_transpose(np.ones((4, 2)))


def test_fft_grid_errors():
    cfg = KernelConfig(solver_type="fft")
    with pytest.raises(ValueError, match="grid coordinates"):
        make_kernel_operator(cfg, np.zeros((5, 2)))  # a point cloud, not a 2-D grid
    r = np.linspace(0, 1, 4)
    g = np.stack(np.meshgrid(r, r, indexing="ij"), -1)
    with pytest.raises(ValueError, match="rectilinear"):
        make_kernel_operator(cfg, g + np.random.default_rng(0).normal(size=g.shape) * 0.01)
    uneven = np.array([0.0, 0.1, 0.5, 0.6])
    bad = np.stack(np.meshgrid(uneven, r, indexing="ij"), -1)
    with pytest.raises(ValueError, match="uniform spacing"):
        make_kernel_operator(KernelConfig("laplacian", solver_type="fft"), bad)
    make_kernel_operator(cfg, bad)  # the gaussian only needs a rectilinear grid
    with pytest.raises(ValueError, match="same grid"):
        make_kernel_operator(cfg, g, g + 1.0)


def test_error_needs_matching_points_and_probes():
    from jaxdiff.ot.kernel_ops import kernel_operator_error

    x = np.random.default_rng(0).normal(size=(5, 2))
    op = make_kernel_operator(KernelConfig(epsilon=1.0), x)
    with pytest.raises(ValueError, match=r"op has shape \(5, 5\)"):
        kernel_operator_error(jax.random.key(0), op, x, x[:3])
    with pytest.raises(ValueError, match="num_probes"):
        kernel_operator_error(jax.random.key(0), op, x, num_probes=0)
    assert float(kernel_operator_error(jax.random.key(0), op, x).apply) < 1e-6
