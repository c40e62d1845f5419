"""Flow-matching objectives: oracles for the pairing, the targets, the samplers, training.

Oracles: ``FlowMatchingObjective`` (bit-identical draws), scipy's
``linear_sum_assignment`` (exact OT pairs, global and per class), the closed-form minimal
loss for Gaussian data (velocity + score head), Kolmogorov-Smirnov tests of the time
samplers. (The SB-CFM Sinkhorn pairs meet the closed-form Gaussian plan in test_paths.py.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linear_sum_assignment

from jaxdiff.flows.objectives import (
    CFMObjective,
    TimeSampler,
    cfm_objective,
    interpolant_objective,
    ot_cfm_objective,
    sb_cfm_objective,
)
from jaxdiff.flows.paths import independent_path, interpolant_path
from jaxdiff.nets.mlp import MLP
from jaxdiff.train import FlowMatchingObjective, TrainingConfig, array_batches, fit

KEY = jax.random.key(0)


def _linear_model(params, x, t, context=None):
    return params * x + t[:, None]


def _model(p, x, t, c):
    return p * x + jnp.sin(t / 1000.0).reshape(-1, 1, 1)


_PER_EXAMPLE = jax.jit(lambda obj, key, batch: obj.per_example_loss(key, 0.5, _model, batch))
_COUPLE = jax.jit(lambda obj, key, batch: obj.couple(key, batch))


def test_cfm_objective_draws_what_flow_matching_objective_draws():
    batch = {"x": jax.random.normal(KEY, (64, 2, 3)) + 1.0}
    ours = cfm_objective(time_sampler=TimeSampler.create(t_min=0.1), time_scale=1e3)
    theirs = FlowMatchingObjective.create(time_scale=1e3, t_min=0.1)
    want = _PER_EXAMPLE(theirs, KEY, batch)
    np.testing.assert_allclose(_PER_EXAMPLE(ours, KEY, batch), want, rtol=1e-6)


def _pairs(obj, batch, key=KEY):
    out = _COUPLE(obj, key, batch)
    return {k: np.asarray(v) for k, v in vars(out).items() if v is not None}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ot_cfm_pairs_are_scipy_assignments(seed):
    n, rng = 40, np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32) * 2.0
    out = _pairs(ot_cfm_objective(), {"x": x})
    assert out["converged"]
    np.testing.assert_array_equal(out["i"], np.arange(n))
    np.testing.assert_array_equal(np.sort(out["j"]), np.arange(n))  # a permutation
    # the source rows are the per-example noise of the independent objective, permuted
    noise = np.asarray(cfm_objective().couple(KEY, {"x": x}).x1)
    np.testing.assert_array_equal(out["x1"], noise[out["j"]])
    cost = ((x[:, None].astype(np.float64) - noise[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    np.testing.assert_array_equal(out["j"][rows], cols)
    # under jit, non-finite data cannot raise: the rows stay as they come, reported
    x[seed, 0] = np.nan
    out = _pairs(ot_cfm_objective(), {"x": x})
    assert not out["converged"] and np.array_equal(out["j"], np.arange(n))


def test_class_conditional_pairs_are_per_class_scipy_assignments():
    rng = np.random.default_rng(5)
    n = 40
    x = rng.normal(size=(n, 2)).astype(np.float32)
    labels = rng.permutation(np.repeat([0, 1, 2], [8, 12, 20])).astype(np.int32)
    noise = np.asarray(cfm_objective().couple(KEY, {"x": x}).x1)
    obj = ot_cfm_objective(class_conditional=True)
    # the default source (noise; its row k in class labels[k]), then source rows with
    # their own classes; one compiled program for both
    assert np.array_equal(
        _pairs(obj, {"x": x, "labels": labels})["j"],
        _pairs(obj, {"x": x, "labels": labels, "x1": noise, "labels1": labels})["j"],
    )
    for source, labels1 in ((noise, labels), (noise[::-1] + 1.0, rng.permutation(labels))):
        batch = {"x": x, "labels": labels, "x1": source, "labels1": labels1}
        out = _pairs(obj, batch)
        j = out["j"]
        np.testing.assert_array_equal(np.sort(j), np.arange(n))
        np.testing.assert_array_equal(labels1[j], labels)  # never across classes
        np.testing.assert_array_equal(out["labels"], labels)
        for c in range(3):
            rows, cols = np.flatnonzero(labels == c), np.flatnonzero(labels1 == c)
            cost = ((x[rows, None].astype(np.float64) - source[None, cols]) ** 2).sum(-1)
            r, s = linear_sum_assignment(cost)
            np.testing.assert_array_equal(j[rows[r]], cols[s])


def test_time_samplers_have_their_distributions():
    keys = jax.random.split(KEY, 4000)
    t = np.asarray(TimeSampler.create("uniform", t_min=0.1).sample(keys))
    assert stats.kstest(t, stats.uniform(0.1, 0.8).cdf).pvalue > 1e-3
    sampler = TimeSampler.create("logit_normal", loc=0.5, scale=0.8, t_min=0.02)
    t = np.asarray(jax.jit(sampler.sample)(keys))
    u = (t - 0.02) / 0.96

    def logit_normal_cdf(v):
        return stats.norm.cdf((np.log(v) - np.log1p(-v) - 0.5) / 0.8)

    assert stats.kstest(u, logit_normal_cdf).pvalue > 1e-3
    assert stats.kstest(u, lambda v: stats.norm.cdf(np.log(v) - np.log1p(-v))).pvalue < 1e-6
    assert t.min() >= 0.02 and t.max() <= 0.98
    np.testing.assert_allclose(sampler.sample(keys[0]), t[0], rtol=1e-6)  # per-key draws


def test_label_dropout_uses_the_null_class_id_and_knobs_are_traced():
    n = 2000
    x = jax.random.normal(KEY, (n, 2))
    labels = jnp.arange(n, dtype=jnp.int32) % 3
    seen, traces = [], []

    def model(params, xt, t, context):
        traces.append(1)  # once per trace, i.e. per compile
        jax.debug.callback(lambda c: seen.append(np.asarray(c)), context)
        return jnp.concatenate([params * xt, -xt], axis=-1)

    loss = jax.jit(lambda obj, key, batch: obj(key, 1.0, model, batch))
    batch = {"x": x, "labels": labels}
    for sigma, p, loc, w in ((0.5, 0.0, 0.0, 1.0), (1.0, 0.2, 1.0, 0.5), (2.0, 0.5, -1.0, 2.0)):
        sampler = TimeSampler.create("logit_normal", loc=loc)
        obj = interpolant_objective(
            sigma,
            num_classes=3,
            label_drop_prob=p,
            time_sampler=sampler,
            score_head=True,
            score_weight=w,
        )
        value, aux = jax.block_until_ready(loss(obj, KEY, batch))
        np.testing.assert_allclose(aux["velocity_loss"] + w * aux["score_loss"], value, rtol=1e-5)
        ctx = seen[-1]
        dropped = ctx == 3  # the null class id = num_classes
        assert abs(dropped.mean() - p) <= 4 * np.sqrt(p * (1 - p) / n)
        np.testing.assert_array_equal(ctx[~dropped], np.asarray(labels)[~dropped])
    assert len(traces) == 1  # sigma, drop probability, loc, weight: traced
    keys = jax.random.split(KEY, n)  # per-example: a row's drop depends on its key only
    jax.block_until_ready(loss(obj, keys[:10], {"x": x[:10], "labels": labels[:10]}))
    np.testing.assert_array_equal(seen[-1], ctx[:10])


def test_score_head_loss_matches_the_gaussian_closed_form():
    """Gaussian data ``N(mu, s^2)``, noise source, trig interpolant, ``t ~ U(0.05, 0.95)``.

    With the exact ``b(x) = E u + C / V (x - m)`` and ``s(x) = -(x - m) / V`` the
    per-dimension loss at ``t`` is ``Var u - C^2 / V + w (1 - g^2 / V)``.
    """
    mu, s, t_min, w = jnp.asarray([1.0, -2.0, 0.5]), 0.7, 0.05, 0.5
    path = interpolant_path(0.8, "trig")
    obj = interpolant_objective(
        0.8,
        interpolation="trig",
        score_head=True,
        score_weight=w,
        time_sampler=TimeSampler.create(t_min=t_min),
    )

    def coefficients(t):
        h = np.pi / 2
        a, b, da, db = jnp.cos(h * t), jnp.sin(h * t), -h * jnp.sin(h * t), h * jnp.cos(h * t)
        g = path.sigma * jnp.sqrt(t * (1 - t))
        dg = path.sigma * (1 - 2 * t) / (2 * jnp.sqrt(t * (1 - t)))
        var = a**2 * s**2 + b**2 + g**2
        cov = a * da * s**2 + b * db + g * dg
        var_u = da**2 * s**2 + db**2 + dg**2
        return a, da, g, var, cov, var_u

    def oracle(params, xt, t, context):
        a, da, _, var, cov, _ = (c[:, None] for c in coefficients(t))
        m = a * mu
        velocity = da * mu + params["v"] * cov / var * (xt - m)
        return jnp.concatenate([velocity, -params["s"] * (xt - m) / var], axis=-1)

    grid = t_min + (1 - 2 * t_min) * (np.arange(100_000) + 0.5) / 100_000
    _, _, g, var, cov, var_u = (np.asarray(c, np.float64) for c in coefficients(grid))
    analytic = float(np.mean(var_u - cov**2 / var + w * (1 - g**2 / var)))
    n = 8192
    batch = {"x": mu + s * jax.random.normal(KEY, (n, 3))}
    per_example = jax.jit(lambda p: obj.per_example_loss(jax.random.key(1), p, oracle, batch))
    per = per_example({"v": 1.0, "s": 1.0})
    loss = per.mean()
    stderr = float(per.std()) / np.sqrt(n)
    assert abs(float(loss) - analytic) < 4 * stderr, (float(loss), analytic, stderr)
    for p in (
        {"v": 1.1, "s": 1.0},
        {"v": 0.9, "s": 1.0},
        {"v": 1.0, "s": 1.2},
        {"v": 1.0, "s": 0.8},
    ):
        assert float(per_example(p).mean()) > float(loss)  # common random numbers


# --- each objective trains ---------------------------------------------------------
def _ring(n):
    comp = np.arange(n) % 8
    angle = comp * np.pi / 4
    means = 2.0 * np.stack([np.cos(angle), np.sin(angle)], -1)
    x = means + 0.2 * np.random.default_rng(0).normal(size=(n, 2))
    return x.astype(np.float32), (comp % 4).astype(np.int32)


FITS = {
    "cfm": (cfm_objective, {"sigma": 0.1}, 64),
    "ot_cfm_class_conditional": (
        ot_cfm_objective,
        {
            "class_conditional": True,
            "num_classes": 4,
            "label_drop_prob": 0.15,
            "time_sampler": "logit_normal",
        },
        16,
    ),
    "sb_cfm": (sb_cfm_objective, {"sigma": 0.5}, 32),
    "interpolant_score": (interpolant_objective, {"sigma": 0.5, "score_head": True}, 64),
}


@pytest.fixture(scope="module")
def net_and_params():
    """One small MLP for every fit: 4 outputs (velocity, score), a 4-wide class input."""
    net = MLP(hidden_dim=32, depth=2, time_embed_dim=16, out_dim=4)
    init = jax.jit(lambda k: net.init(k, jnp.zeros((1, 2)), jnp.zeros(1), jnp.zeros((1, 4))))
    return net, init(jax.random.key(1))["params"]


@pytest.mark.parametrize("name", sorted(FITS))
def test_each_objective_trains(name, net_and_params):
    make, kwargs, batch_size = FITS[name]
    if name in ("sb_cfm", "interpolant_score"):  # bound the sigma / sqrt(t) target term
        kwargs = {**kwargs, "time_sampler": TimeSampler.create(t_min=0.05)}
    obj = make(**kwargs)
    net, params = net_and_params
    x, labels = _ring(2048)

    def apply_fn(p, xt, t, context):
        if obj.num_classes is None:
            context = jnp.zeros((xt.shape[0], 4))
        else:  # the null id 4 = num_classes -> the all-zero one-hot row
            context = jax.nn.one_hot(context, 4)
        out = net.apply({"params": p}, xt, t, context)
        return out if obj.score_head else out[:, :2]

    arrays = {"x": x, "labels": labels} if obj.class_conditional else {"x": x}
    data, _ = array_batches(arrays, batch_size, seed=0)
    cfg = TrainingConfig(
        batch_size=batch_size,
        num_steps=300,
        learning_rate=3e-3,
        log_interval=50,
        progress=False,
        ema_decay=0.0,
    )
    history = fit(jax.random.key(2), params, apply_fn, obj, data, cfg).history
    first, last = history[0]["loss"], history[-1]["loss"]
    assert last < 0.95 * first, [round(r["loss"], 3) for r in history]
    assert all(r["pairs_converged"] == 1.0 for r in history)


# --- bad input ---------------------------------------------------------------------
BAD_CREATE = [
    (lambda: CFMObjective.create("linear"), TypeError, "path"),
    (lambda: cfm_objective(coupling="hungarian"), ValueError, "coupling"),
    (lambda: cfm_objective(time_sampler="beta"), ValueError, "time_sampler"),
    (lambda: cfm_objective(time_sampler=3), TypeError, "time_sampler"),
    (lambda: ot_cfm_objective(epsilon=0.1), ValueError, "epsilon"),
    (lambda: cfm_objective(coupling="sinkhorn"), ValueError, "epsilon"),
    (lambda: cfm_objective(coupling="sinkhorn", epsilon=-1.0), ValueError, "epsilon"),
    (lambda: ot_cfm_objective(class_conditional="yes"), TypeError, "class_conditional"),
    (lambda: cfm_objective(class_conditional=True), ValueError, "class_conditional"),
    (lambda: cfm_objective(num_classes=0), ValueError, "num_classes"),
    (lambda: cfm_objective(num_classes=2.5), TypeError, "num_classes"),
    (lambda: cfm_objective(num_classes=2, label_drop_prob=1.0), ValueError, "label_drop_prob"),
    (lambda: cfm_objective(label_drop_prob=0.1), ValueError, "num_classes"),
    (lambda: cfm_objective(score_head=True), ValueError, "sigma"),
    (lambda: cfm_objective(time_scale=0.0), ValueError, "time_scale"),
    (lambda: sb_cfm_objective(1.0, max_iterations=0), ValueError, "max_iterations"),
    (lambda: sb_cfm_objective(0.0), ValueError, "sigma"),
    (lambda: sb_cfm_objective(1.0, coupling="independent"), ValueError, "coupling"),
    (lambda: TimeSampler.create(scale=0.0), ValueError, "scale"),
    (lambda: TimeSampler.create(t_min=0.5), ValueError, "t_min"),
    (lambda: interpolant_path(1.0, "cubic"), ValueError, "interpolation"),
    (lambda: independent_path(-0.1), ValueError, "sigma"),
    (lambda: independent_path("0.1"), TypeError, "sigma"),
]


@pytest.mark.parametrize("call,error,field", BAD_CREATE)
def test_bad_settings_raise_naming_the_field(call, error, field):
    with pytest.raises(error, match=field):
        call()


X = jnp.ones((6, 2))
LABELS = jnp.asarray([0, 1, 2, 0, 1, 2], jnp.int32)
C3 = cfm_objective(num_classes=3)
BAD_CALLS = [
    (C3, {}, ValueError, "labels"),
    (C3, {"labels": LABELS * 1.0}, TypeError, "labels"),
    (C3, {"labels": LABELS[:4]}, ValueError, r"\[B\]"),
    (cfm_objective(num_classes=2), {"labels": LABELS}, ValueError, "num_classes"),
    (C3, {"labels": LABELS, "context": X}, ValueError, "context"),
    (cfm_objective(), {"x1": X[:, :1]}, ValueError, "x1"),
    (
        ot_cfm_objective(class_conditional=True),
        {"labels": LABELS, "labels1": 0 * LABELS},
        ValueError,
        "labels",
    ),
]


@pytest.mark.parametrize("obj,extra,error,field", BAD_CALLS)
def test_bad_batches_raise_naming_the_entry(obj, extra, error, field):
    with pytest.raises(error, match=field):
        obj(KEY, 1.0, _linear_model, {"x": X, **extra})


def test_bad_model_output_and_path_arguments_raise_naming_the_argument():
    for obj in (cfm_objective(), interpolant_objective(score_head=True)):  # raise when traced
        with pytest.raises(ValueError, match=f"apply_fn.*score_head={obj.score_head}"):
            jax.eval_shape(lambda o=obj: o(KEY, 1.0, lambda p, x, t, c: x[:, :1], {"x": X}))
    path = interpolant_path(1.0)
    with pytest.raises(ValueError, match="x1"):
        path.mu_t(X, X[:3], 0.5)
    with pytest.raises(ValueError, match="t must"):
        path.mu_t(X, X, jnp.ones(5))
    with pytest.raises(TypeError, match="t must"):
        path.mu_t(X, X, jnp.ones(6, bool))
    with pytest.raises(ValueError, match="xt"):
        path.u_t(X, X, 0.5, X[:, :1])
    with pytest.raises(TypeError, match="x0"):
        path.score_t("x", X, 0.5, X)
    with pytest.raises(TypeError, match="key"):
        path.sample_xt(None, X, X, 0.5)
    with pytest.raises(ValueError, match="key"):
        path.sample_xt(jax.random.split(KEY, 4), X, X, 0.5)
