"""The online ``lse_dot`` reduction as a raw Triton kernel called through jax-triton.

Same contract as :func:`jaxdiff.kernels.lse_dot.lse_dot_pallas` (see that module for the
math and references); here the kernel is written in Triton directly, so ragged edges are
masked loads instead of padded copies. ``triton`` and ``jax_triton`` belong to the
``gpu`` extra: this module imports without them and :func:`lse_dot_triton` raises a
``RuntimeError`` saying what is missing. jax-triton 0.4.1 declares ``triton>=3.7``;
with an older Triton its import can fail, which is reported the same way.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxdiff.kernels.lse_dot import check_operands, resolve_config

__all__ = ["lse_dot_triton"]

_INPUT_PRECISION = {"float32": "ieee", "tf32": "tf32", "bf16": "tf32"}  # bf16: operands cast


@functools.cache
def _load():
    """Import Triton and jax-triton and build the kernel, or raise RuntimeError."""
    try:
        import triton
        import triton.language as tl
    except ImportError as err:
        raise RuntimeError(
            "lse_dot_triton needs Triton (the `gpu` extra: pip install 'jaxdiff[gpu]'); "
            f"importing triton failed: {err!r}. Use lse_dot_pallas instead."
        ) from err
    version = tuple(int(v) for v in triton.__version__.split(".")[:2])
    if version < (3, 7):
        raise RuntimeError(
            f"lse_dot_triton needs triton>=3.7 (jax-triton 0.4.1's requirement); found triton "
            f"{triton.__version__}. With triton 3.6 jax-triton's kernel lowering fails in "
            "triton.compiler.make_backend: AttributeError: '_Stub' object has no attribute "
            "'backend' (measured on an H100, JAX 0.11.2). Use lse_dot_pallas instead."
        )
    try:
        import jax_triton
    except Exception as err:  # ImportError, or an API mismatch with the installed Triton
        raise RuntimeError(
            "lse_dot_triton needs jax-triton (the `gpu` extra); importing jax_triton failed "
            f"with triton {triton.__version__}: {err!r}. jax-triton 0.4.1 requires "
            "triton>=3.7. Use lse_dot_pallas instead."
        ) from err

    @triton.jit
    def kernel(
        x_ptr,
        y_ptr,
        h_ptr,
        o_ptr,
        n,
        m,
        d,
        BLOCK_N: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_D: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        feats = tl.arange(0, BLOCK_D)
        x = tl.load(
            x_ptr + rows[:, None] * d + feats[None, :],
            mask=(rows[:, None] < n) & (feats[None, :] < d),
            other=0.0,
        )
        mx = tl.full((BLOCK_N,), float("-inf"), tl.float32)
        acc = tl.zeros((BLOCK_N,), tl.float32)
        for start in range(0, m, BLOCK_M):
            cols = start + tl.arange(0, BLOCK_M)
            y = tl.load(
                y_ptr + cols[:, None] * d + feats[None, :],
                mask=(cols[:, None] < m) & (feats[None, :] < d),
                other=0.0,
            )
            hb = tl.load(h_ptr + cols, mask=cols < m, other=float("-inf")) * 1.4426950408889634
            s = tl.dot(x, tl.trans(y), input_precision=PRECISION) * 1.4426950408889634 + hb[None, :]
            mx_new = tl.maximum(mx, tl.max(s, axis=1))
            shift = tl.where(mx_new == float("-inf"), 0.0, mx_new)
            acc = acc * tl.exp2(mx - shift) + tl.sum(tl.exp2(s - shift[:, None]), axis=1)
            mx = mx_new
        shift = tl.where(mx == float("-inf"), 0.0, mx)
        out = shift * 0.6931471805599453 + tl.log(acc)
        tl.store(o_ptr + rows, out, mask=rows < n)

    return triton, jax_triton, kernel


@functools.partial(
    jax.jit, static_argnames=("precision", "block_n", "block_m", "num_warps", "num_stages")
)
def _call(x, y, h, *, precision, block_n, block_m, num_warps, num_stages):
    _, jax_triton, kernel = _load()
    (n, d), m = x.shape, y.shape[0]
    dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
    block_d = max(16, 1 << (d - 1).bit_length())
    return jax_triton.triton_call(
        x.astype(dtype),
        y.astype(dtype),
        h.astype(jnp.float32),
        n,
        m,
        d,
        kernel=kernel,
        out_type=jax.ShapeDtypeStruct((n,), jnp.float32),
        grid=(-(-n // block_n),),
        num_warps=num_warps,
        num_stages=num_stages,
        BLOCK_N=block_n,
        BLOCK_M=block_m,
        BLOCK_D=block_d,
        PRECISION=_INPUT_PRECISION[precision],
    )


def lse_dot_triton(
    x, y, h, *, precision="float32", block_n=None, block_m=None, num_warps=None, num_stages=None
):
    """Online ``out_i = logsumexp_j(<x_i, y_j> + h_j)`` as a raw Triton kernel (GPU only).

    Args:
      x: [n, d] float points.
      y: [m, d] float points.
      h: [m] float column bias; ``-inf`` masks a column.
      precision: ``"float32"``, ``"tf32"`` or ``"bf16"`` (as in ``lse_dot_pallas``).
      block_n: rows of ``x`` per program (power of two); None: ``lse_dot_pallas``'s default.
      block_m: rows of ``y`` per loop step (power of two); None: default.
      num_warps: Triton warps per program; None: default.
      num_stages: Triton pipelining stages; None: default.

    Returns:
      [n] float32 log-sum-exp per row.

    Raises:
      RuntimeError: Triton or jax-triton is missing, cannot be imported, or Triton is
        older than 3.7.
    """
    x, y, h = check_operands(x, y, h)
    (n, d), m = x.shape, y.shape[0]
    precision, block_n, block_m, num_warps, num_stages, _ = resolve_config(
        n, m, d, precision, block_n, block_m, num_warps, num_stages
    )
    _load()
    return _call(
        x,
        y,
        h,
        precision=precision,
        block_n=block_n,
        block_m=block_m,
        num_warps=num_warps,
        num_stages=num_stages,
    )
