"""The house contract (DESIGN.md, core conventions), checked over every public ``__all__``.

1. Every stochastic function takes ``key`` first and never defaults it; the seed
   facades' ``key=`` keyword is the documented exception (convention 3).
2. Results are structs of one type whatever the flags, never flag-dependent tuples.
3. Numeric knobs of method configs are traced pytree leaves (one compile across values);
   structure (steps, orders, names) is static.
4. Bad input raises ``ValueError``/``TypeError`` naming the argument.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

PUBLIC_MODULES = (
    "jaxdiff",
    "jaxdiff.samplers",
    "jaxdiff.schedules",
    "jaxdiff.ot",
    "jaxdiff.ot.kernel_ops",
    "jaxdiff.nets",
    "jaxdiff.train",
    "jaxdiff.interop",
    "jaxdiff.counting",
    "jaxdiff.schrodinger",
    "jaxdiff.kernels",
    "jaxdiff.metrics",
)

# name -> why its key is not a first positional argument without default
KEY_EXCEPTIONS = {
    "AdvancedSamplingManager.sample": "seed facade: the original had no key (key= keyword)",
    "AdvancedSamplingManager.compare_sampling_methods": "seed facade (key= keyword)",
    "FastSBOTSolver.sample": "seed facade: the original had no key (key= keyword, required)",
    "AdvancedHierarchicalDiffusionSampler.sample": "seed facade: the original had no key "
    "(key= keyword, required)",
    "AutoencoderKL.__call__": "a Flax module call: inputs first; key=None returns the mean",
    "unet_from_diffusers": "a deterministic loader; key only initialises optional LoRA",
    "make_kernel_operator": "deterministic for direct / fft; key= required for rff, nystrom",
}
# parameter names that would be a second spelling of "key"
OTHER_KEY_NAMES = ("rng", "prng_key", "prng", "rng_key")


def _public_callables():
    seen = set()
    for mod_name in PUBLIC_MODULES:
        mod = importlib.import_module(mod_name)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if attr.startswith("_") and attr != "__call__":
                        continue
                    fn = value.__func__ if isinstance(value, classmethod | staticmethod) else value
                    if inspect.isfunction(fn):
                        yield f"{name}.{attr}", fn, seen
            elif inspect.isfunction(obj):
                yield name, obj, seen


def _signature_problems():
    problems = {}
    for qualname, fn, _ in _public_callables():
        params = [
            p for p in inspect.signature(fn).parameters.values() if p.name not in ("self", "cls")
        ]
        names = [p.name for p in params]
        for other in OTHER_KEY_NAMES:
            if other in names:
                problems[qualname] = f"takes {other!r}: the house name is 'key'"
        if "key" not in names or qualname in KEY_EXCEPTIONS:
            continue
        p = params[names.index("key")]
        if names[0] != "key":
            problems[qualname] = f"key is argument {names.index('key')}, not the first"
        elif p.default is not inspect.Parameter.empty:
            problems[qualname] = f"key defaults to {p.default!r}"
        elif p.kind is inspect.Parameter.KEYWORD_ONLY:
            problems[qualname] = "key is keyword-only"
    return problems


def test_walk_finds_the_public_api():
    names = {q for q, _, _ in _public_callables()}
    for expected in ("sample", "sinkhorn", "ot_pairs", "fit", "SkellamBridge.sample"):
        assert expected in names


def test_key_is_first_and_never_defaulted():
    assert _signature_problems() == {}


def test_key_exceptions_are_still_needed():
    """An exception that no longer applies is removed from the list, not kept."""
    names = {q: fn for q, fn, _ in _public_callables()}
    for qualname in KEY_EXCEPTIONS:
        assert qualname in names, f"{qualname} is no longer public: drop its exception"
        assert "key" in inspect.signature(names[qualname]).parameters


# --- 2. one result struct per function, whatever the flags ---------------------------


def _eps_model(x, t, context=None):
    return 0.1 * x


def _count_model(key, x_t, t, context=None):
    return x_t.astype(jnp.float32)


def _result_calls():
    from jaxdiff.counting import ConstantM, SkellamBridge
    from jaxdiff.ot import ot_pairs, sinkhorn
    from jaxdiff.samplers import DDIM, sample
    from jaxdiff.schedules import DiscreteSchedule

    k = jax.random.key(0)
    sched = DiscreteSchedule.create("linear", 100)
    z = jax.random.normal(k, (4, 3))
    x, y = z, z[::-1] + 1.0
    counts = jnp.arange(8, dtype=jnp.int32).reshape(4, 2)
    bridge = SkellamBridge(ConstantM(2))
    return {
        "sample": [
            lambda flag=flag: sample(k, DDIM(num_inference_steps=3), sched, _eps_model, z, **flag)
            for flag in ({}, {"return_trajectory": True}, {"debug": True})
        ],
        "sinkhorn": [
            lambda flag=flag: sinkhorn(x, y, epsilon=0.5, **flag)
            for flag in ({}, {"divergence": True}, {"debug": True})
        ],
        "ot_pairs": [
            lambda method=method: ot_pairs(k, x, y, method=method)
            for method in ("exact", "sinkhorn")
        ],
        "SkellamBridge.sample": [
            lambda flag=flag: bridge.sample(k, counts, _count_model, 3, **flag)
            for flag in ({}, {"return_trajectory": True})
        ],
    }


@pytest.mark.parametrize("name", ["sample", "sinkhorn", "ot_pairs", "SkellamBridge.sample"])
def test_one_result_struct_whatever_the_flags(name):
    results = [call() for call in _result_calls()[name]]
    types = {type(r) for r in results}
    assert len(types) == 1, f"{name} returns {types}"
    (cls,) = types
    assert dataclasses.is_dataclass(cls) and not isinstance(results[0], tuple)
    fields = {f.name for f in dataclasses.fields(cls)}
    health = {"all_finite", "converged"} & fields
    assert health, f"{cls.__name__} has no health field (all_finite / converged)"


# --- 3. numeric knobs are traced, structure is static --------------------------------


def _method_classes():
    from jaxdiff import samplers

    for name in samplers.__all__:
        obj = getattr(samplers, name)
        if inspect.isclass(obj) and hasattr(obj, "plan") and hasattr(obj, "step"):
            yield obj


def test_every_float_knob_of_every_method_is_a_pytree_leaf():
    classes = list(_method_classes())
    assert len(classes) >= 8
    static_floats = {}
    for cls in classes:
        method = cls()
        for f in dataclasses.fields(method):
            value = getattr(method, f.name)
            if isinstance(value, float) and not f.metadata.get("pytree_node", True):
                static_floats[f"{cls.__name__}.{f.name}"] = value
        leaves = jax.tree_util.tree_leaves(method)
        assert all(not isinstance(leaf, str) for leaf in leaves), cls.__name__
    assert static_floats == {}


def test_one_compile_across_values_of_a_traced_knob():
    from jaxdiff.ot import KernelConfig, make_kernel_operator, sinkhorn
    from jaxdiff.samplers import DDIM, sample
    from jaxdiff.schedules import DiscreteSchedule

    traces = []

    def model(x, t, context=None):
        traces.append(1)  # runs once per trace, i.e. per compile
        return 0.1 * x

    sched = DiscreteSchedule.create("linear", 100)
    z = jnp.ones((2, 3))
    for eta in (0.0, 0.5, 1.0):
        sample(jax.random.key(0), DDIM(num_inference_steps=3, eta=eta), sched, model, z)
    assert len(traces) == 1

    x = jax.random.normal(jax.random.key(1), (16, 2))

    @jax.jit
    def solve(eps):
        op = make_kernel_operator(KernelConfig(epsilon=eps, solver_type="direct"), x, x)
        traces.append(2)
        return sinkhorn(geometry=op).reg_ot_cost

    for eps in (0.5, 1.0, 2.0):
        solve(jnp.float32(eps))
    assert traces.count(2) == 1


# --- 4. bad input: clear errors naming the argument ----------------------------------


def _stochastic_entry_points():
    """A valid call of each stochastic entry point, with ``key`` replaceable."""

    from jaxdiff.counting import ConstantM, SkellamBridge
    from jaxdiff.ot import max_sliced_wasserstein, ot_pairs, sliced_wasserstein
    from jaxdiff.samplers import DDPM, sample
    from jaxdiff.schedules import DiscreteSchedule
    from jaxdiff.train import TrainState

    sched = DiscreteSchedule.create("linear", 100)
    z = jnp.ones((4, 2))
    counts = jnp.ones((4, 2), jnp.int32)
    return {
        "sample": lambda k: sample(k, DDPM(num_inference_steps=2), sched, _eps_model, z),
        "ot_pairs": lambda k: ot_pairs(k, z, z),
        "sliced_wasserstein": lambda k: sliced_wasserstein(k, z, z),
        "max_sliced_wasserstein": lambda k: max_sliced_wasserstein(k, z, z),
        "SkellamBridge.sample": lambda k: SkellamBridge(ConstantM(1)).sample(
            k, counts, _count_model, 2
        ),
        "SkellamBridge.__call__": lambda k: SkellamBridge(ConstantM(1))(k, counts, counts),
        "TrainState.create": lambda k: TrainState.create(k, {"w": z}, optax.sgd(0.1)),
    }


@pytest.mark.parametrize("bad_key", [None, 0, 1.5, "key", np.zeros(2, np.float32)])
def test_a_bad_key_is_a_type_error_naming_key(bad_key):
    for name, call in _stochastic_entry_points().items():
        call(jax.random.key(0))  # the valid call runs
        with pytest.raises(TypeError, match="key") as info:
            call(bad_key)
        assert "Traceback" not in str(info.value), name


def test_legacy_uint32_keys_are_accepted():
    for call in _stochastic_entry_points().values():
        call(jax.random.PRNGKey(0))


def _named_cases():
    """The cases issue 12 names: each must raise the given error naming the field."""
    from jaxdiff import SamplingConfig
    from jaxdiff.ot import sinkhorn, sliced_wasserstein
    from jaxdiff.samplers import DDIM, DPMSolver
    from jaxdiff.schedules import DiscreteSchedule, FlowSchedule
    from jaxdiff.train import CheckpointManager, TrainingConfig

    x = jnp.ones((4, 2))
    return [
        (ValueError, "num_inference_steps", lambda: DDIM(num_inference_steps=-5)),
        (ValueError, "timestep_spacing", lambda: DDIM(timestep_spacing="trailng")),
        (ValueError, "prediction_type", lambda: DDIM(prediction_type="eps")),
        (ValueError, "solver_order", lambda: DPMSolver(solver_order=7)),
        (ValueError, "eta", lambda: DDIM(eta=-1.0)),
        (ValueError, "guidance_rescale", lambda: SamplingConfig(guidance_rescale=5.0)),
        (ValueError, "clip_sample_range", lambda: DDIM(clip_sample_range=-1.0)),
        (ValueError, "dynamic_thresholding_ratio", lambda: DDIM(dynamic_thresholding_ratio=0.0)),
        (ValueError, "sample_max_value", lambda: DDIM(sample_max_value=-1.0)),
        (TypeError, "eta", lambda: DDIM(eta="0.5")),
        (TypeError, "set_alpha_to_one", lambda: DDIM(set_alpha_to_one="no")),
        (ValueError, "beta_start", lambda: DiscreteSchedule.create("linear", 100, -0.1, 0.02)),
        (ValueError, "beta_end", lambda: DiscreteSchedule.create("linear", 100, 1e-4, 1.5)),
        (ValueError, "num_train_timesteps", lambda: DiscreteSchedule.create("linear", 10**10)),
        (TypeError, "shift", lambda: FlowSchedule.create(shift="3.0")),
        (TypeError, "epsilon", lambda: sinkhorn(x, x, epsilon="0.1")),
        (TypeError, "divergence", lambda: sinkhorn(x, x, epsilon=0.1, divergence="False")),
        (ValueError, "max_iterations", lambda: sinkhorn(x, x, epsilon=0.1, max_iterations=10**12)),
        (
            ValueError,
            "x",
            lambda: sliced_wasserstein(jax.random.key(0), x.at[0, 0].set(jnp.nan), x),
        ),
        (ValueError, "p", lambda: sliced_wasserstein(jax.random.key(0), x, x, p=float("nan"))),
        (ValueError, "min_lr_ratio", lambda: TrainingConfig(min_lr_ratio=1.5)),
        (TypeError, "seed", lambda: TrainingConfig(seed="abc")),
        (ValueError, "seed", lambda: TrainingConfig(seed=-1)),
        (TypeError, "gradient_clip_norm", lambda: TrainingConfig(gradient_clip_norm="1.0")),
        (TypeError, "keep", lambda: CheckpointManager("/tmp/jaxdiff-conventions", keep=True)),
        (TypeError, "directory", lambda: CheckpointManager(None)),
    ]


@pytest.mark.parametrize("case", range(len(_named_cases())))
def test_named_bad_inputs_raise_naming_the_field(case):
    error, field, call = _named_cases()[case]
    with pytest.raises(error, match=field):
        call()


def test_a_prediction_type_in_capitals_is_canonical_or_refused():
    from jaxdiff.samplers import DDIM

    try:
        method = DDIM(prediction_type="EPSILON")
    except ValueError as err:
        assert "prediction_type" in str(err)
    else:
        assert method.prediction_type == "epsilon"


def test_max_iterations_below_the_default_inner_iterations_just_works():
    from jaxdiff.ot import sinkhorn

    x = jax.random.normal(jax.random.key(0), (8, 2))
    assert np.isfinite(float(sinkhorn(x, x + 1.0, epsilon=0.5, max_iterations=5).reg_ot_cost))


def test_the_pickle_guard_takes_only_a_real_bool(tmp_path):
    from jaxdiff.interop import load_state_dict

    path = tmp_path / "w.safetensors"
    path.write_bytes(b"")
    with pytest.raises(TypeError, match="allow_pickle"):
        load_state_dict(path, allow_pickle="False")
