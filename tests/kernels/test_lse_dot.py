"""lse_dot kernels (Pallas in interpret mode on CPU) against a float64 SciPy oracle."""

import importlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from jaxdiff.kernels import lse_dot_pallas, lse_dot_reference, lse_dot_triton

triton_module = importlib.import_module("jaxdiff.kernels.lse_dot_triton")


def oracle(x, y, h):
    """Float64 log sum_j exp(<x_i, y_j> + h_j) by SciPy (-inf for all-masked rows)."""
    s = np.asarray(x, np.float64) @ np.asarray(y, np.float64).T + np.asarray(h, np.float64)
    with np.errstate(divide="ignore"):
        return logsumexp(s, axis=1)


def problem(n, m, d, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((n, d))).astype(np.float32)
    y = (scale * rng.standard_normal((m, d))).astype(np.float32)
    h = rng.standard_normal(m).astype(np.float32)
    return x, y, h


def pallas(x, y, h, **kw):
    kw.setdefault("interpret", True)
    return np.asarray(lse_dot_pallas(x, y, h, **kw))


# (n, m, d, block_n, block_m, num_splits): blocks that do not divide n or m, d padded.
CASES = [
    (1, 1, 1, None, None, None),
    (7, 130, 3, 16, 32, None),
    (64, 7, 17, 32, 16, None),
    (130, 64, 64, 64, 16, None),
    (7, 130, 2, 16, 16, 3),
    (33, 100, 5, 16, 16, 2),
]


@pytest.mark.parametrize(("n", "m", "d", "bn", "bm", "splits"), CASES)
def test_pallas_float32_matches_oracle(n, m, d, bn, bm, splits):
    x, y, h = problem(n, m, d)
    out = pallas(x, y, h, block_n=bn, block_m=bm, num_splits=splits)
    assert out.shape == (n,) and out.dtype == np.float32
    np.testing.assert_allclose(out, oracle(x, y, h), rtol=1e-5, atol=1e-5)


def test_reference_matches_oracle_in_float64(enable_x64):
    x, y, h = problem(9, 40, 6, seed=1)
    x, y, h = (a.astype(np.float64) for a in (x, y, h))
    h[::4] = -np.inf
    out = lse_dot_reference(x, y, h)
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(out), oracle(x, y, h), rtol=1e-12)


def test_reference_float32_and_all_masked():
    x, y, h = problem(5, 8, 3)
    out = lse_dot_reference(x, y, h)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), oracle(x, y, h), rtol=1e-5)
    assert np.all(np.isneginf(np.asarray(lse_dot_reference(x, y, np.full(8, -np.inf)))))


def test_masked_columns_and_masked_leading_blocks():
    x, y, h = problem(20, 100, 4, seed=2)
    h[::3] = -np.inf
    h[:48] = -np.inf  # the first three 16-column blocks: running max starts at -inf
    h[-5:] = -np.inf
    out = pallas(x, y, h, block_n=16, block_m=16)
    np.testing.assert_allclose(out, oracle(x, y, h), rtol=1e-5, atol=1e-5)
    split = pallas(x, y, h, block_n=16, block_m=16, num_splits=6)  # whole splits masked
    np.testing.assert_allclose(split, oracle(x, y, h), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("splits", [1, 3])
def test_all_columns_masked_gives_minus_inf(splits):
    x, y, _ = problem(9, 50, 3)
    out = pallas(x, y, np.full(50, -np.inf, np.float32), block_m=16, num_splits=splits)
    assert np.all(np.isneginf(out))


def test_large_magnitudes_do_not_overflow():
    x, y, h = problem(16, 64, 8, seed=3, scale=30.0)  # <x, y> ~ 1e4: exp overflows fp32
    h = h * 1e4
    out = pallas(x, y, h, block_n=16, block_m=16)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, oracle(x, y, h), rtol=1e-5)


@pytest.mark.parametrize(("precision", "unit"), [("bf16", 2.0**-8), ("tf32", 2.0**-10)])
def test_reduced_precision_within_documented_bound(precision, unit):
    x, y, h = problem(40, 70, 17, seed=4, scale=2.0)
    out = pallas(x, y, h, precision=precision, block_n=16, block_m=32)
    bound = unit * np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1).max() + 1e-5
    err = np.abs(out - oracle(x, y, h))
    assert np.all(err <= bound)
    if precision == "bf16":  # the operands really were rounded
        assert err.max() > 1e-5


def test_float64_inputs_give_float32(enable_x64):
    x, y, h = (a.astype(np.float64) for a in problem(10, 20, 3))
    out = lse_dot_pallas(x, y, h, interpret=True)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), oracle(x, y, h), rtol=1e-5, atol=1e-5)


def test_under_jit():
    x, y, h = problem(10, 20, 3)
    fn = jax.jit(lambda a, b, c: lse_dot_pallas(a, b, c, interpret=True))
    np.testing.assert_allclose(np.asarray(fn(x, y, h)), oracle(x, y, h), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"precision": "fp8"}, "precision"),
        ({"block_n": 24}, "block_n"),
        ({"block_m": 8}, "block_m"),
        ({"num_warps": 3}, "num_warps"),
        ({"num_splits": 0}, "num_splits"),
    ],
)
def test_bad_options_raise(kwargs, match):
    x, y, h = problem(4, 5, 2)
    with pytest.raises(ValueError, match=match):
        lse_dot_pallas(x, y, h, interpret=True, **kwargs)


@pytest.mark.parametrize(
    ("shapes", "exc", "match"),
    [
        (((4, 3), (5, 2), (5,)), ValueError, "feature dimension"),
        (((4, 3), (5, 3), (4,)), ValueError, "h must have length"),
        (((4,), (5, 3), (5,)), ValueError, "x must be 2-D"),
        (((4, 3), (5, 3, 1), (5,)), ValueError, "y must be 2-D"),
        (((4, 3), (5, 3), (5, 1)), ValueError, "h must be 1-D"),
        (((0, 3), (5, 3), (5,)), ValueError, ">= 1"),
    ],
)
@pytest.mark.parametrize("fn", [lse_dot_pallas, lse_dot_reference])
def test_bad_shapes_raise(fn, shapes, exc, match):
    x, y, h = (np.zeros(s, np.float32) for s in shapes)
    with pytest.raises(exc, match=match):
        fn(x, y, h)


def test_integer_input_raises():
    with pytest.raises(TypeError, match="x must be a floating-point"):
        lse_dot_reference(np.ones((2, 2), np.int32), np.ones((2, 2)), np.ones(2))


def test_triton_without_triton_raises_clearly(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton -> ImportError
    triton_module._load.cache_clear()
    x, y, h = problem(4, 5, 2)
    with pytest.raises(RuntimeError, match="needs Triton"):
        lse_dot_triton(x, y, h)
    triton_module._load.cache_clear()


@settings(max_examples=8, deadline=None)
@given(
    n=st.integers(1, 40),
    m=st.integers(1, 70),
    d=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_pallas_random_shapes(n, m, d, seed):
    x, y, h = problem(n, m, d, seed=seed)
    h[np.random.default_rng(seed).random(m) < 0.2] = -np.inf
    out = pallas(x, y, h, block_n=16, block_m=16)
    ref = oracle(x, y, h)
    assert np.array_equal(np.isneginf(out), np.isneginf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(out[finite], ref[finite], rtol=1e-5, atol=1e-5)


def test_string_operands_and_flags_raise_type_error():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(TypeError, match="y must be a floating-point"):
        lse_dot_reference(x, np.array([["a", "b"]]), np.zeros(1, np.float32))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        lse_dot_pallas("x", x, np.zeros(4, np.float32), interpret=True)
    with pytest.raises(TypeError, match="interpret"):
        lse_dot_pallas(x, x, np.zeros(4, np.float32), interpret="False")
