"""Generated bad inputs to every Counting Flows entry point: a clear error or a health flag.

Each test draws wrong shapes, dtypes, NaN/inf, empty arrays, negative, zero or huge
sizes, unknown names and strings for numbers or bools, and asserts a ValueError or
TypeError whose message names the argument -- or, for values only known inside the
sampling loop (model outputs), the flag in ``CountingSampleOutput``.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdiff.counting import (
    INVALID_COUNT,
    BesselM,
    BetaBinomialDataset,
    ConstantM,
    ConstrainedSkellamBridge,
    EnergyScoreObjective,
    PoissonM,
    PoissonMixtureDataset,
    ReflectedSkellamBridge,
    SkellamBridge,
    posterior_sampler,
)
from jaxdiff.counting.factory import build_bridge, build_dataset, build_slack

FAST = settings(max_examples=20, deadline=None, derandomize=True)
SLOW = settings(max_examples=6, deadline=None, derandomize=True)
KEY = jax.random.key(0)
X = np.array([[1, 0, 3], [2, 2, 0]], np.int32)
BRIDGES = [SkellamBridge, ConstrainedSkellamBridge, ReflectedSkellamBridge]
bridges = st.sampled_from(BRIDGES)


def raises_naming(field, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` raises ValueError/TypeError whose message names ``field``."""
    with pytest.raises((TypeError, ValueError)) as info:
        fn(*args, **kwargs)
    pattern = rf"(?<!\w){re.escape(field)}(?!\w)"
    assert re.search(pattern, str(info.value)), (field, str(info.value))


def model(key, x_t, t, context):
    return x_t


not_numbers = st.sampled_from([None, "1", "abc", b"2", [1, "a"], {"a": 1}, object()])
bad_counts = st.one_of(
    not_numbers,
    st.sampled_from(
        [
            X.astype(np.float32),
            X.astype(bool),
            X[0],
            X[None],
            np.zeros((0, 3), np.int32),
            np.zeros((2, 0), np.int32),
            np.full((2, 3), np.nan),
            np.int32(3),
        ]
    ),
    st.integers(2**24 + 1, 2**62).map(lambda v: np.full((2, 3), v, np.int64)),
    st.integers(-(2**62), -(2**24) - 1).map(lambda v: np.full((2, 3), v, np.int64)),
)
bad_sizes = st.one_of(
    not_numbers,
    st.sampled_from([True, 2.5, float("nan"), float("inf")]),
    st.integers(-(2**40), 0),
)
bad_reals = st.one_of(
    not_numbers,
    st.sampled_from([True, float("nan"), float("inf"), -float("inf")]),
    st.floats(-1e12, -1e-6),
    st.floats(2.0**24 + 1, 1e30),
)
bad_times = st.one_of(
    not_numbers.filter(lambda v: v is not None),  # None: uniform draws
    st.sampled_from([True, float("nan"), np.zeros((3, 1)), np.zeros((2, 2)), "0.5"]),
    st.floats(1.0001, 1e9),
    st.floats(-1e9, -1e-4),
)
bad_keys = st.sampled_from([None, 0, 1.5, "key", np.zeros(3, np.float32), [0, 1]])


@FAST
@given(
    cls=bridges,
    which=st.sampled_from(["slack_sampler", "schedule_type", "delta", "homogeneous_time"]),
    value=st.one_of(not_numbers, st.sampled_from([3, 1.0, "cos", "False", "no", ConstantM])),
)
def test_bridge_constructors(cls, which, value):
    kwargs = {"schedule_type": "linear", "delta": False, "homogeneous_time": True}
    slack = ConstantM(1)
    if which == "slack_sampler":
        slack = value
    else:
        kwargs[which] = value
    raises_naming(which, cls, slack, **kwargs)


bad_positive = st.one_of(
    not_numbers,
    st.sampled_from([True, float("nan"), float("inf"), 0.0, 0]),
    st.floats(-1e12, -1e-6),
)


@FAST
@given(cls=bridges, kwarg=st.sampled_from(["concentration", "steepness", "scale"]), v=bad_positive)
def test_bridge_schedule_keywords(cls, kwarg, v):
    schedule = "sigmoid" if kwarg == "steepness" else "late_dense"
    raises_naming(kwarg, cls, ConstantM(1), schedule_type=schedule, **{kwarg: v})


@FAST
@given(cls=bridges, field=st.sampled_from(["x0", "x1"]), bad=bad_counts)
def test_bridge_call_counts(cls, field, bad):
    args = {"x0": X, "x1": X, field: bad}
    raises_naming(field, cls(ConstantM(1)), KEY, args["x0"], args["x1"], 0.5)


@FAST
@given(cls=bridges, t=bad_times)
def test_bridge_call_time(cls, t):
    raises_naming("t", cls(ConstantM(1)), KEY, X, X, t)


@FAST
@given(cls=bridges, key=bad_keys)
def test_bridge_keys(cls, key):
    bridge = cls(ConstantM(1))
    raises_naming("key", bridge, key, X, X, 0.5)
    raises_naming("key", bridge.sample, key, X, model, 2)


@FAST
@given(cls=bridges, n_steps=st.one_of(bad_sizes, st.integers(10**6 + 1, 10**12)))
def test_sample_n_steps(cls, n_steps):
    raises_naming("n_steps", cls(ConstantM(1)).sample, KEY, X, model, n_steps)


@FAST
@given(cls=bridges, bad=bad_counts)
def test_sample_x1(cls, bad):
    raises_naming("x1", cls(ConstantM(1)).sample, KEY, bad, model, 2)


@FAST
@given(cls=bridges, bad=st.sampled_from([None, 3, "model", np.ones(3), SkellamBridge]))
def test_sample_model_not_callable(cls, bad):
    raises_naming("model", cls(ConstantM(1)).sample, KEY, X, bad, 2)


@FAST
@given(
    cls=bridges,
    field=st.sampled_from(["guidance_x0", "guidance_schedule", "return_trajectory"]),
    value=st.one_of(
        not_numbers.filter(lambda v: v is not None),
        st.sampled_from([np.ones((2, 2)), np.full((2, 3), np.nan), np.ones(7), "yes", 1]),
    ),
)
def test_sample_options(cls, field, value):
    kwargs = {"guidance_x0": X, "guidance_schedule": np.ones(3)}
    kwargs[field] = value
    raises_naming(field, cls(ConstantM(1)).sample, KEY, X, model, 2, **kwargs)


@FAST
@given(
    mu0=st.one_of(
        not_numbers.filter(lambda v: v is not None),
        st.sampled_from([np.ones(2), -np.ones(3), np.full(3, np.nan), np.full(3, 1e9)]),
    )
)
def test_constrained_mu0(mu0):
    raises_naming("mu0", ConstrainedSkellamBridge(ConstantM(1)).sample, KEY, X, model, 2, mu0=mu0)


@SLOW
@given(
    cls=bridges,
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
    row=st.integers(0, 1),
    col=st.integers(0, 2),
)
def test_sample_nonfinite_model_output_is_flagged(cls, value, row, col):
    def broken(key, x_t, t, context):
        return x_t.astype(jnp.float32).at[row, col].set(value)

    out = cls(ConstantM(1)).sample(KEY, X, broken, 2)
    assert not bool(out.all_finite) and int(out.first_nonfinite_step) == 0
    samples = np.asarray(out.samples)
    assert np.all(samples[row] == INVALID_COUNT) and np.all(samples[1 - row] != INVALID_COUNT)


@FAST
@given(which=st.sampled_from(["m", "lam_p", "lam_m"]), value=bad_reals)
def test_slack_sampler_sizes(which, value):
    if which == "m":
        raises_naming("m", ConstantM, value)
    else:
        kwargs = {"lam_p": 1.0, "lam_m": 1.0, which: value}
        raises_naming(which, PoissonM, **kwargs)
        raises_naming(which, BesselM, **kwargs)


DATASETS = [PoissonMixtureDataset, BetaBinomialDataset]
DATASET = PoissonMixtureDataset(8, 2, condition_type="none")


@FAST
@given(
    cls=st.sampled_from(DATASETS),
    field=st.sampled_from(["size", "d", "seed", "condition_type", "multiplier_range"]),
    value=st.one_of(bad_sizes, st.sampled_from(["mixtur", (2.0, 1.0), (0.0, 1.0), 2**40])),
)
def test_dataset_constructors(cls, field, value):
    kwargs = {"size": 8, "d": 2, field: value}
    raises_naming(field, cls, kwargs.pop("size"), kwargs.pop("d"), **kwargs)


@FAST
@given(key=bad_keys, n=st.one_of(bad_sizes, st.just(2**40)))
def test_dataset_sample(key, n):
    raises_naming("key", DATASET.sample, key, 4)
    raises_naming("n", DATASET.sample, KEY, n)


@FAST
@given(
    bad=st.one_of(
        st.tuples(st.just("bridge"), st.sampled_from([None, 3, "bridge", np.ones(2)])),
        st.tuples(st.just("noise_dim"), bad_sizes),
        st.tuples(st.just("m_samples"), st.one_of(bad_sizes, st.just(1))),
        st.tuples(st.just("lambda_energy"), bad_positive),
    )
)
def test_energy_objective_create(bad):
    field, value = bad
    kwargs = {"bridge": SkellamBridge(ConstantM(1)), "noise_dim": 2, "m_samples": 2}
    kwargs[field] = value
    raises_naming(field, EnergyScoreObjective.create, kwargs.pop("bridge"), **kwargs)


OBJECTIVE = EnergyScoreObjective.create(SkellamBridge(ConstantM(1)), noise_dim=2, m_samples=2)


def apply_fn(params, x_t, t, context):
    return x_t.astype(jnp.float32)


@FAST
@given(field=st.sampled_from(["batch['x']", "batch['x1']"]), bad=bad_counts)
def test_energy_objective_batch(field, bad):
    batch = {"x": X, "x1": X}
    batch["x" if field == "batch['x']" else "x1"] = bad
    raises_naming(field, OBJECTIVE, KEY, {}, apply_fn, batch)


@FAST
@given(key=bad_keys)
def test_energy_objective_key_and_missing_source(key):
    raises_naming("key", OBJECTIVE, key, {}, apply_fn, {"x": X, "x1": X})
    raises_naming("x1", OBJECTIVE, KEY, {}, apply_fn, {"x": X})


@FAST
@given(apply=st.sampled_from([None, 3, "f"]), noise_dim=bad_sizes)
def test_posterior_sampler(apply, noise_dim):
    raises_naming("apply_fn", posterior_sampler, apply, {}, noise_dim=2)
    raises_naming("noise_dim", posterior_sampler, apply_fn, {}, noise_dim=noise_dim)


@FAST
@given(
    builder=st.sampled_from(["bridge", "slack_sampler", "dataset"]),
    cfg=st.one_of(
        not_numbers.filter(lambda v: not isinstance(v, dict)),
        st.sampled_from([{}, {"type": "nope"}, {"type": 3}, {"type": "constant", "zz": 1}]),
    ),
)
def test_factory_configs(builder, cfg):
    if builder == "bridge":
        if isinstance(cfg, dict) and cfg.get("type") == "constant":
            cfg = {"type": "skellam", "zz": 1}  # unknown schedule keyword
        slack = {"type": "constant", "m": 1}
        raises_naming("zz" if "zz" in str(cfg) else "bridge", build_bridge, cfg, slack)
    elif builder == "slack_sampler":
        raises_naming("slack_sampler", build_slack, cfg)
    else:
        raises_naming("dataset", build_dataset, cfg)
