"""Row-wise log-sum-exp of a matrix product with a column bias, without the n x m matrix.

For points ``x`` [n, d], ``y`` [m, d] and a column bias ``h`` [m] this computes

    out_i = log sum_j exp(<x_i, y_j> + h_j),

the hot loop of a Sinkhorn iteration with the squared-Euclidean cost written as
``|x_i - y_j|^2 = |x_i|^2 + |y_j|^2 - 2 <x_i, y_j>`` (the caller folds norms and
``1 / epsilon`` into ``x``, ``y`` and ``h``).

:func:`lse_dot_pallas` streams ``y`` through on-chip tiles with the online (running
max, running sum) log-sum-exp of Milakov & Gimelshein, "Online normalizer calculation
for softmax" (2018), the same recurrence as FlashAttention (Dao et al., 2022): memory
traffic is O((n + m) d) and no n x m array exists. :func:`lse_dot_reference` is the
dense pure-``jnp`` oracle.

Default tiles come from sweeps on one H100 (JAX 0.11.2, Triton backend;
``benchmarks/lse_dot.py --sweep {tiles,splits,fp32}``), ms per call at n = m = 65536
unless noted (the exp-unit floor there is 1.1 ms):

=====  =========  ==========================================  ====================
d      precision  block_n, block_m, num_warps, num_stages     ms
=====  =========  ==========================================  ====================
<=64   bf16       64, 128, 4, 2                               2.5-2.7 (d = 64)
<=64   tf32       128, 128, 4, 1                              3.8-4.1 (d = 64)
>64    bf16       128, 64, 8, 1                               6.1-6.7 (d = 256)
>64    tf32       128, 64, 8, 1                               16.4-17.3 (d = 256)
any    float32    32, 64, 4, 2                                19 (n = 16384, d = 256)
=====  =========  ==========================================  ====================

IEEE fp32 products run on the CUDA cores: with ``num_stages=1`` they were 7-10x slower
(134-232 ms at n = 16384, d = 256); the float32 row was swept at d = 256 only. With
fewer than 128 row blocks (small n) the default ``block_n`` halves down to 32, and with
fewer than 512 programs the columns are split over several programs (at n = m = 4096,
d = 64, bf16: 0.27 ms unsplit, 0.16 ms with 4 splits).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdiff._validation import check_bool, check_choice, check_int_range

__all__ = ["PRECISIONS", "lse_dot_pallas", "lse_dot_reference"]

#: Allowed values of ``precision``: full fp32 products, TF32 tensor cores, or bf16
#: operands (fp32 bias, accumulation and reduction in every case).
PRECISIONS = ("float32", "tf32", "bf16")

_LOG2E = 1.4426950408889634  # log2(e): the kernel works in base 2 (exp2 is the MUFU op)
_LN2 = 0.6931471805599453  # ln(2): back to natural log at the end

# Defaults from the H100 sweep at n = m = 65536 (benchmarks/lse_dot.py --sweep; ms per
# call in the module docstring). Key: (precision, d_pad <= 64?) ->
# (block_n, block_m, num_warps, num_stages). Blocks are powers of two (Triton tensors are).
_DEFAULTS = {
    ("bf16", True): (64, 128, 4, 2),
    ("tf32", True): (128, 128, 4, 1),
    ("float32", True): (32, 64, 4, 2),
    ("bf16", False): (128, 64, 8, 1),
    ("tf32", False): (128, 64, 8, 1),
    ("float32", False): (32, 64, 4, 2),
}
# Below this many row blocks the H100's 132 SMs idle: the default block_n halves (to 32).
_MIN_ROW_BLOCKS = 128
# Below this many programs (row blocks x column splits) the default splits the columns
# too (flash-decoding style): each split returns a partial log-sum-exp, combined in jnp.
_TARGET_PROGRAMS = 512
_MIN_BLOCKS_PER_SPLIT = 8


def check_operands(x, y, h):
    """Validate shapes of ``x`` [n, d], ``y`` [m, d], ``h`` [m]; return them as arrays."""
    for field, value in (("x", x), ("y", y), ("h", h)):
        dtype = getattr(value, "dtype", None)
        if isinstance(value, str) or (dtype is not None and not jnp.issubdtype(dtype, jnp.number)):
            raise TypeError(f"{field} must be a floating-point array, got {value!r}")
    x, y, h = jnp.asarray(x), jnp.asarray(y), jnp.asarray(h)
    for field, arr in (("x", x), ("y", y), ("h", h)):
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(f"{field} must be a floating-point array, got dtype {arr.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D [n, d], got shape {x.shape}")
    if y.ndim != 2:
        raise ValueError(f"y must be 2-D [m, d], got shape {y.shape}")
    if h.ndim != 1:
        raise ValueError(f"h must be 1-D [m], got shape {h.shape}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same feature dimension d; got x.shape={x.shape}, "
            f"y.shape={y.shape}"
        )
    if h.shape[0] != y.shape[0]:
        raise ValueError(f"h must have length m = y.shape[0] = {y.shape[0]}, got shape {h.shape}")
    if x.shape[0] < 1 or y.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"n, m and d must be >= 1; got x.shape={x.shape}, y.shape={y.shape}")
    return x, y, h


def lse_dot_reference(x, y, h):
    """Dense oracle: ``out_i = logsumexp_j(<x_i, y_j> + h_j)``.

    Args:
      x: [n, d] float points.
      y: [m, d] float points.
      h: [m] float column bias; ``-inf`` entries mask their column.

    Returns:
      [n] log-sum-exp per row, float64 if any input is float64 (with x64 enabled),
      else float32; a row whose terms are all ``-inf`` gives ``-inf``. Materialises the
      n x m matrix: for tests and small problems only.
    """
    x, y, h = check_operands(x, y, h)
    dtype = jnp.float64 if jnp.float64 in (x.dtype, y.dtype, h.dtype) else jnp.float32
    x, y, h = x.astype(dtype), y.astype(dtype), h.astype(dtype)
    s = jnp.dot(x, y.T, precision=lax.Precision.HIGHEST) + h[None, :]
    return jax.nn.logsumexp(s, axis=1)


def _check_block(field: str, value) -> int:
    value = check_int_range(field, value, 16, 1024)
    if value & (value - 1):
        raise ValueError(f"{field}={value} must be a power of two (Triton tensor sizes are)")
    return value


def _next_pow2(k: int) -> int:
    return 1 << max(0, k - 1).bit_length()


def _exp2(z, fast: bool):
    """``2 ** z``; on the GPU the raw MUFU instruction (libdevice's exp2f adds range work)."""
    if not fast:
        return jnp.exp2(z)
    from jax.experimental.pallas import triton as plgpu

    [out] = plgpu.elementwise_inline_asm(
        "ex2.approx.ftz.f32 $0, $1;",
        args=[z],
        constraints="=f,f",
        pack=1,
        result_shape_dtypes=[jax.ShapeDtypeStruct(z.shape, z.dtype)],
    )
    return out


def _lse_kernel(x_ref, y_ref, h_ref, o_ref, *, block_m, num_m_blocks, dot_precision, fast):
    """One (row block, column split): stream column blocks, running base-2 max and sum."""
    from jax.experimental import pallas as pl

    x = x_ref[...]
    first = pl.program_id(1) * num_m_blocks

    def body(j, carry):
        mx, acc = carry
        cols = pl.ds(pl.multiple_of((first + j) * block_m, block_m), block_m)
        s = lax.dot_general(
            x,
            y_ref[cols, :],
            (((1,), (1,)), ((), ())),
            precision=dot_precision,
            preferred_element_type=jnp.float32,
        )
        s = s * _LOG2E + h_ref[cols][None, :]  # base-2 logits; h arrives pre-scaled
        mx_new = jnp.maximum(mx, jnp.max(s, axis=1))
        # A row with every term -inf so far keeps shift 0, so exp2(-inf - 0) = 0, not NaN.
        shift = jnp.where(mx_new == -jnp.inf, 0.0, mx_new)
        acc = acc * _exp2(mx - shift, fast) + jnp.sum(_exp2(s - shift[:, None], fast), axis=1)
        return mx_new, acc

    rows = x.shape[0]
    init = (jnp.full((rows,), -jnp.inf, jnp.float32), jnp.zeros((rows,), jnp.float32))
    mx, acc = lax.fori_loop(0, num_m_blocks, body, init)
    shift = jnp.where(mx == -jnp.inf, 0.0, mx)
    o_ref[...] = shift * _LN2 + jnp.log(acc)  # log(0) = -inf for all-masked rows


@functools.partial(
    jax.jit,
    static_argnames=(
        "precision",
        "block_n",
        "block_m",
        "num_splits",
        "num_warps",
        "num_stages",
        "interpret",
    ),
)
def _lse_dot_pallas(
    x, y, h, *, precision, block_n, block_m, num_splits, num_warps, num_stages, interpret
):
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plgpu

    n, d = x.shape
    m = y.shape[0]
    d_pad = max(16, _next_pow2(d))
    n_pad = -(-n // block_n) * block_n
    m_pad = -(-m // (block_m * num_splits)) * block_m * num_splits
    in_dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
    x = jnp.pad(x.astype(jnp.float32), ((0, n_pad - n), (0, d_pad - d))).astype(in_dtype)
    y = jnp.pad(y.astype(jnp.float32), ((0, m_pad - m), (0, d_pad - d))).astype(in_dtype)
    h = jnp.pad(h.astype(jnp.float32) * _LOG2E, (0, m_pad - m), constant_values=-jnp.inf)
    dot_precision = lax.Precision.HIGHEST if precision == "float32" else lax.Precision.DEFAULT
    kernel = functools.partial(
        _lse_kernel,
        block_m=block_m,
        num_m_blocks=m_pad // (block_m * num_splits),
        dot_precision=dot_precision,
        fast=not interpret,
    )
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((num_splits, n_pad), jnp.float32),
        grid=(n_pad // block_n, num_splits),
        in_specs=[
            pl.BlockSpec((block_n, d_pad), lambda i, k: (i, 0)),
            pl.BlockSpec((m_pad, d_pad), lambda i, k: (0, 0)),
            pl.BlockSpec((m_pad,), lambda i, k: (0,)),
        ],
        out_specs=pl.BlockSpec((None, block_n), lambda i, k: (k, i)),
        compiler_params=plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages),
        interpret=interpret,
        name="lse_dot",
    )(x, y, h)
    if num_splits == 1:
        return out[0, :n]
    return jax.nn.logsumexp(out[:, :n], axis=0)  # all-(-inf) columns stay -inf


def resolve_config(n, m, d, precision, block_n, block_m, num_warps, num_stages, num_splits=None):
    """Checked ``(precision, block_n, block_m, num_warps, num_stages, num_splits)``.

    Defaults are the H100 choice, blocks shrunk to the padded problem where it is smaller
    (a 7-row problem gets a 16-row block, not 128); with few row blocks the columns are
    split over several programs.
    """
    precision = check_choice("precision", precision, PRECISIONS)
    d_pad = max(16, _next_pow2(d))
    dflt_n, dflt_m, dflt_warps, dflt_stages = _DEFAULTS[(precision, d_pad <= 64)]
    if block_n is None:
        block_n = dflt_n
        while block_n > 32 and -(-n // block_n) < _MIN_ROW_BLOCKS:
            block_n //= 2
    else:
        block_n = _check_block("block_n", block_n)
    block_m = dflt_m if block_m is None else _check_block("block_m", block_m)
    block_n = min(block_n, max(16, _next_pow2(n)))
    block_m = min(block_m, max(16, _next_pow2(m)))
    num_warps = dflt_warps if num_warps is None else check_int_range("num_warps", num_warps, 1, 16)
    if num_warps & (num_warps - 1):
        raise ValueError(f"num_warps={num_warps} must be a power of two")
    num_stages = (
        dflt_stages if num_stages is None else check_int_range("num_stages", num_stages, 1, 8)
    )
    m_blocks = -(-m // block_m)
    if num_splits is None:
        row_blocks = -(-n // block_n)
        num_splits = max(1, min(_TARGET_PROGRAMS // row_blocks, m_blocks // _MIN_BLOCKS_PER_SPLIT))
    else:
        num_splits = check_int_range("num_splits", num_splits, 1, m_blocks)
    return precision, block_n, block_m, num_warps, num_stages, num_splits


def lse_dot_pallas(
    x,
    y,
    h,
    *,
    precision="float32",
    block_n=None,
    block_m=None,
    num_warps=None,
    num_stages=None,
    num_splits=None,
    interpret=False,
):
    """Online ``out_i = logsumexp_j(<x_i, y_j> + h_j)`` as a tiled Pallas kernel.

    The grid runs over blocks of ``block_n`` rows of ``x``; each program loops over
    blocks of ``block_m`` rows of ``y``, takes the ``block_n x block_m`` tile of dot
    products on tensor cores (fp32 accumulation) and updates a running max and a
    running sum of exponentials, so only one tile is ever live. Work is done in base 2
    (``h`` pre-scaled by log2(e), products scaled in-kernel, ``ex2.approx`` on the GPU).

    ``n`` and ``m`` are padded to block multiples (padded columns get ``h = -inf``,
    padded rows are dropped) and ``d`` to a power of two >= 16 with zeros, as Triton's
    dot needs.

    Args:
      x: [n, d] float points.
      y: [m, d] float points.
      h: [m] float column bias; ``-inf`` masks a column.
      precision: ``"float32"`` (IEEE fp32 products), ``"tf32"`` (TF32 tensor cores) or
        ``"bf16"`` (``x`` and ``y`` rounded to bfloat16; ``h``, products' accumulation
        and the reduction stay fp32).
      block_n: rows of ``x`` per program, a power of two in [16, 1024]; None: default.
      block_m: rows of ``y`` per loop step, a power of two in [16, 1024]; None: default.
      num_warps: Triton warps per program (power of two); None: default.
      num_stages: Triton software-pipelining stages in [1, 8]; None: default.
      num_splits: programs sharing one row block's columns, in [1, ceil(m / block_m)];
        their partial log-sum-exps are combined with ``jax.nn.logsumexp``. None: split
        only when there are too few row blocks to fill the GPU (small n).
      interpret: run the kernel in the Pallas interpreter (CPU; used by the tests).

    Returns:
      [n] float32 log-sum-exp per row; ``-inf`` for rows whose terms are all ``-inf``.

    Accuracy: log-sum-exp is 1-Lipschitz in the max norm of its terms and rounding both
    operands to a ``p``-bit significand perturbs ``<x_i, y_j>`` by at most about
    ``2^(1-p) |x_i| |y_j|``, so ``|out_i - exact_i| <= u |x_i| max_j |y_j|`` plus fp32
    rounding, with ``u = 2^-8`` for "bf16" and ``2^-10`` for "tf32". Measured on an H100
    at n = m = 2048 (x, y ~ N(0, I_d) / d^(1/4), so ``<x_i, y_j>`` ~ 1): max abs error
    1e-6 (float32), 1.5e-4 to 2.7e-3 (tf32), 1e-3 to 2e-2 (bf16); with points 10x
    larger: 1e-4 to 4e-4, 0.11 to 0.31 and 0.9 to 3.8.
    """
    x, y, h = check_operands(x, y, h)
    (n, d), m = x.shape, y.shape[0]
    precision, block_n, block_m, num_warps, num_stages, num_splits = resolve_config(
        n, m, d, precision, block_n, block_m, num_warps, num_stages, num_splits
    )
    return _lse_dot_pallas(
        x,
        y,
        h,
        precision=precision,
        block_n=block_n,
        block_m=block_m,
        num_splits=num_splits,
        num_warps=num_warps,
        num_stages=num_stages,
        interpret=check_bool("interpret", interpret),
    )


def lse_dot_numpy(x, y, h) -> np.ndarray:
    """Float64 NumPy oracle (for tests and benchmark accuracy columns)."""
    s = np.asarray(x, np.float64) @ np.asarray(y, np.float64).T + np.asarray(h, np.float64)
    mx = np.max(s, axis=1, keepdims=True)
    shift = np.where(np.isneginf(mx), 0.0, mx)
    with np.errstate(divide="ignore"):
        return (shift + np.log(np.sum(np.exp(s - shift), axis=1, keepdims=True)))[:, 0]
