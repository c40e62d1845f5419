"""Count datasets for Counting Flows, sampled with ``jax.random`` and exact moments.

Reference: Counting Flows, github.com/njwfish/counting_flows, ``datasets.py``
(``PoissonMixtureDataset``, PyTorch there; the conditioning types follow its README;
the beta-binomial dataset is jaxdiff's, upstream has beta-binomial posteriors only).
As upstream, each dataset pre-samples ``size`` data rows ``x0`` (at ``t = 0``, the law
we learn) and ``size`` source rows ``x1`` (at ``t = 1``) and pairs them by an
*independent coupling*: a batch takes ``x0`` rows in one random order and ``x1`` rows
in another, independent one.

Laws (``c`` the scalar context, ``c ~ Uniform(multiplier_range)`` per row, independent of
``x1``; counts are int32 ``[n, d]``, context float32 ``[n, 1]``):

``PoissonMixtureDataset`` -- mixtures of ``k`` product-Poisson components. Rates
``lambda = max(|Normal(lambda_loc, lambda_scale)|, 1e-3)`` of shape ``[k, d]`` (floored
so no rate is zero) and weights ``w ~ Dirichlet(1_k)``; one component ``z ~ Cat(w)`` per
row, shared by the ``d`` coordinates, then ``x_j ~ Poisson(lambda[z, j])``.

* ``"none"``: ``x0`` from the data mixture ``(lambda_data, weights_data)``; no context.
* ``"multiplier"``: component rates ``c * lambda_data``.
* ``"additive"``: component rates ``lambda_data + c * lambda_loc`` (the offset is in
  units of ``lambda_loc`` so that it matters at the scale of the rates).
* ``"mixture"``: rates ``lambda_data``; weights ``(1 - u) w + u reversed(w)`` with
  ``w = weights_data`` and ``u = (c - lo) / (hi - lo)`` clipped to ``[0, 1]``
  (``u = 1/2`` when ``lo == hi``): the context slides the weights from ``w`` to its
  reverse.
* ``x1`` always comes, unconditionally, from a second, independent mixture
  ``(lambda_source, weights_source)`` drawn the same way.

Given ``c`` the mixture has weights ``w_k(c)``, rates ``r_k(c)`` and (law of total
variance) ``E[x_j | c] = sum_k w_k r_kj`` and
``Var[x_j | c] = sum_k w_k (r_kj + (r_kj - E[x_j | c])^2)``.

``BetaBinomialDataset`` -- independent coordinates ``x_j ~ BetaBinomial(n, a_j, b_j)``
(``p ~ Beta(a_j, b_j)``, then ``Binomial(n, p)``) with ``a_j ~ U(alpha_range)``,
``b_j ~ U(beta_range)``; condition ``"multiplier"`` uses ``a_j c`` instead of ``a_j``.
Closed forms: mean ``n a / (a + b)``, variance ``n a b (a + b + n) / ((a + b)^2 (a + b + 1))``.
Source ``x1_j ~ Poisson(source_rate_j)``; by default ``source_rate = n alpha / (alpha + beta)``
(the data mean at ``c = 1``; the unconditional data mean for ``"none"``).

Parameters come from ``jax.random.key(seed)``; the pre-sampled arrays from a key split
off it. ``sample(key, n)`` draws fresh rows (held-out data) from the same laws.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._keys import as_key
from jaxdiff._validation import check_choice, check_finite_array, check_int_range, check_real

__all__ = [
    "CONDITION_TYPES",
    "BetaBinomialDataset",
    "PoissonMixtureDataset",
    "paired_batches",
]

CONDITION_TYPES = ("none", "multiplier", "additive", "mixture")
BETA_BINOMIAL_CONDITION_TYPES = ("none", "multiplier")
RATE_FLOOR = 1e-3  # smallest mixture rate: |Normal| can be ~0, a zero rate is degenerate
_MAX_SEED = 2**31 - 1
MAX_ENTRIES = 2**28  # rows * d of one drawn array (1 GiB of int32): larger sizes are refused


def _check_entries(field: str, rows: int, d: int) -> int:
    """``rows`` if ``rows * d <= MAX_ENTRIES``, else a ValueError before any allocation."""
    if rows * d > MAX_ENTRIES:
        raise ValueError(
            f"{field}={rows} rows with d={d} columns is {rows * d} entries per array; at most "
            f"{MAX_ENTRIES} (2**28) are allowed"
        )
    return rows


def _check_positive_range(field: str, value) -> tuple[float, float]:
    """``value`` as ``(lo, hi)``: two finite floats with ``0 < lo <= hi``, or raise."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise TypeError(f"{field} must be a pair (lo, hi) of floats, got {value!r}") from None
    lo = check_real(f"{field}[0]", lo, 0.0, strict=True)
    hi = check_real(f"{field}[1]", hi, 0.0, strict=True)
    if lo > hi:
        raise ValueError(f"{field}={value!r} is not allowed; need 0 < lo <= hi")
    return lo, hi


def _check_context(context) -> jax.Array:
    """``context`` as a float32 ``[n, 1]`` array with ``n >= 1`` (finite when concrete)."""
    if context is None:
        raise ValueError("context is None; this condition_type needs a float [n, 1] context")
    arr = jnp.asarray(context, jnp.float32)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != 1:
        raise ValueError(f"context must have shape [n, 1] with n >= 1, got {arr.shape}")
    check_finite_array("context", context)
    return arr


def paired_batches(x0, x1, context, batch_size: int, *, seed: int = 0):
    """Independently coupled batches of pre-sampled pairs, a pure function of the step.

    Epoch ``e = step // steps_per_epoch`` visits the ``x0`` (and ``context``) rows in the
    order ``np.random.default_rng([seed, e, 0]).permutation(size)`` and the ``x1`` rows in
    the independent order ``default_rng([seed, e, 1]).permutation(size)``; the incomplete
    last batch of each epoch is dropped.

    Args:
      x0: ``[size, d]`` data rows.
      x1: ``[size, d]`` source rows.
      context: ``[size, c]`` rows travelling with ``x0``, or None.
      batch_size: rows per batch, ``1 <= batch_size <= size``.
      seed: data-order seed, ``>= 0``.

    Returns:
      ``(batch_fn, steps_per_epoch)``; ``batch_fn(step)`` (``step >= 0``) returns a dict of
      NumPy arrays ``{"x": [batch_size, d], "x1": [batch_size, d],
      "context": [batch_size, c]}`` (no ``"context"`` key when it is None), dtypes as given;
      ``steps_per_epoch = size // batch_size``.
    """
    x0, x1 = np.asarray(x0), np.asarray(x1)
    size = x0.shape[0]
    if x1.shape[0] != size:
        raise ValueError(f"x0 and x1 need the same number of rows, got {size} and {x1.shape[0]}")
    ctx = None if context is None else np.asarray(context)
    if ctx is not None and ctx.shape[0] != size:
        raise ValueError(f"context needs {size} rows like x0, got shape {ctx.shape}")
    batch_size = check_int_range("batch_size", batch_size, 1, size)
    seed = check_int_range("seed", seed, 0)
    steps_per_epoch = size // batch_size
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def batch_fn(step: int) -> dict[str, np.ndarray]:
        epoch, i = divmod(check_int_range("step", step, 0), steps_per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = tuple(
                np.random.default_rng([seed, epoch, s]).permutation(size) for s in (0, 1)
            )
        rows = slice(i * batch_size, (i + 1) * batch_size)
        idx0, idx1 = (perm[rows] for perm in cache[epoch])
        batch = {"x": x0[idx0], "x1": x1[idx1]}
        if ctx is not None:
            batch["context"] = ctx[idx0]
        return batch

    return batch_fn, steps_per_epoch


class _CountDataset:
    """Shared machinery: validation, pre-sampling, ``sample``, moments and batching.

    Subclasses set their parameters and implement ``_draw_x0(key, context, n)``,
    ``_draw_x1(key, n)`` and ``_moments(context) -> (mean, var)`` (float32 ``[n, d]``).
    """

    def _setup(self, size, d, condition_type, allowed, multiplier_range, seed):
        """Validate the common arguments; return ``(param_key, data_key)``."""
        self.size = check_int_range("size", size, 1)
        self.d = check_int_range("d", d, 1)
        _check_entries("size", self.size, self.d)
        self.condition_type = check_choice("condition_type", condition_type, allowed)
        self.multiplier_range = _check_positive_range("multiplier_range", multiplier_range)
        self.seed = check_int_range("seed", seed, 0, _MAX_SEED)
        return jax.random.split(jax.random.key(self.seed))

    def _presample(self, key) -> None:
        """Fill ``x0``, ``x1`` (int32 ``[size, d]``) and ``context`` (``[size, 1]`` or None)."""
        self.x0, self.x1, self.context = self._draw(key, self.size)

    @property
    def context_dim(self) -> int:
        """Width of the context: 1, or 0 for ``condition_type="none"``."""
        return 0 if self.condition_type == "none" else 1

    def _draw(self, key, n: int):
        k_c, k_0, k_1 = jax.random.split(key, 3)
        context = None
        if self.condition_type != "none":
            lo, hi = self.multiplier_range
            context = jax.random.uniform(k_c, (n, 1), jnp.float32, lo, hi)
        return self._draw_x0(k_0, context, n), self._draw_x1(k_1, n), context

    def sample(self, key, n: int) -> dict[str, jax.Array]:
        """Fresh draws from the same laws (held-out data).

        Returns:
          ``{"x": int32 [n, d] (x0), "x1": int32 [n, d], "context": float32 [n, 1]}``;
          no ``"context"`` key for ``condition_type="none"``.
        """
        n = _check_entries("n", check_int_range("n", n, 1), self.d)
        x0, x1, context = self._draw(as_key(key), n)
        out = {"x": x0, "x1": x1}
        if context is not None:
            out["context"] = context
        return out

    def _checked_context(self, context):
        """``None`` for ``"none"`` (context ignored), else a float32 ``[n, 1]`` array."""
        return None if self.condition_type == "none" else _check_context(context)

    def _rows(self, context) -> int:
        """Rows of the moment arrays: ``len(context)``, or 1 when context is None."""
        return 1 if context is None else int(np.shape(context)[0])

    def conditional_mean(self, context=None) -> jax.Array:
        """Closed-form ``E[x0 | c]``, float32 ``[n, d]``.

        ``context`` is float32 ``[n, 1]``; for ``"none"`` it is ignored (may be None, then
        ``n = 1``).
        """
        mean, _ = self._moments(self._checked_context(context))
        return jnp.broadcast_to(mean, (self._rows(context), self.d))

    def conditional_variance(self, context=None) -> jax.Array:
        """Closed-form ``Var[x0_j | c]`` per coordinate, float32 ``[n, d]`` (as the mean)."""
        _, var = self._moments(self._checked_context(context))
        return jnp.broadcast_to(var, (self._rows(context), self.d))

    def batches(self, batch_size: int, *, seed: int = 0):
        """``(batch_fn, steps_per_epoch)`` over the pre-sampled rows; see ``paired_batches``."""
        return paired_batches(self.x0, self.x1, self.context, batch_size, seed=seed)


def _mixture_params(key, k: int, d: int, loc: float, scale: float):
    """Rates float32 ``[k, d]`` = ``max(|N(loc, scale)|, RATE_FLOOR)``, weights ``[k]``."""
    k_rate, k_weight = jax.random.split(key)
    rates = jnp.abs(loc + scale * jax.random.normal(k_rate, (k, d), jnp.float32))
    weights = jax.random.dirichlet(k_weight, jnp.ones((k,), jnp.float32))
    return jnp.maximum(rates, RATE_FLOOR), weights


def _draw_poisson_mixture(key, weights, rates, n: int) -> jax.Array:
    """Int32 ``[n, d]``: row ``i`` from component ``z_i ~ Cat(weights[i])``.

    ``weights`` ``[m, k]`` and ``rates`` ``[m, k, d]`` with ``m`` in ``{1, n}``.
    """
    k_z, k_x = jax.random.split(key)
    logits = jnp.log(jnp.broadcast_to(weights, (n, weights.shape[-1])))
    z = jax.random.categorical(k_z, logits)
    rates = jnp.broadcast_to(rates, (n, *rates.shape[1:]))
    return jax.random.poisson(k_x, rates[jnp.arange(n), z], dtype=jnp.int32)


class PoissonMixtureDataset(_CountDataset):
    """Mixture-of-Poissons data ``x0`` (optionally conditioned) and mixture source ``x1``.

    See the module docstring for the laws. Args:
      size: pre-sampled rows, ``>= 1``.
      d: count dimensions, ``>= 1``.
      condition_type: one of ``CONDITION_TYPES``.
      multiplier_range: ``(lo, hi)``, ``0 < lo <= hi``; ``c ~ U(lo, hi)``.
      k: mixture components, ``>= 1``.
      lambda_loc: mean of the Normal whose absolute value gives the rates, ``>= 0``.
      lambda_scale: its standard deviation, ``>= 0``.
      seed: ``0 <= seed < 2**31``.

    Attributes:
      lambda_data, lambda_source: float32 ``[k, d]`` rates (all ``>= RATE_FLOOR``).
      weights_data, weights_source: float32 ``[k]`` weights.
      x0, x1: int32 ``[size, d]``; context: float32 ``[size, 1]`` or None (``"none"``).
    """

    def __init__(
        self,
        size: int,
        d: int,
        *,
        condition_type: str = "multiplier",
        multiplier_range=(0.5, 2.0),
        k: int = 3,
        lambda_loc: float = 20.0,
        lambda_scale: float = 20.0,
        seed: int = 0,
    ):
        key_params, key_data = self._setup(
            size, d, condition_type, CONDITION_TYPES, multiplier_range, seed
        )
        self.k = check_int_range("k", k, 1)
        self.lambda_loc = check_real("lambda_loc", lambda_loc, 0.0)
        self.lambda_scale = check_real("lambda_scale", lambda_scale, 0.0)
        k_data, k_source = jax.random.split(key_params)
        loc, scale = self.lambda_loc, self.lambda_scale
        self.lambda_data, self.weights_data = _mixture_params(k_data, self.k, self.d, loc, scale)
        self.lambda_source, self.weights_source = _mixture_params(
            k_source, self.k, self.d, loc, scale
        )
        self._presample(key_data)

    def _components(self, context):
        """Weights ``[m, k]`` and rates ``[m, k, d]`` given ``c`` (``m = n``, or 1 if None)."""
        w, lam = self.weights_data[None], self.lambda_data[None]
        if context is None:
            return w, lam
        c = context[:, :, None]  # [n, 1, 1]
        if self.condition_type == "multiplier":
            lam = lam * c
        elif self.condition_type == "additive":
            lam = lam + c * self.lambda_loc
        else:  # "mixture"
            lo, hi = self.multiplier_range
            u = jnp.full_like(context, 0.5) if hi == lo else (context - lo) / (hi - lo)
            u = jnp.clip(u, 0.0, 1.0)  # [n, 1]
            w = (1.0 - u) * w + u * w[:, ::-1]
        return w, lam

    def _draw_x0(self, key, context, n):
        return _draw_poisson_mixture(key, *self._components(context), n)

    def _draw_x1(self, key, n):
        return _draw_poisson_mixture(key, self.weights_source[None], self.lambda_source[None], n)

    def _moments(self, context):
        w, lam = self._components(context)
        w = w[:, :, None]
        mean = jnp.sum(w * lam, axis=1)
        var = jnp.sum(w * (lam + (lam - mean[:, None]) ** 2), axis=1)
        return mean, var


class BetaBinomialDataset(_CountDataset):
    """Beta-binomial data ``x0`` per coordinate and Poisson source ``x1``.

    See the module docstring for the laws. Args:
      size, d, seed: as for ``PoissonMixtureDataset``.
      n_trials: binomial trials ``n >= 1``; ``x0`` lies in ``[0, n]``.
      alpha_range, beta_range: ``(lo, hi)``, ``0 < lo <= hi``; per-coordinate
        ``alpha_j ~ U(alpha_range)``, ``beta_j ~ U(beta_range)``.
      condition_type: ``"none"`` or ``"multiplier"`` (``alpha_j`` scaled by ``c``).
      multiplier_range: ``(lo, hi)`` for ``c``, ``0 < lo <= hi``.
      source_rate: Poisson rate of ``x1``, a positive scalar or ``[d]`` array; None means
        ``n_trials * alpha / (alpha + beta)``.

    Attributes:
      alpha, beta, source_rate: float32 ``[d]``.
      x0, x1: int32 ``[size, d]``; context: float32 ``[size, 1]`` or None (``"none"``).
    """

    def __init__(
        self,
        size: int,
        d: int,
        *,
        n_trials: int = 50,
        alpha_range=(0.5, 5.0),
        beta_range=(0.5, 5.0),
        condition_type: str = "none",
        multiplier_range=(0.5, 2.0),
        source_rate=None,
        seed: int = 0,
    ):
        key_params, key_data = self._setup(
            size, d, condition_type, BETA_BINOMIAL_CONDITION_TYPES, multiplier_range, seed
        )
        self.n_trials = check_int_range("n_trials", n_trials, 1)
        self.alpha_range = _check_positive_range("alpha_range", alpha_range)
        self.beta_range = _check_positive_range("beta_range", beta_range)
        k_a, k_b = jax.random.split(key_params)
        self.alpha = jax.random.uniform(k_a, (self.d,), jnp.float32, *self.alpha_range)
        self.beta = jax.random.uniform(k_b, (self.d,), jnp.float32, *self.beta_range)
        if source_rate is None:
            source_rate = self.n_trials * self.alpha / (self.alpha + self.beta)
        self.source_rate = self._check_rate(source_rate)
        self._presample(key_data)

    def _check_rate(self, source_rate) -> jax.Array:
        """``source_rate`` as float32 ``[d]`` with finite entries ``> 0``, or raise."""
        host = np.asarray(source_rate, np.float64)
        if host.ndim > 1 or (host.ndim == 1 and host.shape[0] != self.d):
            raise ValueError(f"source_rate must be a scalar or shape [{self.d}], got {host.shape}")
        if not np.all(np.isfinite(host)) or np.any(host <= 0):
            raise ValueError(f"source_rate={source_rate!r} is not allowed; need finite rates > 0")
        return jnp.broadcast_to(jnp.asarray(host, jnp.float32), (self.d,))

    def _shape_params(self, context):
        """``(a, b)`` broadcastable to ``[n, d]``: ``a = alpha * c`` when conditioned."""
        a = self.alpha[None] if context is None else self.alpha[None] * context
        return a, self.beta[None]

    def _draw_x0(self, key, context, n):
        k_p, k_x = jax.random.split(key)
        a, b = (jnp.broadcast_to(v, (n, self.d)) for v in self._shape_params(context))
        p = jax.random.beta(k_p, a, b)
        return jax.random.binomial(k_x, self.n_trials, p).astype(jnp.int32)

    def _draw_x1(self, key, n):
        return jax.random.poisson(key, self.source_rate, (n, self.d), dtype=jnp.int32)

    def _moments(self, context):
        a, b = self._shape_params(context)
        n, s = self.n_trials, a + b
        return n * a / s, n * a * b * (s + n) / (s**2 * (s + 1.0))
