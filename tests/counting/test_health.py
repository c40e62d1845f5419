"""The bridges' sampling contract: one result struct, health report, count range, limits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.counting import (
    INVALID_COUNT,
    MAX_COUNT,
    BesselM,
    ConstantM,
    ConstrainedSkellamBridge,
    CountingSampleOutput,
    PoissonM,
    ReflectedSkellamBridge,
    SkellamBridge,
)
from jaxdiff.counting.factory import BRIDGES, SLACK_SAMPLERS, build_bridge

X1 = np.array([[4, 0, 7], [2, 9, 1], [5, 5, 5], [0, 3, 8]], np.int32)
BRIDGE_TYPES = [SkellamBridge, ConstrainedSkellamBridge, ReflectedSkellamBridge]


def context_model(key, x_t, t, context):
    return context


@pytest.mark.parametrize("cls", BRIDGE_TYPES, ids=lambda c: c.__name__)
def test_one_struct_whatever_the_flags(key, cls):
    bridge = cls(ConstantM(2))
    seen = []

    def spy(key, x_t, t, context):
        seen.append((t.shape, t.dtype, x_t.dtype))
        return x_t

    plain = bridge.sample(key, X1, spy, 2)
    traj = bridge.sample(key, X1, spy, 2, return_trajectory=True)
    assert type(plain) is type(traj) is CountingSampleOutput
    assert plain.trajectory is None and traj.trajectory.shape == (3, *X1.shape)
    np.testing.assert_array_equal(plain.samples, traj.samples)  # same key, same draw
    assert plain.samples.dtype == jnp.int32 and plain.samples.shape == X1.shape
    assert bool(plain.all_finite) and bool(plain.in_range)
    assert seen[0] == ((4,), jnp.float32, jnp.int32)  # t is [batch] float32, as the samplers


@pytest.mark.parametrize("cls", BRIDGE_TYPES, ids=lambda c: c.__name__)
def test_nonfinite_model_output_is_reported_not_rounded(key, cls):
    """NaN in row 1 at the third step: reported, and that row holds INVALID_COUNT."""
    bridge = cls(ConstantM(1))

    def nan_model(key, x_t, t, context):
        hit = (t[:, None] < 0.65) & (jnp.arange(x_t.shape[0])[:, None] == 1)
        return jnp.where(hit, jnp.nan, x_t.astype(jnp.float32))

    out = jax.jit(lambda k: bridge.sample(k, X1, nan_model, 5, return_trajectory=True))(key)
    assert not bool(out.all_finite)
    assert int(out.first_nonfinite_step) == 2  # t = 0.6 is the third step from t = 1
    samples = np.asarray(out.samples)
    assert np.all(samples[1] == INVALID_COUNT) and np.all(samples[[0, 2, 3]] != INVALID_COUNT)
    traj = np.asarray(out.trajectory)
    assert np.all(traj[3:, 1] == INVALID_COUNT) and np.all(traj[:3, 1] != INVALID_COUNT)


def test_inf_prediction_and_huge_prediction_reported(key):
    bridge = SkellamBridge(ConstantM(1))
    inf = bridge.sample(key, X1, lambda k, x, t, c: jnp.full(x.shape, jnp.inf), 2)
    assert not bool(inf.all_finite) and int(inf.first_nonfinite_step) == 0
    # one step (t = 1 -> 0) keeps the draws trivial: the check is on the recorded counts
    huge = bridge.sample(key, X1, lambda k, x, t, c: jnp.full(x.shape, 1e12), 1)
    assert bool(huge.all_finite) and not bool(huge.in_range)
    assert int(huge.max_count) > MAX_COUNT  # clipped, never wrapped to a small count
    near = bridge.sample(key, X1, lambda k, x, t, c: jnp.full(x.shape, 2.0 - MAX_COUNT), 1)
    assert not bool(near.in_range)  # jump counts |x_t - x0_hat| + 2 M pass 2**24


def test_int64_counts_are_checked_not_wrapped(key):
    bridge = SkellamBridge(ConstantM(1))
    big = X1.astype(np.int64)
    big[0, 0] = 2**40
    with pytest.raises(ValueError, match=r"x1 has counts in \[0, 1099511627776\]"):
        bridge.sample(key, big, context_model, 3)
    with pytest.raises(ValueError, match="x0 has counts"):
        bridge(key, big, X1)
    ok = bridge(key, X1.astype(np.int64), X1.astype(np.uint16), 0.0)[1]
    np.testing.assert_array_equal(ok, X1)


@pytest.mark.parametrize("cls", [ReflectedSkellamBridge, ConstrainedSkellamBridge])
def test_device_counts_closed_over_in_jit_are_checked(key, cls):
    """Concrete device arrays inside a jit trace (as the CLI's held-out data)."""
    bridge = cls(ConstantM(0))  # no slack: x_t = x0 = x1 exactly
    x1 = jnp.asarray(X1)
    out = jax.jit(lambda k: bridge.sample(k, x1, context_model, 2, context=x1))(key)
    np.testing.assert_array_equal(out.samples, X1)
    np.testing.assert_array_equal(jax.jit(lambda k: bridge(k, x1, x1, 0.5)[1])(key), X1)
    big = x1 * 2**23  # concrete, computed outside the trace
    with pytest.raises(ValueError, match="x1 has counts"):
        jax.jit(lambda k: bridge.sample(k, big, context_model, 2, context=big))(key)


def test_traced_int64_counts_are_clipped_not_wrapped(key, enable_x64):
    bridge = SkellamBridge(ConstantM(0))
    big = jnp.asarray(X1, jnp.int64).at[0, 0].set(2**40)
    x_t = jax.jit(lambda x: bridge(key, x, x, 1.0)[1])(big)
    assert x_t.dtype == jnp.int32 and int(x_t[0, 0]) == MAX_COUNT


def test_slack_sizes_that_would_saturate_raise():
    with pytest.raises(ValueError, match="m=.*2\\*\\*24"):
        ConstantM(2**31)
    with pytest.raises(ValueError, match="lam_p"):
        BesselM(1e30, 1.0)
    with pytest.raises(ValueError, match="lam_m"):
        PoissonM(1.0, 2.0**25)
    assert ConstantM(MAX_COUNT).m == MAX_COUNT


def test_step_limits_refuse_before_running(key):
    bridge = SkellamBridge(ConstantM(1))
    with pytest.raises(ValueError, match="n_steps=1000000000"):
        bridge.sample(key, X1, context_model, 10**9)
    wide = np.zeros((4096, 4096), np.int32)
    with pytest.raises(ValueError, match="return_trajectory"):
        bridge.sample(key, wide, context_model, 100, return_trajectory=True)
    with pytest.raises(TypeError, match="n_steps"):
        bridge.sample(key, X1, context_model, 2.0)
    with pytest.raises(TypeError, match="key"):
        bridge.sample(None, X1, context_model, 2)
    with pytest.raises(TypeError, match="return_trajectory"):
        bridge.sample(key, X1, context_model, 2, return_trajectory="no")
    legacy = bridge.sample(jax.random.PRNGKey(0), X1, context_model, 2, context=X1)
    np.testing.assert_array_equal(legacy.samples, X1)


def test_model_output_shape_checked(key):
    bridge = SkellamBridge(ConstantM(1))
    with pytest.raises(ValueError, match=r"model output has shape \(4, 2\)"):
        bridge.sample(key, X1, lambda k, x, t, c: x[:, :2], 2)
    with pytest.raises(TypeError, match="model output"):
        bridge.sample(key, X1, lambda k, x, t, c: "x0", 2)
    with pytest.raises(TypeError, match="model output must be a numeric array"):
        bridge.sample(key, X1, lambda k, x, t, c: None, 2)


def test_bridge_options_are_validated_and_registries_keep_names():
    with pytest.raises(TypeError, match="delta"):
        SkellamBridge(ConstantM(1), delta="False")
    with pytest.raises(TypeError, match="homogeneous_time"):
        ConstrainedSkellamBridge(ConstantM(1), homogeneous_time=1)
    assert BRIDGES.names() == ("skellam", "constrained", "reflected")
    assert SLACK_SAMPLERS.names() == ("constant", "poisson", "bessel")
    bridge = build_bridge({"type": "Reflected"}, {"type": "BESSEL", "lam_p": 2.0, "lam_m": 1.0})
    assert isinstance(bridge, ReflectedSkellamBridge) and bridge.slack_sampler == BesselM(2.0, 1.0)
    with pytest.raises(ValueError, match="bridge.type.*choose one of"):
        build_bridge({"type": "skelam"}, {"type": "constant", "m": 1})
