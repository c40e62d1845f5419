"""Weight schedules: endpoints, monotonicity, closed forms, and that the name takes effect."""

import numpy as np
import pytest

from jaxdiff.counting import SCHEDULE_TYPES, ConstantM, SkellamBridge, make_weight_schedule

T = np.linspace(0.0, 1.0, 101)


@pytest.mark.parametrize("name", SCHEDULE_TYPES)
def test_endpoints_and_monotone(name):
    w = np.asarray(make_weight_schedule(name)(T))
    assert abs(w[0]) < 1e-6 and abs(w[-1] - 1) < 1e-6
    assert np.all(np.diff(w) >= -1e-7)


def test_closed_forms():
    t = np.array([0.1, 0.3, 0.7])
    cases = {
        ("linear", ()): t,
        ("cosine", ()): 0.5 * (1 - np.cos(np.pi * t)),
        ("early_dense", (("concentration", 3.0),)): t ** (1 / 3),
        ("late_dense", (("concentration", 3.0),)): t**3,
    }
    for (name, kw), want in cases.items():
        got = make_weight_schedule(name, **dict(kw))(t)
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=name)
    s = 4.0
    raw = lambda u: 1 / (1 + np.exp(-s * (u - 0.5)))  # noqa: E731
    want = (raw(t) - raw(0.0)) / (raw(1.0) - raw(0.0))
    np.testing.assert_allclose(make_weight_schedule("sigmoid", steepness=s)(t), want, rtol=1e-5)


def test_schedule_type_really_takes_effect():
    lin = SkellamBridge(ConstantM(1), schedule_type="linear").weight_schedule(0.3)
    cos = SkellamBridge(ConstantM(1), schedule_type="cosine").weight_schedule(0.3)
    assert abs(float(lin) - 0.3) < 1e-6
    assert abs(float(cos) - 0.5 * (1 - np.cos(0.3 * np.pi))) < 1e-6
    late = SkellamBridge(ConstantM(1), schedule_type="late_dense", concentration=4.0)
    assert abs(float(late.weight_schedule(0.5)) - 0.5**4) < 1e-6


def test_bad_schedule_inputs():
    with pytest.raises(ValueError, match="schedule_type"):
        make_weight_schedule("quadratic")
    with pytest.raises(TypeError, match="steepness"):
        make_weight_schedule("cosine", steepness=3.0)
    with pytest.raises(ValueError, match="concentration"):
        make_weight_schedule("late_dense", concentration=-1.0)
    with pytest.raises(ValueError, match="schedule_type"):
        SkellamBridge(ConstantM(1), schedule_type="nope")
