"""Generated bad inputs for the schedules' public entry points (hypothesis).

Every bad value must raise ``TypeError`` / ``ValueError`` whose message names the
argument: never an internal traceback, a silent NaN, a crash or a hang. Sizes that
cannot fit are refused before anything is allocated.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdiff.schedules import (
    DiscreteSchedule,
    FlowSchedule,
    create_noise_scheduler,
    karras_noise_schedule,
    make_schedule,
)
from jaxdiff.schedules.checks import MAX_TIMESTEPS

SETTINGS = settings(max_examples=20, deadline=None)

strings = st.text(max_size=6) | st.sampled_from(["0.5", "1e-4", "nan"])
nan_inf = st.sampled_from([math.nan, math.inf, -math.inf])
bad_sizes = (
    st.integers(max_value=0)
    | st.integers(min_value=MAX_TIMESTEPS + 1, max_value=10**15)
    | st.floats(allow_nan=True)
    | strings
    | st.none()
    | st.booleans()
)
bad_betas = (
    st.floats(max_value=0.0)
    | st.floats(min_value=1.0)
    | nan_inf
    | strings
    | st.booleans()
    | st.none()
)
bad_positive = st.floats(max_value=0.0) | nan_inf | strings | st.booleans() | st.none()
bad_names = st.text(max_size=6).map(lambda s: "zz" + s) | st.integers() | st.none()


def _raises_naming(field, fn, *args, **kwargs):
    with pytest.raises((TypeError, ValueError)) as info:
        fn(*args, **kwargs)
    assert field in str(info.value), (field, str(info.value))


@SETTINGS
@given(data=st.data())
def test_discrete_create(data):
    field = data.draw(
        st.sampled_from(
            [
                "schedule_type",
                "num_train_timesteps",
                "beta_start",
                "beta_end",
                "rescale_betas_zero_snr",
            ]
        )
    )
    bad = {
        "schedule_type": bad_names,
        "num_train_timesteps": bad_sizes,
        "beta_start": bad_betas,
        "beta_end": bad_betas,
        "rescale_betas_zero_snr": strings | st.integers() | st.none(),
    }[field]
    _raises_naming(field, DiscreteSchedule.create, **{field: data.draw(bad, label=field)})


@SETTINGS
@given(start=st.floats(0.002, 0.9), frac=st.floats(0.01, 0.99))
def test_discrete_reversed_betas(start, frac):
    _raises_naming("beta_start", DiscreteSchedule.create, beta_start=start, beta_end=start * frac)


def test_discrete_huge_size_refused_before_allocation():
    # used to abort the process inside the runtime (SIGABRT)
    _raises_naming("num_train_timesteps", DiscreteSchedule.create, num_train_timesteps=10**10)


def test_discrete_underflowing_alphas_cumprod():
    # alphas_cumprod below the float32 range would make the noise levels infinite
    _raises_naming("alphas_cumprod", DiscreteSchedule.create, beta_end=0.9)
    # rescaling such betas to zero terminal SNR divides 0 by 0: refused as well
    _raises_naming(
        "alphas_cumprod", DiscreteSchedule.create, beta_end=0.9, rescale_betas_zero_snr=True
    )
    ok = DiscreteSchedule.create(rescale_betas_zero_snr=True)  # zero SNR by design
    assert float(ok.alphas_cumprod[-1]) == 0.0 and bool(jnp.all(jnp.isfinite(ok.betas)))


def test_discrete_values_still_traceable():
    # traced beta_end cannot be checked here and must still work (vmap over beta_end)
    ends = jnp.array([0.01, 0.02])
    out = jax.vmap(lambda e: DiscreteSchedule.create(beta_end=e).alphas_cumprod[-1])(ends)
    assert out.shape == (2,) and bool(jnp.all((out > 0) & (out < 1)))


@SETTINGS
@given(
    betas=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=4).filter(
        lambda b: not all(0 < v <= 1 for v in b)
    )
)
def test_discrete_custom_betas(betas):
    _raises_naming("custom_betas", DiscreteSchedule.create, "custom", betas=np.asarray(betas))


def _valid_sigmas(s):
    return all(0 < v <= 1 for v in s) and all(np.diff(s) < 0)


@SETTINGS
@given(data=st.data())
def test_flow_create(data):
    field = data.draw(st.sampled_from(["num_train_timesteps", "shift", "sigmas"]))
    bad = {
        "num_train_timesteps": bad_sizes,
        "shift": bad_positive,
        "sigmas": st.lists(st.floats(allow_nan=True), min_size=1, max_size=4)
        .filter(lambda s: not _valid_sigmas(s))
        .map(np.asarray)
        | st.just(np.zeros((0,))),
    }[field]
    _raises_naming(field, FlowSchedule.create, **{field: data.draw(bad, label=field)})


CONTINUOUS = {
    "linear": {"beta_min": "nonneg", "beta_max": "pos"},
    "cosine": {"s": "nonneg", "max_beta": "pos"},
    "karras": {"sigma_min": "pos", "sigma_max": "pos", "rho": "pos"},
}


@SETTINGS
@given(data=st.data())
def test_make_schedule(data):
    name = data.draw(st.sampled_from(sorted(CONTINUOUS)))
    case = data.draw(st.sampled_from(["name", "num_timesteps", "unknown", *CONTINUOUS[name]]))
    if case == "name":
        _raises_naming("name", make_schedule, data.draw(bad_names))
    elif case == "num_timesteps":
        _raises_naming(case, make_schedule, name, num_timesteps=data.draw(bad_sizes))
    elif case == "unknown":
        _raises_naming("zzq", make_schedule, name, zzq=1.0)
    else:
        kind = CONTINUOUS[name][case]
        bad = st.floats(max_value=-1e-6) if kind == "nonneg" else st.floats(max_value=0.0)
        bad = bad | nan_inf | strings | st.booleans() | st.none()
        _raises_naming(case, make_schedule, name, **{case: data.draw(bad, label=case)})


def test_make_schedule_names_case_insensitive():
    assert make_schedule("KARRAS").kind == make_schedule("karras").kind == "karras"


@SETTINGS
@given(data=st.data())
def test_karras_noise_schedule(data):
    field = data.draw(st.sampled_from(["num_steps", "sigma_min", "sigma_max", "rho"]))
    bad = bad_sizes if field == "num_steps" else bad_positive
    _raises_naming(field, karras_noise_schedule, **{"num_steps": 4, field: data.draw(bad)})


@SETTINGS
@given(data=st.data())
def test_create_noise_scheduler(data):
    case = data.draw(st.sampled_from(["schedule_type", "shift", "beta_end", "unknown"]))
    if case == "schedule_type":
        _raises_naming(case, create_noise_scheduler, data.draw(bad_names))
    elif case == "shift":
        _raises_naming(case, create_noise_scheduler, "flow", shift=data.draw(bad_positive))
    elif case == "beta_end":
        _raises_naming(case, create_noise_scheduler, "linear", beta_end=data.draw(bad_betas))
    else:
        _raises_naming("zzq", create_noise_scheduler, "linear", zzq=1)
