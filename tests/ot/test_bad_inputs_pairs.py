"""Generated bad input for ot_pairs and the sliced OT functions: clear errors or flags.

Concrete bad values must raise ``ValueError``/``TypeError`` naming the argument; traced
bad values (inside ``jit``) must show in the result (health flags, NaN), never as a
plausible-looking answer.
"""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdiff.ot import max_sliced_wasserstein, ot_pairs, sliced_transport_map, sliced_wasserstein

SETTINGS = settings(max_examples=20, deadline=None)
KEY = jax.random.key(0)
N, D = 6, 3
RNG = np.random.default_rng(0)
X0 = RNG.normal(size=(N, D)).astype(np.float32)
X1 = (RNG.normal(size=(N, D)) + 1).astype(np.float32)

non_finite = st.sampled_from([np.nan, np.inf, -np.inf])
bad_positive = st.one_of(st.floats(max_value=0.0), non_finite)  # not finite and > 0
number_strings = st.floats(allow_nan=False).map(str)
not_a_bool = st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.none())
bad_key = st.one_of(
    st.none(), st.integers(), st.floats(), st.text(max_size=5), st.just(np.zeros(2, np.float32))
)
bad_count = st.one_of(
    st.integers(max_value=0), st.just(10**12), st.floats(), number_strings, st.booleans()
)


def _with_non_finite(base, data):
    arr = base.copy()
    pos = data.draw(st.tuples(*(st.integers(0, s - 1) for s in arr.shape)))
    arr[pos] = data.draw(non_finite)
    return arr


def bad_points(base):
    """Arrays that are not usable points: wrong dtype, shape, empty, strings, None."""
    n, d = base.shape
    return st.one_of(
        st.just(base > 0),  # bool
        st.just(base.astype(np.complex64)),
        st.just(np.zeros((0, d), np.float32)),
        st.just(np.zeros((n, 0), np.float32)),
        st.just(np.float32(1.0)),
        st.just("1.0"),
        st.none(),
    )


def _assert_names(call, field):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert field in str(info.value), f"{field!r} not named in: {info.value}"


pair_cases = st.one_of(
    st.tuples(st.just("key"), bad_key.map(lambda k: {"key": k})),
    st.tuples(st.just("x0"), bad_points(X0).map(lambda v: {"x0": v})),
    st.tuples(st.just("x1"), bad_points(X1).map(lambda v: {"x1": v})),
    st.tuples(
        st.just("x0 and x1"),
        st.sampled_from([(N - 1, D), (N, D + 1), (N, D, 1)]).map(
            lambda s: {"x1": np.zeros(s, np.float32)}
        ),
    ),
    st.tuples(
        st.just("epsilon"),
        st.one_of(bad_positive, number_strings, st.booleans(), st.none()).map(
            lambda e: {"epsilon": e}
        ),
    ),
    st.tuples(st.just("epsilon"), st.just({"epsilon": np.ones(2, np.float32)})),
    st.tuples(st.just("relative_epsilon"), not_a_bool.map(lambda v: {"relative_epsilon": v})),
    st.tuples(
        st.just("method"),
        st.one_of(
            st.text(max_size=8).filter(lambda s: s.lower() not in ("exact", "sinkhorn")),
            st.integers(),
            st.none(),
        ).map(lambda m: {"method": m}),
    ),
    st.tuples(st.just("max_iterations"), bad_count.map(lambda v: {"max_iterations": v})),
    st.tuples(st.just("max_rounds"), bad_count.map(lambda v: {"max_rounds": v})),
    st.tuples(
        st.just("solver"),
        st.one_of(
            st.text(max_size=8).filter(
                lambda s: s.lower() not in ("auto", "shortest_path", "auction")
            ),
            st.integers(),
        ).map(lambda m: {"solver": m}),
    ),
    st.tuples(
        st.just("labels0"),
        st.one_of(
            st.integers(0, 12).filter(lambda k: k != N).map(lambda k: np.zeros(k, np.int32)),
            st.just(np.zeros(N, np.float32)),
            st.just(np.zeros(N, bool)),
            st.just("abc"),
        ).map(lambda lab: {"labels0": lab, "labels1": np.zeros(N, np.int32)}),
    ),
    st.tuples(st.just("labels0"), st.just({"labels0": np.zeros(N, np.int32)})),  # alone
    st.tuples(
        st.just("labels0 and labels1"),
        st.just({"labels0": np.zeros(N, np.int32), "labels1": np.arange(N)}),  # counts differ
    ),
)


@SETTINGS
@given(case=pair_cases, method=st.sampled_from(["exact", "sinkhorn"]))
def test_ot_pairs_bad_arguments_raise_naming_them(case, method):
    field, override = case
    kwargs = {"key": KEY, "x0": X0, "x1": X1, "method": method, **override}
    key, x0, x1 = kwargs.pop("key"), kwargs.pop("x0"), kwargs.pop("x1")
    _assert_names(lambda: ot_pairs(key, x0, x1, **kwargs), field)


@SETTINGS
@given(data=st.data(), which=st.sampled_from(["x0", "x1"]))
def test_ot_pairs_concrete_non_finite_points_raise(data, which):
    arrays = {"x0": X0, "x1": X1}
    arrays[which] = _with_non_finite(arrays[which], data)
    _assert_names(lambda: ot_pairs(KEY, arrays["x0"], arrays["x1"]), which)


_traced_pairs = {
    m: jax.jit(lambda a, b, eps, m=m: ot_pairs(KEY, a, b, method=m, epsilon=eps))
    for m in ("exact", "sinkhorn")
}


@SETTINGS
@given(data=st.data(), method=st.sampled_from(["exact", "sinkhorn"]))
def test_ot_pairs_traced_bad_values_are_reported(data, method):
    x0, x1, eps = X0, X1, 0.05
    kind = data.draw(
        st.sampled_from(["x0", "x1", "epsilon"] if method == "sinkhorn" else ["x0", "x1"])
    )
    if kind == "x0":
        x0 = _with_non_finite(X0, data)
    elif kind == "x1":
        x1 = _with_non_finite(X1, data)
    else:
        eps = data.draw(bad_positive)
    out = _traced_pairs[method](x0, x1, eps)
    assert not bool(out.converged)
    assert bool(out.all_finite) == (kind == "epsilon")
    np.testing.assert_array_equal(out.i, np.arange(N))  # identity fallback, not garbage
    np.testing.assert_array_equal(out.j, np.arange(N))


Y = (RNG.normal(size=(N + 2, D)) * 0.5).astype(np.float32)
SLICED = {
    "sliced_wasserstein": sliced_wasserstein,
    "max_sliced_wasserstein": max_sliced_wasserstein,
    "sliced_transport_map": sliced_transport_map,
}
bad_traced_weights = st.one_of(
    st.just(-np.ones(N, np.float32)),
    st.just(np.zeros(N, np.float32)),
    st.just(np.full(N, np.nan, np.float32)),
    st.just(np.array([1.0, -0.5, 1.0, 1.0, 1.0, 1.0], np.float32)),
)
bad_weights = st.one_of(
    bad_traced_weights,
    st.just(np.ones(N + 1)),
    st.just(np.ones(N, bool)),
    st.just("uniform"),
)
common_cases = st.one_of(
    st.tuples(st.just("key"), bad_key.map(lambda k: {"key": k})),
    st.tuples(st.just("x"), bad_points(X0).map(lambda v: {"x": v})),
    st.tuples(st.just("y"), bad_points(Y).map(lambda v: {"y": v})),
    st.tuples(st.just("x"), st.just({"x": X0[:, :, None]})),  # 3-D
    st.tuples(st.just("x and y"), st.just({"y": Y[:, :2]})),  # dimensions differ
    st.tuples(st.just("num_projections"), bad_count.map(lambda v: {"num_projections": v})),
)
distance_cases = st.one_of(
    common_cases,
    st.tuples(st.just("a"), bad_weights.map(lambda w: {"a": w})),
    st.tuples(
        st.just("p"),
        st.one_of(st.floats(max_value=0.999), st.just(np.nan), number_strings, st.booleans()).map(
            lambda p: {"p": p}
        ),
    ),
)
map_cases = st.one_of(
    common_cases,
    st.tuples(
        st.just("step_size"),
        st.one_of(bad_positive, number_strings, st.booleans(), st.none()).map(
            lambda s: {"step_size": s}
        ),
    ),
    st.tuples(
        st.just("num_iterations"),
        st.one_of(st.integers(max_value=-1), st.just(10**9), st.floats(), number_strings).map(
            lambda v: {"num_iterations": v}
        ),
    ),
)


@SETTINGS
@given(name=st.sampled_from(["sliced_wasserstein", "max_sliced_wasserstein"]), case=distance_cases)
def test_sliced_distances_bad_arguments_raise_naming_them(name, case):
    field, override = case
    kwargs = {"key": KEY, "x": X0, "y": Y, "num_projections": 4, **override}
    key, x, y = kwargs.pop("key"), kwargs.pop("x"), kwargs.pop("y")
    _assert_names(lambda: SLICED[name](key, x, y, **kwargs), field)


@SETTINGS
@given(case=map_cases)
def test_sliced_transport_map_bad_arguments_raise_naming_them(case):
    field, override = case
    kwargs = {"key": KEY, "x": X0, "y": Y, "num_projections": 4, "num_iterations": 2, **override}
    key, x, y = kwargs.pop("key"), kwargs.pop("x"), kwargs.pop("y")
    _assert_names(lambda: sliced_transport_map(key, x, y, **kwargs), field)


@SETTINGS
@given(data=st.data(), name=st.sampled_from(sorted(SLICED)), which=st.sampled_from(["x", "y"]))
def test_sliced_concrete_non_finite_points_raise(data, name, which):
    arrays = {"x": X0, "y": Y}
    arrays[which] = _with_non_finite(arrays[which], data)
    _assert_names(lambda: SLICED[name](KEY, arrays["x"], arrays["y"], num_projections=4), which)


_traced_sliced = {
    "sliced_wasserstein": jax.jit(
        lambda x, y, a: sliced_wasserstein(KEY, x, y, num_projections=4, a=a)
    ),
    "max_sliced_wasserstein": jax.jit(
        lambda x, y, a: max_sliced_wasserstein(KEY, x, y, num_projections=4, a=a)
    ),
    "sliced_transport_map": jax.jit(
        lambda x, y, s: sliced_transport_map(
            KEY, x, y, num_projections=4, num_iterations=2, step_size=s
        )
    ),
}


@SETTINGS
@given(data=st.data(), name=st.sampled_from(sorted(SLICED)))
def test_sliced_traced_bad_values_give_nan(data, name):
    """The third argument is the weights ``a`` (distances) or ``step_size`` (the map)."""
    fn = _traced_sliced[name]
    good = np.float32(1.0) if name == "sliced_transport_map" else np.full(N, 1 / N, np.float32)
    assert np.all(np.isfinite(fn(X0, Y, good)))
    x, y, third = X0, Y, good
    kind = data.draw(st.sampled_from(["x", "y", "third"]))
    if kind == "x":
        x = _with_non_finite(X0, data)
    elif kind == "y":
        y = _with_non_finite(Y, data)
    elif name == "sliced_transport_map":
        third = np.float32(data.draw(bad_positive))
    else:
        third = data.draw(bad_traced_weights)
    assert np.all(np.isnan(fn(x, y, third)))
