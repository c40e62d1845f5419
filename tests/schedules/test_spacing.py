"""spaced_timesteps against the timesteps diffusers' schedulers set (the oracle)."""

import diffusers
import numpy as np
import pytest

from jaxdiff.schedules.spacing import TIMESTEP_SPACINGS, spaced_timesteps

# (T, n): n dividing T, n not dividing T, n = T, a single step, a small T.
SIZES = [(1000, 50), (1000, 7), (1000, 1000), (100, 30), (17, 5), (10, 1)]

# scheduler class -> spaced_timesteps options that reproduce its set_timesteps.
SCHEDULERS = {
    "ddpm": (diffusers.DDPMScheduler, {}),
    "ddim": (diffusers.DDIMScheduler, {}),
    "dpm_solver": (diffusers.DPMSolverMultistepScheduler, {"plan_extra_point": True}),
    "euler": (diffusers.EulerDiscreteScheduler, {"round_linspace": False}),
}


def _diffusers_timesteps(name, spacing, T, n, steps_offset=0):
    cls, _ = SCHEDULERS[name]
    sched = cls(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=steps_offset)
    sched.set_timesteps(n)
    return sched.timesteps.numpy()


@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
@pytest.mark.parametrize("T, n", SIZES)
def test_matches_diffusers(name, spacing, T, n):
    expected = _diffusers_timesteps(name, spacing, T, n)
    got = spaced_timesteps(spacing, T, n, **SCHEDULERS[name][1])
    assert got.dtype == np.float64 and got.shape == (n,)
    # Euler keeps float32 timesteps: compare in its dtype, exactly.
    np.testing.assert_array_equal(got.astype(expected.dtype), expected)
    assert got.min() >= 0 and got.max() <= T - 1


@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("T, n", [(1000, 50), (1000, 7), (100, 30), (17, 5)])
def test_leading_steps_offset_matches_diffusers(name, T, n):
    expected = _diffusers_timesteps(name, "leading", T, n, steps_offset=1)
    got = spaced_timesteps("leading", T, n, steps_offset=1, **SCHEDULERS[name][1])
    np.testing.assert_array_equal(got.astype(expected.dtype), expected)
    np.testing.assert_array_equal(got, spaced_timesteps("leading", T, n, **SCHEDULERS[name][1]) + 1)


def test_leading_offset_past_last_timestep_raises():
    # diffusers accepts it and plans timestep T, one past alphas_cumprod's end.
    assert _diffusers_timesteps("ddpm", "leading", 100, 100, steps_offset=1).max() == 100
    with pytest.raises(ValueError, match="steps_offset"):
        spaced_timesteps("leading", 100, 100, steps_offset=1)


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_trailing_extra_point_is_dropped(name):
    # For (1000, 61) the float arange of trailing spacing has 62 points and diffusers plans
    # a timestep -1 last; ours is diffusers' first 61.
    expected = _diffusers_timesteps(name, "trailing", 1000, 61)
    assert expected.shape == (62,) and expected[-1] == -1
    got = spaced_timesteps("trailing", 1000, 61, **SCHEDULERS[name][1])
    np.testing.assert_array_equal(got.astype(expected.dtype), expected[:61])


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_descending_unique(spacing):
    got = spaced_timesteps(spacing, 1000, 37)
    assert np.all(np.diff(got) < 0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="timestep_spacing"):
        spaced_timesteps("uniform", 1000, 10)
    with pytest.raises(TypeError, match="timestep_spacing"):
        spaced_timesteps(None, 1000, 10)
    for n in (0, -3, 1001):
        with pytest.raises(ValueError, match="num_inference_steps"):
            spaced_timesteps("leading", 1000, n)
    with pytest.raises(TypeError, match="num_inference_steps"):
        spaced_timesteps("leading", 1000, 10.0)
    with pytest.raises(ValueError, match="num_train_timesteps"):
        spaced_timesteps("leading", 0, 1)
    with pytest.raises(ValueError, match="steps_offset"):
        spaced_timesteps("leading", 1000, 10, steps_offset=-1)
