"""Generated bad inputs for the samplers' public entry points (hypothesis).

Every bad value must raise ``TypeError`` / ``ValueError`` whose message names the
argument (or, for values only known inside the compiled run, be reported in the
result): never an internal traceback, a silent NaN, a crash or a hang.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jaxdiff.samplers import (
    DDIM,
    DDPM,
    AdvancedSamplingManager,
    DPMSolver,
    Euler,
    EulerAncestral,
    Heun,
    PredictorCorrector,
    ProbabilityFlow,
    SamplingConfig,
    create_sampler,
    sample,
)
from jaxdiff.schedules import DiscreteSchedule, NoiseSchedulerConfig
from jaxdiff.schedules.checks import MAX_TIMESTEPS
from tests.oracles import gaussian_model

SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SCHED = DiscreteSchedule.create("linear")
MODEL = gaussian_model(SCHED.alphas_cumprod)
NOISE = jnp.ones((2, 3))
KEY = jax.random.key(0)

# --- bad values by kind -------------------------------------------------------------
strings = st.text(max_size=6) | st.sampled_from(["0.5", "1", "nan", "True"])
not_numbers = strings | st.none() | st.booleans() | st.just([1.0])
nan_inf = st.sampled_from([math.nan, math.inf, -math.inf])
BAD = {
    "pos_int": st.integers(max_value=0)
    | st.integers(min_value=MAX_TIMESTEPS + 1, max_value=10**15)
    | st.floats(allow_nan=True)
    | not_numbers,
    "nonneg_int": st.integers(max_value=-1) | st.floats(allow_nan=True) | not_numbers,
    "any_int": st.floats(allow_nan=True) | not_numbers,
    "order": st.integers().filter(lambda v: not 1 <= v <= 3) | st.floats() | not_numbers,
    "name": st.text(max_size=6).map(lambda s: "zz" + s) | st.integers() | st.none(),
    "bool": strings | st.integers() | st.floats(allow_nan=True) | st.none(),
    "nonneg": st.floats(max_value=-1e-6) | nan_inf | strings | st.booleans(),
    "nonneg_inf": st.floats(max_value=-1e-6) | st.just(math.nan) | strings | st.booleans(),
    "pos": st.floats(max_value=0.0) | nan_inf | strings | st.booleans(),
    "unit_half_open": st.floats(max_value=0.0) | st.floats(min_value=1.0001) | nan_inf | strings,
    "unit_open": st.floats(max_value=0.0) | st.floats(min_value=1.0) | nan_inf | strings,
    "unit_closed": st.floats(max_value=-1e-6) | st.floats(min_value=1.0001) | nan_inf | strings,
    "number": nan_inf | strings | st.booleans() | st.none(),
}

DISCRETE_FIELDS = {
    "num_inference_steps": "pos_int",
    "steps_offset": "nonneg_int",
    "timestep_spacing": "name",
    "prediction_type": "name",
    "thresholding": "bool",
    "clip_sample": "bool",
    "dynamic_thresholding_ratio": "unit_half_open",
    "sample_max_value": "pos",
    "clip_sample_range": "pos",
}
SIGMA_FIELDS = {**DISCRETE_FIELDS, "use_karras_sigmas": "bool"}
CONTINUOUS_FIELDS = {
    "num_steps": "pos_int",
    "prediction_type": "name",
    "denoise_final": "bool",
    "t_min": "unit_open",
}
METHOD_FIELDS = {
    DDIM: {
        **DISCRETE_FIELDS,
        "eta": "nonneg",
        "use_clipped_model_output": "bool",
        "set_alpha_to_one": "bool",
    },
    DDPM: {**DISCRETE_FIELDS, "variance_type": "name", "variance_channel_axis": "any_int"},
    DPMSolver: {
        **DISCRETE_FIELDS,
        "algorithm_type": "name",
        "solver_order": "order",
        "solver_type": "name",
        "lower_order_final": "bool",
        "euler_at_final": "bool",
        "use_karras_sigmas": "bool",
        "final_sigmas_type": "name",
    },
    Euler: {
        **SIGMA_FIELDS,
        "interpolation_type": "name",
        "final_sigmas_type": "name",
        "s_churn": "nonneg",
        "s_tmin": "nonneg",
        "s_tmax": "nonneg_inf",
        "s_noise": "nonneg",
    },
    EulerAncestral: SIGMA_FIELDS,
    Heun: SIGMA_FIELDS,
    PredictorCorrector: {
        **CONTINUOUS_FIELDS,
        "predictor": "name",
        "corrector": "name",
        "corrector_norm": "name",
        "n_corrector_steps": "nonneg_int",
        "snr": "nonneg",
    },
    ProbabilityFlow: {**CONTINUOUS_FIELDS, "solver": "name"},
}
CASES = [
    (cls, field, kind) for cls, fields in METHOD_FIELDS.items() for field, kind in fields.items()
]


def _raises_naming(field, fn, *args, **kwargs):
    with pytest.raises((TypeError, ValueError)) as info:
        fn(*args, **kwargs)
    assert field in str(info.value), (field, str(info.value))


@pytest.mark.parametrize("cls", list(METHOD_FIELDS), ids=lambda c: c.__name__)
@SETTINGS
@given(data=st.data())
def test_method_fields_checked_at_construction(cls, data):
    field, kind = data.draw(st.sampled_from(sorted(METHOD_FIELDS[cls].items())))
    value = data.draw(BAD[kind], label=field)
    assume(not (field == "num_steps" and value is None))  # None: the schedule's default
    _raises_naming(field, cls, **{field: value})


@pytest.mark.parametrize("cls", list(METHOD_FIELDS), ids=lambda c: c.__name__)
def test_method_names_canonicalised(cls):
    # upper-case names are stored in lower case: no later "unreachable" branch
    names = {f: getattr(cls(), f) for f, kind in METHOD_FIELDS[cls].items() if kind == "name"}
    method = cls(**{f: v.upper() for f, v in names.items()})
    assert {f: getattr(method, f) for f in names} == names


def test_method_pytree_round_trip_and_vmap():
    method = DDIM(num_inference_steps=4, eta=0.5)
    leaves, treedef = jax.tree_util.tree_flatten(method)
    assert jax.tree_util.tree_unflatten(treedef, leaves) == method
    axes = DDIM(
        eta=0, dynamic_thresholding_ratio=None, sample_max_value=None, clip_sample_range=None
    )
    etas = jax.vmap(lambda m: m.eta * 2, in_axes=(axes,))(DDIM(eta=jnp.array([0.0, 1.0])))
    np.testing.assert_allclose(etas, [0.0, 2.0])
    grads = jax.grad(lambda m: -(m.eta**2))(method)  # a cotangent may be negative
    assert float(grads.eta) == -1.0


# --- sample -------------------------------------------------------------------------
bad_keys = (
    st.none()
    | st.integers()
    | st.floats()
    | strings
    | st.builds(lambda n: np.zeros((n,), np.float32), st.integers(0, 4))
    | st.builds(lambda n: jax.random.split(KEY, n), st.integers(3, 5))
)


@SETTINGS
@given(key=bad_keys)
def test_sample_bad_key(key):
    _raises_naming("key", sample, key, DDIM(num_inference_steps=2), SCHED, MODEL, NOISE)


bad_noise = (
    st.none()
    | strings
    | st.integers()
    | st.builds(
        lambda s: np.zeros(s, np.int32), st.lists(st.integers(1, 3), min_size=1, max_size=3)
    )
    | st.builds(lambda s: np.zeros((0,) + tuple(s)), st.lists(st.integers(1, 3), max_size=2))
    | st.just(np.float32(1.0))
)


@SETTINGS
@given(noise=bad_noise)
def test_sample_bad_noise(noise):
    _raises_naming("noise", sample, KEY, DDIM(num_inference_steps=2), SCHED, MODEL, noise)


class _Unhashable:
    __hash__ = None

    def __call__(self, x, t, context):
        return x


@SETTINGS
@given(model=strings | st.none() | st.integers() | st.just(_Unhashable()))
def test_sample_bad_model(model):
    _raises_naming("model_fn", sample, KEY, DDIM(num_inference_steps=2), SCHED, model, NOISE)


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).filter(lambda s: tuple(s) != (2, 3))
)
def test_sample_model_output_shape(shape):
    def model(x, t, context):
        return jnp.zeros(shape)

    _raises_naming("model_fn output", sample, KEY, DDIM(num_inference_steps=2), SCHED, model, NOISE)


OPTIONS = {
    "guidance_scale": nan_inf | strings | st.booleans() | st.none(),
    "guidance_rescale": st.floats(max_value=-1e-6)
    | st.floats(min_value=1.0001)
    | nan_inf
    | strings,
    "unroll": st.integers(max_value=0) | st.floats() | strings | st.none(),
    "return_trajectory": strings | st.integers() | st.none(),
    "debug": strings | st.integers() | st.none(),
    "progress": strings | st.integers() | st.none(),
}


@SETTINGS
@given(data=st.data())
def test_sample_bad_options(data):
    field = data.draw(st.sampled_from(sorted(OPTIONS)))
    value = data.draw(OPTIONS[field], label=field)
    _raises_naming(
        field, sample, KEY, DDIM(num_inference_steps=2), SCHED, MODEL, NOISE, **{field: value}
    )


@settings(max_examples=8, deadline=None)
@given(value=nan_inf, index=st.integers(0, 5))
def test_sample_nonfinite_noise_is_reported(value, index):
    noise = np.ones((2, 3), np.float32)
    noise.flat[index] = value
    out = sample(KEY, DDIM(num_inference_steps=2), SCHED, MODEL, jnp.asarray(noise))
    assert not bool(out.all_finite)
    assert int(out.first_nonfinite_step) == 0


# --- the facade -----------------------------------------------------------------------
SAMPLING_FIELDS = {
    "method": "name",
    "num_inference_steps": "pos_int",
    "eta": "nonneg",
    "guidance_scale": "number",
    "guidance_rescale": "unit_closed",
    "dynamic_thresholding_ratio": "unit_half_open",
    "use_clipped_model_output": "bool",
    "thresholding": "bool",
    "lower_order_final": "bool",
    "use_karras_sigmas": "bool",
    "euler_at_final": "bool",
}
SCHEDULER_FIELDS = {
    "num_train_timesteps": "pos_int",
    "beta_start": "unit_open",
    "beta_end": "unit_open",
    "schedule_type": "name",
    "clip_sample": "bool",
    "clip_sample_range": "pos",
    "sample_max_value": "pos",
    "timestep_spacing": "name",
    "rescale_betas_zero_snr": "bool",
    "steps_offset": "nonneg_int",
    "set_alpha_to_one": "bool",
    "shift": "pos",
}


@SETTINGS
@given(data=st.data())
def test_facade_configs(data):
    cls, fields = data.draw(
        st.sampled_from(
            [(SamplingConfig, SAMPLING_FIELDS), (NoiseSchedulerConfig, SCHEDULER_FIELDS)]
        )
    )
    field, kind = data.draw(st.sampled_from(sorted(fields.items())))
    value = data.draw(BAD[kind], label=field)
    _raises_naming(field, cls, **{field: value})


@SETTINGS
@given(data=st.data())
def test_create_sampler(data):
    case = data.draw(st.sampled_from(["schedule_type", "method", "unknown", "field"]))
    if case in ("schedule_type", "method"):
        _raises_naming(case, create_sampler, **{case: data.draw(BAD["name"])})
    elif case == "unknown":
        name = "zz" + data.draw(st.text(alphabet="abcxyz_", max_size=4))
        _raises_naming(name, create_sampler, **{name: 1})
    else:
        _raises_naming("eta", create_sampler, "linear", "ddim", eta=data.draw(BAD["nonneg"]))


@SETTINGS
@given(config=strings | st.integers() | st.just({}))
def test_manager_configs_must_be_configs(config):
    _raises_naming("scheduler_config", AdvancedSamplingManager, config)
    _raises_naming("sampling_config", AdvancedSamplingManager, None, config)


MANAGER = create_sampler("linear", "ddim", num_inference_steps=2)


@SETTINGS
@given(data=st.data())
def test_manager_sample_bad_arguments(data):
    case = data.draw(st.sampled_from(["key", "latents", "model", "guidance_scale"]))
    kwargs = {"key": KEY}
    args = [MODEL, NOISE]
    if case == "key":
        kwargs["key"] = data.draw(bad_keys)
    elif case == "latents":
        args[1] = data.draw(bad_noise)
    elif case == "model":
        args[0] = data.draw(strings | st.none() | st.just(_Unhashable()))
    else:
        kwargs["guidance_scale"] = data.draw(nan_inf | strings | st.booleans())
    _raises_naming(case, MANAGER.sample, *args, **kwargs)
