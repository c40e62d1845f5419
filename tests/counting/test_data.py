"""Count datasets: laws against scipy pmfs and NumPy closed forms, batching invariants."""

import jax
import numpy as np
import pytest
import scipy.stats as st

from jaxdiff.counting.data import (
    CONDITION_TYPES,
    BetaBinomialDataset,
    PoissonMixtureDataset,
    paired_batches,
)

N_DRAWS = 40_000  # rows per draw; every dataset uses this size and D dimensions
D = 3  # one shape throughout keeps the number of XLA compilations (the slow part) low
Z_MAX = 5.0  # standard errors allowed in moment checks


def gof_pvalue(samples, pmf_fn, upper):
    """Chi-square p-value; adjacent support points merged left to right until expected >= 5."""
    samples = np.asarray(samples).ravel()
    support = np.arange(upper + 1)
    expected = samples.size * pmf_fn(support)
    observed = np.bincount(samples, minlength=upper + 1)[: upper + 1]
    assert samples.max() <= upper, "samples beyond the oracle's support window"
    expected[-1] += samples.size - expected.sum()  # tail mass beyond the window
    obs_bins, exp_bins, o_acc, e_acc = [], [], 0.0, 0.0
    for o, e in zip(observed, expected, strict=True):
        o_acc, e_acc = o_acc + o, e_acc + e
        if e_acc >= 5:
            obs_bins.append(o_acc)
            exp_bins.append(e_acc)
            o_acc = e_acc = 0.0
    obs_bins[-1] += o_acc
    exp_bins[-1] += e_acc
    return st.chisquare(obs_bins, exp_bins).pvalue


def np_mixture_moments(lam, w, c=None, condition_type="none", lambda_loc=0.0, mrange=(1, 1)):
    """NumPy oracle: E[x | c], Var[x | c] (float64 [n, d]) of a Poisson mixture.

    ``lam`` [k, d] rates and ``w`` [k] weights; ``c`` [n, 1] or None (then n = 1).
    """
    lam, w = np.asarray(lam, np.float64), np.asarray(w, np.float64)
    n = 1 if c is None else c.shape[0]
    rates = np.broadcast_to(lam, (n, *lam.shape)).copy()
    weights = np.broadcast_to(w, (n, w.size)).copy()
    if condition_type == "multiplier":
        rates = rates * c[:, :, None]
    elif condition_type == "additive":
        rates = rates + c[:, :, None] * lambda_loc
    elif condition_type == "mixture":
        lo, hi = mrange
        u = np.full_like(c, 0.5) if lo == hi else (c - lo) / (hi - lo)
        weights = (1 - u) * w[None] + u * w[None, ::-1]
    mean = np.einsum("nk,nkd->nd", weights, rates)
    second = np.einsum("nk,nkd->nd", weights, rates + rates**2)
    return mean, second - mean**2


def np_poisson_moments(ds, c):
    """The oracle above for a dataset's data law ``x0 | c``."""
    return np_mixture_moments(
        ds.lambda_data, ds.weights_data, c, ds.condition_type, ds.lambda_loc, ds.multiplier_range
    )


def sort_rows(a):
    """Rows in lexicographic order (multiset comparison of rows)."""
    a = np.asarray(a)
    return a[np.lexsort(a.T[::-1])]


def np_betabinom_moments(ds, c):
    a = np.asarray(ds.alpha, np.float64)[None] * (1.0 if c is None else c)
    b = np.asarray(ds.beta, np.float64)[None]
    dist = st.betabinom(ds.n_trials, a, b)
    return dist.mean(), dist.var()


def assert_moments_match(x, c, mean, var, bins=4):
    """Per context bin: mean residual and squared residual vs var, within Z_MAX SEs."""
    x = np.asarray(x, np.float64)
    mean, var = np.broadcast_to(mean, x.shape), np.broadcast_to(var, x.shape)
    order = np.argsort(c[:, 0]) if c is not None else np.arange(x.shape[0])
    for rows in np.array_split(order, bins):
        resid = x[rows] - mean[rows]
        z_mean = resid.sum(0) / np.sqrt(var[rows].sum(0))
        sq = resid**2 - var[rows]
        z_var = sq.mean(0) / (sq.std(0) / np.sqrt(rows.size))
        assert np.all(np.abs(z_mean) < Z_MAX), z_mean
        assert np.all(np.abs(z_var) < Z_MAX), z_var


@pytest.mark.parametrize("condition_type", CONDITION_TYPES)
def test_poisson_mixture_shapes_and_determinism(condition_type):
    ds = PoissonMixtureDataset(N_DRAWS, D, condition_type=condition_type, seed=3)
    again = PoissonMixtureDataset(N_DRAWS, D, condition_type=condition_type, seed=3)
    other = PoissonMixtureDataset(N_DRAWS, D, condition_type=condition_type, seed=4)
    assert ds.x0.shape == ds.x1.shape == (N_DRAWS, D)
    assert ds.x0.dtype == ds.x1.dtype == np.int32
    assert ds.lambda_data.shape == ds.lambda_source.shape == (3, D)
    assert ds.weights_data.shape == ds.weights_source.shape == (3,)
    np.testing.assert_allclose(np.sum(ds.weights_data), 1.0, rtol=1e-5)
    assert np.all(np.asarray(ds.lambda_data) >= 1e-3)
    assert np.all(np.asarray(ds.x0) >= 0) and np.all(np.asarray(ds.x1) >= 0)
    if condition_type == "none":
        assert ds.context is None and ds.context_dim == 0
    else:
        assert ds.context.shape == (N_DRAWS, 1) and ds.context.dtype == np.float32
        assert ds.context_dim == 1
        assert np.all((np.asarray(ds.context) >= 0.5) & (np.asarray(ds.context) <= 2.0))
    for name in ("x0", "x1", "lambda_data", "weights_source"):
        np.testing.assert_array_equal(getattr(ds, name), getattr(again, name))
        assert not np.array_equal(getattr(ds, name), getattr(other, name)), name


@pytest.mark.parametrize("condition_type", CONDITION_TYPES)
def test_poisson_mixture_conditional_moments(condition_type, key):
    ds = PoissonMixtureDataset(N_DRAWS, D, condition_type=condition_type, k=3, seed=1)
    draw = ds.sample(key, N_DRAWS)
    assert draw["x"].shape == draw["x1"].shape == (N_DRAWS, D)
    assert draw["x"].dtype == draw["x1"].dtype == np.int32
    assert ("context" in draw) == (condition_type != "none")
    c = None if condition_type == "none" else np.asarray(draw["context"], np.float64)
    mean, var = np_poisson_moments(ds, c)
    n_rows = N_DRAWS if c is not None else 1
    assert mean.shape == (n_rows, 3)
    got_mean = ds.conditional_mean(draw.get("context"))
    got_var = ds.conditional_variance(draw.get("context"))
    assert got_mean.dtype == got_var.dtype == np.float32
    np.testing.assert_allclose(got_mean, mean, rtol=1e-4)
    np.testing.assert_allclose(got_var, var, rtol=1e-4)
    assert_moments_match(draw["x"], c, mean, var)
    # the source is the unconditional source mixture, whatever the context
    m1, v1 = np_mixture_moments(ds.lambda_source, ds.weights_source)
    assert_moments_match(draw["x1"], c, m1, v1)


def test_poisson_mixture_fixed_context_moments(key):
    """Degenerate range lo == hi fixes c exactly: the law at one context value."""
    for condition_type in ("multiplier", "additive", "mixture"):
        ds = PoissonMixtureDataset(
            N_DRAWS, D, condition_type=condition_type, multiplier_range=(1.7, 1.7), seed=2
        )
        draw = ds.sample(key, N_DRAWS)
        np.testing.assert_allclose(draw["context"], 1.7)
        mean, var = np_poisson_moments(ds, np.full((N_DRAWS, 1), 1.7))
        assert_moments_match(draw["x"], None, mean, var, bins=1)


def test_poisson_single_component_matches_scipy(key):
    ds = PoissonMixtureDataset(N_DRAWS, D, condition_type="none", k=1, seed=5)
    x = np.asarray(ds.sample(key, N_DRAWS)["x"])
    assert ds.conditional_mean().shape == (1, D)
    for j in range(2):
        lam = float(ds.lambda_data[0, j])
        upper = int(st.poisson(lam).ppf(1 - 1e-12)) + 1
        assert gof_pvalue(x[:, j], st.poisson(lam).pmf, upper) > 1e-3, lam


@pytest.mark.parametrize("condition_type", ["none", "multiplier"])
def test_beta_binomial_law(condition_type, key):
    ds = BetaBinomialDataset(
        N_DRAWS, D, n_trials=20, condition_type=condition_type, seed=7, alpha_range=(0.3, 3.0)
    )
    assert ds.x0.shape == ds.x1.shape == (N_DRAWS, D) and ds.x0.dtype == np.int32
    assert ds.alpha.shape == ds.beta.shape == ds.source_rate.shape == (D,)
    assert np.all((np.asarray(ds.x0) >= 0) & (np.asarray(ds.x0) <= 20))
    draw = ds.sample(key, N_DRAWS)
    c = draw.get("context")
    c = None if c is None else np.asarray(c, np.float64)
    mean, var = np_betabinom_moments(ds, c)
    np.testing.assert_allclose(ds.conditional_mean(draw.get("context")), mean, rtol=1e-4)
    np.testing.assert_allclose(ds.conditional_variance(draw.get("context")), var, rtol=1e-4)
    assert_moments_match(draw["x"], c, mean, var)
    if condition_type == "none":
        x = np.asarray(draw["x"])
        for j in range(2):
            dist = st.betabinom(20, float(ds.alpha[j]), float(ds.beta[j]))
            assert gof_pvalue(x[:, j], dist.pmf, 20) > 1e-3, j
    # source: Poisson(n alpha / (alpha + beta)) per coordinate by default
    rate = 20 * np.asarray(ds.alpha, np.float64) / np.asarray(ds.alpha + ds.beta, np.float64)
    np.testing.assert_allclose(ds.source_rate, rate, rtol=1e-5)
    x1 = np.asarray(draw["x1"])
    assert np.all(np.abs(x1.mean(0) - rate) < Z_MAX * np.sqrt(rate / N_DRAWS))
    assert gof_pvalue(x1[:, 0], st.poisson(rate[0]).pmf, int(x1.max()) + 30) > 1e-3


def test_beta_binomial_explicit_source_rate(key):
    ds = BetaBinomialDataset(N_DRAWS, D, source_rate=[3.0, 40.0, 0.5])
    x1 = np.asarray(ds.sample(key, N_DRAWS)["x1"])
    rate = np.array([3.0, 40.0, 0.5])
    assert np.all(np.abs(x1.mean(0) - rate) < Z_MAX * np.sqrt(rate / N_DRAWS))
    assert BetaBinomialDataset(N_DRAWS, D, source_rate=5.0).source_rate.shape == (D,)


def test_batches_are_epoch_permutations_with_independent_pairing():
    ds = PoissonMixtureDataset(N_DRAWS, D, condition_type="multiplier", seed=0)
    batch_size = 7_000  # does not divide N_DRAWS: the last, short batch is dropped
    batch_fn, steps = ds.batches(batch_size, seed=4)
    assert steps == N_DRAWS // batch_size
    x0, x1, ctx = (np.asarray(a) for a in (ds.x0, ds.x1, ds.context))
    b0, again = batch_fn(3), batch_fn(3)
    for name in ("x", "x1", "context"):
        np.testing.assert_array_equal(b0[name], again[name])
    assert b0["x"].dtype == np.int32 and b0["context"].dtype == np.float32
    assert b0["x"].shape == b0["x1"].shape == (batch_size, D)
    perm0 = np.random.default_rng([4, 1, 0]).permutation(N_DRAWS)
    perm1 = np.random.default_rng([4, 1, 1]).permutation(N_DRAWS)
    epoch = [batch_fn(steps + i) for i in range(steps)]  # epoch 1
    used = steps * batch_size
    for name, rows in (("x", x0[perm0]), ("x1", x1[perm1]), ("context", ctx[perm0])):
        got = np.concatenate([b[name] for b in epoch])
        np.testing.assert_array_equal(got, rows[:used])  # context travels with x0
    # a whole-dataset batch: every row exactly once (multiset), pairs (x0, c) kept
    fn, steps_full = paired_batches(x0, x1, ctx, N_DRAWS, seed=4)
    full = fn(0)
    assert steps_full == 1
    np.testing.assert_array_equal(sort_rows(full["x"]), sort_rows(x0))
    np.testing.assert_array_equal(sort_rows(full["x1"]), sort_rows(x1))
    pairs = np.concatenate([full["x"], full["context"]], 1)
    np.testing.assert_array_equal(sort_rows(pairs), sort_rows(np.concatenate([x0, ctx], 1)))
    # independent coupling: x1 rows are not taken in the x0 order
    x1_in_x0_order = x1[np.random.default_rng([4, 0, 0]).permutation(N_DRAWS)]
    assert np.mean(np.all(full["x1"] == x1_in_x0_order, axis=1)) < 0.05
    # a different epoch reshuffles
    assert not np.array_equal(batch_fn(0)["x"], batch_fn(steps)["x"])


def test_batches_without_context():
    ds = BetaBinomialDataset(N_DRAWS, D, seed=1)
    batch_fn, steps = ds.batches(N_DRAWS // 5)
    assert steps == 5
    batch = batch_fn(0)
    assert set(batch) == {"x", "x1"} and batch["x"].shape == (N_DRAWS // 5, D)
    seen = np.concatenate([batch_fn(i)["x"] for i in range(steps)])
    np.testing.assert_array_equal(sort_rows(seen), sort_rows(np.asarray(ds.x0)))


BAD_ARGS = [
    (PoissonMixtureDataset, {"size": 0, "d": 2}, ValueError, "size"),
    (PoissonMixtureDataset, {"size": 5, "d": -1}, ValueError, "d="),
    (PoissonMixtureDataset, {"size": 5, "d": 2, "k": 0}, ValueError, "k="),
    (PoissonMixtureDataset, {"size": 5, "d": 2, "condition_type": "foo"}, ValueError, "foo"),
    (PoissonMixtureDataset, {"size": 5, "d": 2, "multiplier_range": (2, 1)}, ValueError, "lo"),
    (PoissonMixtureDataset, {"size": 5, "d": 2, "multiplier_range": (0, 1)}, ValueError, "0"),
    (PoissonMixtureDataset, {"size": 5, "d": 2, "multiplier_range": 3}, TypeError, "pair"),
    (PoissonMixtureDataset, {"size": 5, "d": 2, "lambda_scale": float("nan")}, ValueError, ""),
    (PoissonMixtureDataset, {"size": 2.5, "d": 2}, TypeError, "size"),
    (BetaBinomialDataset, {"size": 5, "d": 2, "condition_type": "additive"}, ValueError, ""),
    (BetaBinomialDataset, {"size": 5, "d": 2, "n_trials": 0}, ValueError, "n_trials"),
    (BetaBinomialDataset, {"size": 5, "d": 2, "alpha_range": (1.0, -1.0)}, ValueError, ""),
    (BetaBinomialDataset, {"size": 5, "d": 2, "source_rate": [1.0, 0.0]}, ValueError, ""),
    (BetaBinomialDataset, {"size": 5, "d": 2, "source_rate": [1.0, 2.0, 3.0]}, ValueError, ""),
]
FIELDS = {
    "condition_type": "condition_type",
    "multiplier_range": "multiplier_range",
    "lambda_scale": "lambda_scale",
    "alpha_range": "alpha_range",
    "source_rate": "source_rate",
}


@pytest.mark.parametrize("cls, kwargs, exc, text", BAD_ARGS)
def test_bad_arguments_name_the_field(cls, kwargs, exc, text):
    bad = [name for name in kwargs if name in FIELDS]
    with pytest.raises(exc) as info:
        cls(**kwargs)
    message = str(info.value)
    assert text in message
    for name in bad:
        assert FIELDS[name] in message
    if cls is BetaBinomialDataset and kwargs.get("condition_type") == "additive":
        assert "multiplier" in message and "none" in message


def test_bad_batch_and_context_arguments(key):
    ds = PoissonMixtureDataset(N_DRAWS, D, condition_type="multiplier")
    with pytest.raises(ValueError, match="batch_size"):
        ds.batches(N_DRAWS + 1)
    with pytest.raises(ValueError, match="batch_size"):
        ds.batches(0)
    with pytest.raises(ValueError, match="context"):
        ds.conditional_mean(None)
    with pytest.raises(ValueError, match="context"):
        ds.conditional_variance(np.ones((3, 2)))
    with pytest.raises(ValueError, match="n="):
        ds.sample(key, 0)
    batch_fn, _ = ds.batches(5)
    with pytest.raises(ValueError, match="step"):
        batch_fn(-1)
    assert jax.tree.all(jax.tree.map(lambda a: a.shape[0] == 5, batch_fn(7)))
