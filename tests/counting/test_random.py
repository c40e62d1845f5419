"""Exact samplers against scipy pmfs (chi-square goodness of fit) and hard invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special as sp
import scipy.stats as st

from jaxdiff.counting import (
    bessel,
    binomial_thin,
    hypergeometric,
    multinomial_split,
    multivariate_hypergeometric,
    poisson,
)

N_DRAWS = 20_000


def chisq_pvalue(samples, support, pmf):
    """Chi-square GOF p-value; bins with expected count < 5 are pooled into one."""
    samples = np.asarray(samples).ravel()
    n = samples.size
    counts = np.array([(samples == k).sum() for k in support])
    expected = n * pmf
    assert counts.sum() == n, "samples outside the oracle's support"
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] < 5:  # merge the pooled tail into the largest bin
        obs, exp = obs[:-1], exp[:-1]
        obs[np.argmax(exp)] += counts[~big].sum()
        exp[np.argmax(exp)] += expected[~big].sum()
    exp = exp * obs.sum() / exp.sum()
    return st.chisquare(obs, exp).pvalue


HG_CASES = [(30, 50, 40), (5, 3, 6), (200, 900, 650), (7, 0, 4), (0, 9, 3), (12, 12, 0)]


def test_hypergeometric_matches_scipy(key):
    good, bad, n = (np.array(c) for c in zip(*HG_CASES, strict=True))
    draw = jax.jit(lambda k: hypergeometric(k, good, bad, n[None].repeat(N_DRAWS, 0)))
    x = np.asarray(draw(key))
    assert x.dtype == np.int32 and x.shape == (N_DRAWS, len(HG_CASES))
    for j, (g, b, m) in enumerate(HG_CASES):
        support = np.arange(max(0, m - b), min(m, g) + 1)
        pmf = st.hypergeom(g + b, g, m).pmf(support)
        if support.size == 1:
            assert np.all(x[:, j] == support[0])
        else:
            assert chisq_pvalue(x[:, j], support, pmf) > 1e-3, (g, b, m)


BESSEL_CASES = [(4.0, 3.0, 0), (4.0, 3.0, 2), (32.0, 32.0, 5), (0.5, 0.2, 1), (50.0, 2.0, 40)]


def bessel_pmf(lam, d, support):
    log_p = (support + d / 2) * np.log(lam) - sp.gammaln(support + 1) - sp.gammaln(support + d + 1)
    return np.exp(log_p) / sp.iv(d, 2 * np.sqrt(lam))


def test_bessel_matches_iv_pmf(key):
    lp, lm, d = (np.array(c) for c in zip(*BESSEL_CASES, strict=True))
    x = np.asarray(jax.jit(lambda k: bessel(k, lp, lm, np.broadcast_to(d, (N_DRAWS, d.size))))(key))
    assert x.dtype == np.int32 and x.min() >= 0
    for j, (a, b, order) in enumerate(BESSEL_CASES):
        support = np.arange(0, 200)
        pmf = bessel_pmf(a * b, order, support)
        assert abs(pmf.sum() - 1) < 1e-9
        assert chisq_pvalue(x[:, j], support, pmf) > 1e-3, (a, b, order)


def test_bessel_zero_rate_gives_zero(key):
    x = jax.jit(bessel)(key, jnp.array([0.0, 3.0]), jnp.array([2.0, 0.0]), jnp.array([4, 0]))
    np.testing.assert_array_equal(x, [0, 0])


def test_binomial_thin_matches_scipy(key):
    n = np.array([0, 1, 17, 300, 9, 9, 2000])
    p = np.array([0.3, 0.5, 0.22, 0.9, 0.0, 1.0, 0.003])
    x = np.asarray(jax.jit(binomial_thin)(key, np.broadcast_to(n, (N_DRAWS, 7)), p))
    assert x.dtype == np.int32
    assert np.all(x[:, 0] == 0) and np.all(x[:, 4] == 0) and np.all(x[:, 5] == 9)
    for j in (1, 2, 3, 6):
        support = np.arange(n[j] + 1)
        assert chisq_pvalue(x[:, j], support, st.binom(n[j], p[j]).pmf(support)) > 1e-3


def test_multivariate_hypergeometric_totals_and_marginal(key):
    """Columns are independent urn sets: column 0 is checked against scipy's marginal."""
    pop = np.array([[3, 0], [0, 1], [11, 7], [6, 2], [9, 9]])
    total = np.array([14, 5])
    keys = jax.random.split(key, 4000)
    draw = jax.jit(jax.vmap(lambda k: multivariate_hypergeometric(k, pop, total)))
    x = np.asarray(draw(keys))
    assert x.shape == (4000, 5, 2) and x.dtype == np.int32
    assert np.all(x.sum(1) == total) and np.all((x >= 0) & (x <= pop))
    x, pop, total = x[..., 0], pop[:, 0], total[0]
    for j in (0, 2, 4):  # each marginal is HG(pop_j, rest, total)
        support = np.arange(0, pop[j] + 1)
        pmf = st.hypergeom(pop.sum(), pop[j], total).pmf(support)
        assert chisq_pvalue(x[:, j], support, pmf) > 1e-3


def test_multinomial_split_totals_and_marginal(key):
    w = np.array([1.0, 0.0, 3.0, 4.0])
    keys = jax.random.split(key, 4000)
    x = np.asarray(jax.jit(jax.vmap(lambda k: multinomial_split(k, 9, w)))(keys))
    assert np.all(x.sum(1) == 9) and np.all(x[:, 1] == 0)
    support = np.arange(10)
    assert chisq_pvalue(x[:, 3], support, st.binom(9, 0.5).pmf(support)) > 1e-3


def test_jit_equals_eager(key):
    def f(k):
        return hypergeometric(k, jnp.array([5, 40]), jnp.array([9, 70]), jnp.array([6, 50]))

    np.testing.assert_array_equal(f(key), jax.jit(f)(key))


def test_hypergeometric_wide_matches_scipy(key):
    """sd ~ 19 and ~ 11: the outward inversion goes both ways from the mode many steps."""
    cases = [(3000, 3000, 3000), (900, 4000, 2200)]
    good, bad, n = (np.array(c) for c in zip(*cases, strict=True))
    x = np.asarray(jax.jit(lambda k: hypergeometric(k, good, bad, n[None].repeat(N_DRAWS, 0)))(key))
    for j, (g, b, m) in enumerate(cases):
        support = np.arange(max(0, m - b), min(m, g) + 1)
        pmf = st.hypergeom(g + b, g, m).pmf(support)
        assert chisq_pvalue(x[:, j], support, pmf) > 1e-3, (g, b, m)


def _joint_pvalue(xi, xj, m_i, m_j, m_all, total):
    """Chi-square p-value of the joint of two rows against scipy's multivariate law."""
    a, b = np.meshgrid(np.arange(m_i + 1), np.arange(m_j + 1), indexing="ij")
    rest = total - a - b
    law = st.multivariate_hypergeom([m_i, m_j, m_all - m_i - m_j], total)
    pmf = np.where(rest >= 0, law.pmf(np.stack([a, b, np.maximum(rest, 0)], -1)), 0.0)
    assert abs(pmf.sum() - 1) < 1e-9
    codes = np.asarray(xi) * (m_j + 1) + np.asarray(xj)
    return chisq_pvalue(codes, np.arange(pmf.size), pmf.ravel())


def test_multivariate_hypergeometric_non_power_of_two_rows(key):
    """5 and 13 rows (padded tree levels): every row's marginal is HG(N, pop_i, total),
    and the joint of two rows in different subtrees is scipy's multivariate law."""
    rng = np.random.default_rng(0)
    for n_rows, (ri, rj) in ((5, (1, 4)), (13, (5, 12))):
        pop = rng.integers(0, 9, size=n_rows)
        pop[ri], pop[rj] = 6, 4
        total = int(pop.sum()) * 2 // 5
        keys = jax.random.split(jax.random.fold_in(key, n_rows), 4000)
        draw = jax.jit(jax.vmap(multivariate_hypergeometric, in_axes=(0, None, None)))
        x = np.asarray(draw(keys, pop, total))
        assert x.shape == (4000, n_rows) and x.dtype == np.int32
        assert np.all(x.sum(1) == total) and np.all((x >= 0) & (x <= pop))
        for i in range(n_rows):
            support = np.arange(pop[i] + 1)
            pmf = st.hypergeom(pop.sum(), pop[i], total).pmf(support)
            if pop[i] == 0:
                assert np.all(x[:, i] == 0)
            else:
                assert chisq_pvalue(x[:, i], support, pmf) > 1e-4, (n_rows, i)
        p = _joint_pvalue(x[:, ri], x[:, rj], pop[ri], pop[rj], pop.sum(), total)
        assert p > 1e-3, n_rows


def test_multinomial_split_non_power_of_two_rows(key):
    """7 rows incl. zero weights: sums exact, zero-weight rows get nothing, Binomial marginals."""
    w = np.array([0.1, 0.0, 0.3, 0.25, 0.0, 0.2, 0.15], np.float32)
    keys = jax.random.split(key, 4000)
    x = np.asarray(jax.jit(jax.vmap(lambda k: multinomial_split(k, 23, w)))(keys))
    assert x.shape == (4000, 7) and np.all(x.sum(1) == 23)
    assert np.all(x[:, 1] == 0) and np.all(x[:, 4] == 0)
    support = np.arange(24)
    for i in (0, 3, 6):
        pmf = st.binom(23, w[i] / w.sum()).pmf(support)
        assert chisq_pvalue(x[:, i], support, pmf) > 1e-3, i


def test_poisson_matches_scipy(key):
    rate = np.array([0.0, 0.3, 4.0, 37.5, 400.0])
    x = np.asarray(jax.jit(poisson)(key, np.broadcast_to(rate, (N_DRAWS, 5))))
    assert x.dtype == np.int32 and np.all(x[:, 0] == 0)
    for j in range(1, 5):
        support = np.arange(int(rate[j] + 12 * np.sqrt(rate[j]) + 10))
        assert chisq_pvalue(x[:, j], support, st.poisson(rate[j]).pmf(support)) > 1e-3, rate[j]


def test_unrolled_loops_draw_the_same_numbers(key, monkeypatch):
    """The GPU's 8 masked steps per loop iteration give the CPU's draws, bit for bit."""
    import jaxdiff.counting.random as random_mod

    def draws():
        k = jax.random.split(key, 4)
        n = jnp.array([[0, 3, 40, 250]] * 64)
        return (
            binomial_thin(k[0], n, 0.37),
            hypergeometric(k[1], n, n // 2 + 5, n // 2),
            bessel(k[2], 6.0, 3.0, n % 7),
            poisson(k[3], n.astype(jnp.float32) / 3),
        )

    one = jax.jit(draws)()
    monkeypatch.setattr(random_mod, "_unroll", lambda: 8)
    eight = jax.jit(draws)()
    for a, b in zip(one, eight, strict=True):
        np.testing.assert_array_equal(a, b)
