"""Minibatch OT pairing: scipy oracle for the assignment, Sinkhorn sampling, labels, errors."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from jaxdiff.ot.auction import auction
from jaxdiff.ot.pairs import Pairs, assignment, ot_pairs


def _batches(n, seed=0, shape=(3,)):
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(n, *shape)).astype(np.float32)
    x1 = (rng.normal(size=(n, *shape)) + 1.0).astype(np.float32)
    return x0, x1


def _cost(x0, x1):
    a = np.asarray(x0, np.float64).reshape(len(x0), -1)
    b = np.asarray(x1, np.float64).reshape(len(x1), -1)
    return ((a[:, None] - b[None]) ** 2).sum(-1)


@pytest.mark.parametrize("solver", ["shortest_path", "auction"])
@pytest.mark.parametrize("n,seed", [(1, 0), (2, 1), (7, 2), (32, 3), (64, 4), (64, 5)])
def test_exact_matches_scipy(key, n, seed, solver):
    x0, x1 = _batches(n, seed)
    out = ot_pairs(key, x0, x1, method="exact", solver=solver)
    assert isinstance(out, Pairs) and out.method == "exact"
    assert out.i.dtype == jnp.int32 and out.j.dtype == jnp.int32
    assert bool(out.converged) and bool(out.auction_finished) and bool(out.all_finite)
    p0, p1, i, j = out.x0, out.x1, np.asarray(out.i), np.asarray(out.j)
    np.testing.assert_array_equal(i, np.arange(n))
    np.testing.assert_array_equal(np.sort(j), np.arange(n))  # a permutation
    np.testing.assert_array_equal(np.asarray(p0), x0[i])
    np.testing.assert_array_equal(np.asarray(p1), x1[j])
    c = _cost(x0, x1)
    r, s = linear_sum_assignment(c)
    np.testing.assert_allclose(c[i, j].sum(), c[r, s].sum(), rtol=1e-4)


@pytest.mark.parametrize("solver", ["shortest_path", "auction"])
def test_assignment_on_float32_cost_matrix(solver):
    rng = np.random.default_rng(7)
    c = rng.random((48, 48)).astype(np.float32) * 100.0
    perm = np.asarray(jax.jit(lambda c: assignment(c, solver=solver))(c))
    np.testing.assert_array_equal(np.sort(perm), np.arange(48))
    r, s = linear_sum_assignment(c.astype(np.float64))
    ref = c.astype(np.float64)[r, s].sum()
    np.testing.assert_allclose(c.astype(np.float64)[np.arange(48), perm].sum(), ref, rtol=1e-4)


def test_auto_solver_is_shortest_path_on_the_cpu(monkeypatch):
    """``solver="auto"``, as measured: shortest paths on the CPU, the auction elsewhere."""
    import jaxdiff.ot.pairs as pairs_module

    calls = []
    real = pairs_module.auction
    monkeypatch.setattr(pairs_module, "auction", lambda c, **kw: calls.append(1) or real(c, **kw))
    c = _cost(*_batches(16, 4)).astype(np.float32)
    assert jax.default_backend() == "cpu"
    auto = np.asarray(assignment(c))
    np.testing.assert_array_equal(auto, np.asarray(assignment(c, solver="shortest_path")))
    assert calls == []
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    np.testing.assert_array_equal(
        np.asarray(assignment(c)), np.asarray(assignment(c, solver="auction"))
    )
    assert len(calls) == 2


def test_shortest_path_on_ties_and_larger_batches():
    """Integer costs (many tied optima) and n = 200: the optimum cost, exactly."""
    rng = np.random.default_rng(12)
    ties = rng.integers(0, 3, size=(60, 60)).astype(np.float32)
    x0, x1 = _batches(200, 13, shape=(2,))
    for c in (ties, _cost(x0, x1).astype(np.float32)):
        perm = np.asarray(jax.jit(assignment)(c))
        np.testing.assert_array_equal(np.sort(perm), np.arange(len(c)))
        r, s = linear_sum_assignment(c.astype(np.float64))
        got = c.astype(np.float64)[np.arange(len(c)), perm].sum()
        np.testing.assert_allclose(got, c.astype(np.float64)[r, s].sum(), rtol=1e-6)


def test_image_shaped_batches(key):
    x0, x1 = _batches(8, 3, shape=(2, 2, 3))
    out = ot_pairs(key, x0, x1)
    p1, i, j = out.x1, out.i, out.j
    assert p1.shape == x1.shape
    c = _cost(x0, x1)
    r, s = linear_sum_assignment(c)
    np.testing.assert_allclose(c[np.asarray(i), np.asarray(j)].sum(), c[r, s].sum(), rtol=1e-4)


def test_sinkhorn_pairs_close_to_exact(key):
    n = 32
    x0, x1 = _batches(n, 11)
    c = _cost(x0, x1)
    r, s = linear_sum_assignment(c)
    exact = c[r, s].mean()
    random_pairing = c.mean()
    keys = jax.random.split(key, 20)
    f = jax.jit(lambda k: ot_pairs(k, x0, x1, method="sinkhorn", epsilon=0.01))
    costs = []
    for k in keys:
        out = f(k)
        assert bool(out.converged) and bool(out.auction_finished) and bool(out.all_finite)
        i, j = out.i, out.j
        costs.append(c[np.asarray(i), np.asarray(j)].mean())
    sampled = float(np.mean(costs))
    assert sampled < exact * 1.1
    assert sampled < 0.5 * random_pairing


def test_jit_with_traced_key(key):
    x0, x1 = _batches(16, 2)
    f = jax.jit(lambda k, a, b: ot_pairs(k, a, b, method="sinkhorn"))
    i1, j1 = f(key, x0, x1).i, f(key, x0, x1).j
    out2 = f(jax.random.key(123), x0, x1)
    i2, j2 = out2.i, out2.j
    assert i1.shape == (16,) and j1.shape == (16,)
    assert not (np.array_equal(i1, i2) and np.array_equal(j1, j2))
    out3 = f(key, x0, x1)
    i3, j3 = out3.i, out3.j
    np.testing.assert_array_equal(i1, i3)
    np.testing.assert_array_equal(j1, j3)
    g = jax.jit(lambda k, a, b: ot_pairs(k, a, b, method="exact"))
    np.testing.assert_array_equal(g(key, x0, x1).x1, ot_pairs(key, x0, x1, method="exact").x1)


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
def test_labels_respected(key, method):
    n = 24
    x0, x1 = _batches(n, 5)
    rng = np.random.default_rng(0)
    labels0 = rng.permutation(np.repeat(np.arange(3), 8))
    labels1 = rng.permutation(labels0)
    out = ot_pairs(key, x0, x1, method=method, labels0=labels0, labels1=labels1)
    assert bool(out.converged)
    i, j = np.asarray(out.i), np.asarray(out.j)
    np.testing.assert_array_equal(labels0[i], labels1[j])
    if method == "exact":
        c = _cost(x0, x1)
        ref = sum(
            c[np.ix_(labels0 == k, labels1 == k)][
                linear_sum_assignment(c[np.ix_(labels0 == k, labels1 == k)])
            ].sum()
            for k in range(3)
        )
        np.testing.assert_allclose(c[i, j].sum(), ref, rtol=1e-4)


def test_bad_inputs(key):
    x0, x1 = _batches(8)
    with pytest.raises(ValueError, match="same shape"):
        ot_pairs(key, x0, x1[:5])
    with pytest.raises(ValueError, match="method"):
        ot_pairs(key, x0, x1, method="hungarian")
    with pytest.raises(ValueError, match="together"):
        ot_pairs(key, x0, x1, labels0=np.zeros(8, int))
    with pytest.raises(ValueError, match="labels0 must have shape"):
        ot_pairs(key, x0, x1, labels0=np.zeros(3, int), labels1=np.zeros(8, int))
    with pytest.raises(ValueError, match="same number of times"):
        ot_pairs(key, x0, x1, labels0=np.zeros(8, int), labels1=np.arange(8))
    with pytest.raises(ValueError, match="square"):
        assignment(jnp.ones((3, 4)))
    with pytest.raises(TypeError, match="return_indices"):
        ot_pairs(key, x0, x1, return_indices=True)  # removed: the indices are in Pairs


def test_pairs_across_the_global_batch_when_sharded():
    """torchcfm#19: data-parallel shards must be paired globally, not per device."""
    script = textwrap.dedent(
        """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
        import jax, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from jaxdiff.ot import ot_pairs
        assert jax.device_count() == 8
        rng = np.random.default_rng(0)
        x0 = rng.normal(size=(64, 2)).astype(np.float32)
        x1 = (rng.normal(size=(64, 2)) + 3 * np.sign(rng.normal(size=(64, 1)))).astype(np.float32)
        mesh = Mesh(np.array(jax.devices()), ("data",))
        shard = NamedSharding(mesh, P("data", None))
        x0s, x1s = jax.device_put(x0, shard), jax.device_put(x1, shard)
        fn = jax.jit(lambda k, a, b: ot_pairs(k, a, b, method="exact"))
        key = jax.random.key(1)
        sh, one = fn(key, x0s, x1s), fn(key, x0, x1)
        assert bool(sh.converged) and bool(sh.auction_finished)
        i_sh, j_sh, i_one, j_one = sh.i, sh.j, one.i, one.j
        np.testing.assert_array_equal(np.asarray(i_sh), np.asarray(i_one))
        np.testing.assert_array_equal(np.asarray(j_sh), np.asarray(j_one))
        assert sorted(np.asarray(j_sh).tolist()) == list(range(64))  # a permutation
        cross = np.mean(np.asarray(i_sh) // 8 != np.asarray(j_sh) // 8)
        print(cross)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(out.stdout.split()[-1]) > 0.5  # most pairs cross device shards


def test_auction_out_of_rounds_reports_unfinished():
    x0, x1 = _batches(32, 8)
    cost = _cost(x0, x1).astype(np.float32)
    perm, finished = auction(cost, max_rounds=1)
    assert not bool(finished)
    np.testing.assert_array_equal(np.sort(np.asarray(perm)), np.arange(32))  # still a permutation
    perm, finished = auction(cost)
    assert bool(finished)


def test_health_flags_report_unfinished_and_unconverged(key):
    x0, x1 = _batches(32, 8)
    short = ot_pairs(key, x0, x1, method="exact", solver="auction", max_rounds=1)
    assert not bool(short.auction_finished) and not bool(short.converged)
    assert bool(short.all_finite)
    np.testing.assert_array_equal(np.sort(np.asarray(short.j)), np.arange(32))
    loose = ot_pairs(key, x0, x1, method="sinkhorn", epsilon=1e-4, max_iterations=3)
    assert not bool(loose.converged) and bool(loose.auction_finished)
    tight = ot_pairs(key, x0, x1, method="sinkhorn", epsilon=0.1)
    assert bool(tight.converged)


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
def test_traced_bad_values_are_reported(key, method):
    x0, x1 = _batches(8, 2)
    bad = x0.copy()
    bad[3, 1] = np.nan
    f = jax.jit(lambda a, eps: ot_pairs(key, a, x1, method=method, epsilon=eps))
    out = f(bad, 0.05)
    assert not bool(out.all_finite) and not bool(out.converged)
    np.testing.assert_array_equal(out.j, np.arange(8))  # identity fallback, not garbage
    ok = f(x0, 0.05)
    assert bool(ok.all_finite) and bool(ok.converged)
    for eps in (float("nan"), float("inf"), 0.0, -1.0):
        out = f(x0, eps)
        if method == "sinkhorn":  # was: every row paired with index 0 for nan
            assert not bool(out.converged)
            np.testing.assert_array_equal(out.i, np.arange(8))
            np.testing.assert_array_equal(out.j, np.arange(8))
        else:  # epsilon plays no part in the exact pairing
            assert bool(out.converged)


def test_pairs_is_a_pytree_and_keys(key):
    x0, x1 = _batches(6, 4)
    out = jax.jit(lambda k: ot_pairs(k, x0, x1, method="sinkhorn"))(key)
    leaves, tree = jax.tree_util.tree_flatten(out)
    assert len(leaves) == 7
    back = jax.tree_util.tree_unflatten(tree, leaves)
    assert isinstance(back, Pairs) and back.method == "sinkhorn"
    legacy = ot_pairs(jax.random.PRNGKey(0), x0, x1, method="sinkhorn")
    np.testing.assert_array_equal(
        legacy.j, ot_pairs(jax.random.key(0), x0, x1, method="sinkhorn").j
    )
    with pytest.raises(TypeError, match="key"):
        ot_pairs(None, x0, x1)


def test_identical_points_with_relative_epsilon(key):
    x = np.ones((5, 2), np.float32)
    out = ot_pairs(key, x, x, method="sinkhorn")  # mean cost 0: epsilon used as absolute
    assert bool(out.converged) and bool(out.all_finite)
    np.testing.assert_array_equal(out.x1, x)


def test_sinkhorn_pairs_follow_the_plan_law(key):
    # n = 4 points, epsilon large enough that every plan entry is visible: the frequency of
    # each (i, j) over 4000 draws of 4 pairs matches n * P_ij (POT's plan, same epsilon)
    # within 5 binomial standard errors, and the marginal of i is uniform.
    import ot

    n = 4
    x0, x1 = _batches(n, 5)
    c = _cost(x0, x1)
    eps = float(c.mean())
    plan = ot.sinkhorn(np.full(n, 1 / n), np.full(n, 1 / n), c, eps, stopThr=1e-12)
    keys = jax.random.split(key, 4000)
    draw = jax.jit(
        jax.vmap(
            lambda k: ot_pairs(k, x0, x1, method="sinkhorn", epsilon=eps, relative_epsilon=False)
        )
    )
    out = draw(keys)
    counts = np.zeros((n, n))
    np.add.at(counts, (np.asarray(out.i).ravel(), np.asarray(out.j).ravel()), 1)
    freq, draws = counts / counts.sum(), counts.sum()
    se = np.sqrt(plan * (1 - plan) / draws)
    assert np.all(np.abs(freq - plan) < 5 * se + 1e-12), (freq, plan)
    assert plan.min() > 0.005  # every entry is sampled often enough to be tested
