"""Generated bad inputs for the OT engine's entry points: clear errors naming the argument.

Covers :func:`jaxdiff.ot.sinkhorn` (point clouds and kernel operators),
:class:`~jaxdiff.ot.kernel_ops.KernelConfig`, :func:`make_kernel_operator`, the operator
geometries' ``apply`` and :func:`kernel_operator_error`. Traced bad values (inside jit)
must be reported in the result's health fields instead.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jaxdiff.ot import KernelConfig, kernel_operator_error, make_kernel_operator, sinkhorn

FAST = settings(max_examples=20, deadline=None)
X = np.zeros((4, 2))
Y = np.ones((3, 2))

NOT_A_NUMBER = st.one_of(
    st.text(max_size=4),
    st.booleans(),
    st.just([0.1]),
    st.just({"value": 0.1}),
    st.just(np.array(["0.1"])),
    st.just(np.array([True])),
)
NOT_A_BOOL = st.one_of(st.sampled_from(["False", "no", "", "True"]), st.integers(0, 1), st.none())
NOT_AN_INT = st.one_of(st.floats(allow_nan=True), st.text(max_size=3), st.booleans(), st.none())
NON_POSITIVE = st.one_of(
    st.floats(max_value=0.0), st.sampled_from([float("nan"), float("inf"), -float("inf")])
)


def _raises(exc, field, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert re.search(field, str(info.value)), f"{field!r} not named in: {info.value}"


@FAST
@given(
    field=st.sampled_from(
        ["epsilon", "threshold", "tau_a", "tau_b", "epsilon_init", "epsilon_decay"]
    ),
    value=NOT_A_NUMBER,
)
def test_sinkhorn_numbers_given_as_other_types(field, value):
    kwargs = {"epsilon": 0.5, field: value}
    _raises(TypeError, field, sinkhorn, X, Y, **kwargs)


@FAST
@given(field=st.sampled_from(["epsilon", "threshold", "tau_a", "tau_b"]), value=NON_POSITIVE)
def test_sinkhorn_numbers_out_of_range(field, value):
    _raises(ValueError, field, sinkhorn, X, Y, **{"epsilon": 0.5, field: value})


@FAST
@given(
    field=st.sampled_from(["relative_epsilon", "divergence", "debug"]),
    value=NOT_A_BOOL,
)
def test_sinkhorn_flags_must_be_bools(field, value):
    _raises(TypeError, field, sinkhorn, X, Y, epsilon=0.5, **{field: value})


@FAST
@given(
    field=st.sampled_from(["max_iterations", "min_iterations", "inner_iterations"]),
    value=st.one_of(
        NOT_AN_INT.map(lambda v: ("type", v)),
        st.integers(max_value=-1).map(lambda v: ("value", v)),
        st.integers(min_value=2**31).map(lambda v: ("value", v)),
    ),
)
def test_sinkhorn_iteration_counts(field, value):
    kind, number = value
    assume(not (field == "inner_iterations" and number is None))  # None: the default
    _raises(
        TypeError if kind == "type" else ValueError,
        field,
        sinkhorn,
        X,
        Y,
        epsilon=0.5,
        **{field: number},
    )


@FAST
@given(
    field=st.sampled_from(["cost", "geometry", "backend", "precision"]),
    name=st.text(min_size=1, max_size=8).filter(
        lambda s: (
            s.lower()
            not in (
                "sqeuclidean",
                "euclidean",
                "cosine",
                "auto",
                "dense",
                "online",
                "xla",
                "pallas",
                "triton",
                "float32",
                "tf32",
                "bf16",
            )
        )
    ),
)
def test_sinkhorn_unknown_names(field, name):
    _raises(ValueError, field, sinkhorn, X, Y, epsilon=0.5, **{field: name})


POINTS = st.sampled_from(
    [
        ("shape", np.zeros(4)),
        ("shape", np.zeros((2, 2, 2))),
        ("shape", np.zeros((0, 2))),
        ("shape", np.zeros((4, 0))),
        ("value", np.array([[np.nan, 0.0]])),
        ("value", np.array([[np.inf, 0.0]])),
        ("type", np.zeros((3, 2), bool)),
        ("type", np.array([["a", "b"]])),
        ("type", "points"),
    ]
)


@FAST
@given(which=st.sampled_from(["x", "y"]), bad=POINTS)
def test_sinkhorn_bad_points(which, bad):
    kind, value = bad
    args = {"x": X, "y": Y, which: value}
    exc = TypeError if kind == "type" else ValueError
    _raises(exc, which, sinkhorn, args["x"], args["y"], epsilon=0.5)


WEIGHTS = st.sampled_from(
    [
        np.array([0.5, 0.5, 0.5, -0.5]),
        np.array([0.25, 0.25, 0.25]),
        np.array([np.nan, 0.5, 0.25, 0.25]),
        np.zeros(4),
        np.full(4, 0.5),
        np.array([True, False, True, False]),
        "uniform",
    ]
)


@FAST
@given(weights=WEIGHTS)
def test_sinkhorn_bad_weights(weights):
    exc = TypeError if isinstance(weights, str) or weights.dtype == bool else ValueError
    _raises(exc, "a", sinkhorn, X, Y, weights, epsilon=0.5)


def test_sinkhorn_traced_bad_epsilon_is_reported_not_raised():
    solve = jax.jit(lambda eps: sinkhorn(X, Y, epsilon=eps))
    for eps in (jnp.nan, -1.0, 0.0):
        res = solve(jnp.float32(eps))
        assert not bool(res.converged)
        assert "epsilon is not a finite number > 0" in res.input_problems()


@FAST
@given(
    field=st.sampled_from(["epsilon", "nystrom_rcond"]),
    value=st.one_of(
        NOT_A_NUMBER.map(lambda v: ("type", v)),
        NON_POSITIVE.map(lambda v: ("value", v)),
        st.floats(min_value=1.0, allow_infinity=False).map(lambda v: ("rcond", v)),
    ),
)
def test_kernel_config_numbers(field, value):
    kind, number = value
    if kind == "rcond" and field == "epsilon":
        KernelConfig(epsilon=number)  # any finite epsilon > 0 is allowed
        return
    _raises(TypeError if kind == "type" else ValueError, field, KernelConfig, **{field: number})


@FAST
@given(
    field=st.sampled_from(["num_features", "rank"]),
    value=st.one_of(
        NOT_AN_INT.map(lambda v: ("type", v)),
        st.integers(max_value=0).map(lambda v: ("value", v)),
        st.integers(min_value=2**31).map(lambda v: ("value", v)),
    ),
)
def test_kernel_config_sizes(field, value):
    kind, number = value
    _raises(TypeError if kind == "type" else ValueError, field, KernelConfig, **{field: number})


@FAST
@given(
    field=st.sampled_from(["kernel_type", "solver_type", "feature_map"]),
    name=st.one_of(st.text(max_size=6), st.none(), st.integers()),
)
def test_kernel_config_names(field, name):
    if isinstance(name, str) and name.lower() in (
        "gaussian",
        "laplacian",
        "direct",
        "fft",
        "rff",
        "nystrom",
        "positive",
        "fourier",
    ):
        return
    exc = ValueError if isinstance(name, str) else TypeError
    _raises(exc, field, KernelConfig, **{field: name})


@FAST
@given(
    case=st.sampled_from(
        [
            ("rff", {"num_features": 10**9}, "num_features=1000000000"),
            ("rff", {"num_features": 2**20}, "num_features=1048576"),
            ("direct", {}, "solver_type='direct' on 200000 x 200000"),
        ]
    )
)
def test_make_kernel_operator_refuses_sizes_that_cannot_fit(case):
    solver, sizes, field = case
    x = np.zeros((200_000, 1), np.float32)
    cfg = KernelConfig(solver_type=solver, **sizes)
    _raises(
        ValueError, re.escape(field) + ".*GiB", make_kernel_operator, cfg, x, key=jax.random.key(0)
    )


@FAST
@given(
    solver=st.sampled_from(["direct", "rff", "nystrom"]),
    bad=POINTS,
    key=st.sampled_from([None, "key", 1.5]),
)
def test_make_kernel_operator_bad_points_and_keys(solver, bad, key):
    kind, value = bad
    cfg = KernelConfig(solver_type=solver, num_features=8, rank=2)
    good_key = jax.random.key(0)
    if solver != "direct" and key is not None:  # a key that is not a key
        _raises(TypeError, "key", make_kernel_operator, cfg, X, key=key)
    if solver != "direct" and key is None:
        _raises(ValueError, "key is required", make_kernel_operator, cfg, X)
    exc = TypeError if kind == "type" else ValueError
    _raises(exc, "x", make_kernel_operator, cfg, value, key=good_key)


@FAST
@given(grid=st.sampled_from([np.zeros((5, 2)), np.zeros((0, 1)), np.zeros((2, 2, 2, 2)), "grid"]))
def test_fft_operator_bad_grids(grid):
    exc = TypeError if isinstance(grid, str) else ValueError
    _raises(exc, "x", make_kernel_operator, KernelConfig(solver_type="fft"), grid)


@FAST
@given(
    solver=st.sampled_from(["direct", "rff"]),
    vec=st.sampled_from([np.ones(3), np.ones((2, 4)), np.ones((4, 2, 2))]),
)
def test_operator_apply_and_sinkhorn_misuse(solver, vec):
    op = make_kernel_operator(
        KernelConfig(solver_type=solver, num_features=8), X, Y, key=jax.random.key(0)
    )
    _raises(
        ValueError, r"v must have shape \[3\]", op.apply, vec if vec.shape != (3,) else np.ones(5)
    )
    _raises(ValueError, "epsilon must be None", sinkhorn, geometry=op, epsilon=0.1)
    _raises(TypeError, "divergence", sinkhorn, geometry=op, divergence="False")
    _raises(TypeError, "op must be an operator", kernel_operator_error, jax.random.key(0), "op", X)
    _raises(TypeError, "key must be a jax.random.key", kernel_operator_error, None, op, X)
