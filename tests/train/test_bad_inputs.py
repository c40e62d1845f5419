"""Generated bad input to the training engine: a clear error naming the argument, always.

Covers :class:`TrainingConfig` (every field), :class:`CheckpointManager`, :func:`fit`'s
arguments, :func:`array_batches`, :func:`config_hash` and the objectives' ``create``.
Every case must raise ``TypeError`` or ``ValueError`` whose message names the argument --
before anything is built or written.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxdiff.schedules import VPLinearSchedule
from jaxdiff.train import (
    MAX_SEED,
    CheckpointManager,
    FlowMatchingObjective,
    ScoreMatchingObjective,
    TrainingConfig,
    array_batches,
    config_hash,
    fit,
)

SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# field -> (low, high) of the allowed ints; None: optional (None allowed)
INT_FIELDS = {
    "batch_size": (1, None),
    "warmup_steps": (0, None),
    "log_interval": (1, None),
    "checkpoint_interval": (1, None),
    "keep_checkpoints": (1, None),
    "seed": (0, MAX_SEED),
    "num_steps": (1, None),
    "epochs": (1, None),
}
# field -> (low, high, high allowed)
REAL_FIELDS = {
    "learning_rate": (0.0, math.inf, False),
    "weight_decay": (0.0, math.inf, False),
    "adam_eps": (0.0, math.inf, False),
    "adam_b1": (0.0, 1.0, False),
    "adam_b2": (0.0, 1.0, False),
    "ema_decay": (0.0, 1.0, False),
    "min_lr_ratio": (0.0, 1.0, True),
    "gradient_clip_norm": (0.0, math.inf, False),
}
BOOL_FIELDS = ("async_checkpointing", "progress")

not_a_number = st.one_of(
    st.text(max_size=6),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.builds(lambda v: str(v), st.floats(allow_nan=False)),  # numbers as strings
    st.just(b"1"),
)


def bad_int(low, high):
    out = [
        not_a_number,
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(max_value=low - 1),
    ]
    if high is not None:
        out.append(st.integers(min_value=high + 1, max_value=high * 4))
    return st.one_of(*out)


def bad_real(low, high, high_ok):
    out = [
        not_a_number,
        st.just(math.nan),
        st.just(math.inf),
        st.just(-math.inf),
        st.floats(max_value=low - 1e-9, allow_nan=False, allow_infinity=False),
    ]
    if math.isfinite(high):
        out.append(st.floats(min_value=high, exclude_min=high_ok, max_value=1e6))
    return st.one_of(*out)


def _assert_named_error(field, make):
    with pytest.raises((TypeError, ValueError)) as info:
        make()
    assert field in str(info.value), (field, str(info.value))


@SETTINGS
@given(data=st.data(), field=st.sampled_from(sorted(INT_FIELDS)))
def test_config_int_fields(data, field):
    value = data.draw(bad_int(*INT_FIELDS[field]), label=field)
    _assert_named_error(field, lambda: TrainingConfig(**{field: value}))


@SETTINGS
@given(data=st.data(), field=st.sampled_from(sorted(REAL_FIELDS)))
def test_config_real_fields(data, field):
    value = data.draw(bad_real(*REAL_FIELDS[field]), label=field)
    _assert_named_error(field, lambda: TrainingConfig(**{field: value}))


@SETTINGS
@given(
    field=st.sampled_from(BOOL_FIELDS),
    value=st.one_of(st.text(max_size=5), st.integers(), st.floats(), st.lists(st.booleans())),
)
def test_config_bool_fields(field, value):
    _assert_named_error(field, lambda: TrainingConfig(**{field: value}))


@SETTINGS
@given(
    value=st.one_of(
        st.text(max_size=6).filter(lambda s: s.lower() not in ("no", "bf16")),
        st.integers(),
        st.floats(),
        st.none(),
    )
)
def test_config_mixed_precision(value):
    _assert_named_error("mixed_precision", lambda: TrainingConfig(mixed_precision=value))


@SETTINGS
@given(
    batch=st.integers(1, 64),
    micro=st.one_of(st.integers(-5, 200), st.text(max_size=3), st.floats(), st.booleans()),
)
def test_config_micro_batch_size(batch, micro):
    if isinstance(micro, int) and not isinstance(micro, bool) and 1 <= micro <= batch:
        if batch % micro == 0:
            return  # a valid divisor
    _assert_named_error(
        "micro_batch_size", lambda: TrainingConfig(batch_size=batch, micro_batch_size=micro)
    )


@SETTINGS
@given(directory=st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.text(), max_size=2)))
def test_checkpoint_manager_directory(directory):
    _assert_named_error("directory", lambda: CheckpointManager(directory))


@SETTINGS
@given(
    field=st.sampled_from(["keep", "async_save"]),
    value=st.one_of(st.text(max_size=4), st.floats(), st.integers(-3, 0), st.none()),
)
def test_checkpoint_manager_options_touch_nothing(tmp_path, field, value):
    if field == "keep" and isinstance(value, bool):
        return
    _assert_named_error(field, lambda: CheckpointManager(tmp_path / "run", **{field: value}))
    assert not (tmp_path / "run").exists()


def test_checkpoint_manager_keep_rejects_bools(tmp_path):
    for flag in (True, False):
        _assert_named_error("keep", lambda f=flag: CheckpointManager(tmp_path, keep=f))


# --- fit ------------------------------------------------------------------------------

X = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32)
DATA, _ = array_batches({"x": X}, 8, seed=0)
CFG = TrainingConfig(batch_size=8, num_steps=2, progress=False)
GOOD = dict(
    key=jax.random.key(0),
    params={"w": jnp.zeros((2, 2))},
    apply_fn=lambda p, x, t, c: x @ p["w"],
    objective=FlowMatchingObjective.create(),
    data=DATA,
    config=CFG,
)

BAD_FIT = {
    "key": st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=3),
        st.builds(lambda n: np.zeros(n, np.float32), st.integers(0, 3)),
        st.just(jax.random.split(jax.random.key(0), 3)),  # a batch of keys
    ),
    "params": st.one_of(
        st.just({}),
        st.just([]),
        st.just({"w": "abc"}),
        st.just({"w": np.array(["a", "b"])}),
        st.sampled_from([math.nan, math.inf, -math.inf]).map(lambda v: {"w": jnp.array([0.0, v])}),
        st.just({"w": None, "b": object()}),
    ),
    "apply_fn": st.one_of(st.none(), st.integers(), st.text(max_size=3)),
    "objective": st.one_of(st.none(), st.text(max_size=3), st.just({"type": "flow"})),
    "data": st.one_of(st.none(), st.just(X), st.integers()),
    "config": st.one_of(st.none(), st.just({"batch_size": 8}), st.text(max_size=3)),
    "run_dir": st.one_of(st.integers(), st.floats(), st.just(["runs"])),
    "mesh": st.one_of(st.text(max_size=3), st.integers(), st.just(jax.devices())),
}


@SETTINGS
@given(data=st.data(), field=st.sampled_from(sorted(BAD_FIT)))
def test_fit_arguments(tmp_path, data, field):
    value = data.draw(BAD_FIT[field], label=field)
    kwargs = {**GOOD, "run_dir": tmp_path / "run", field: value}
    if field == "params" and value == {"w": None, "b": object()}:
        field = "params['b']"  # None is an empty subtree: the object is the bad leaf
    _assert_named_error(field, lambda: fit(**kwargs))
    assert not (tmp_path / "run").exists()  # refused before anything is written


@SETTINGS
@given(steps=st.one_of(st.integers(max_value=0), st.text(max_size=3), st.floats(), st.none()))
def test_fit_steps_per_epoch(steps):
    cfg = TrainingConfig(batch_size=8, num_steps=None, epochs=1, progress=False)
    _assert_named_error(
        "steps_per_epoch", lambda: fit(**{**GOOD, "config": cfg}, steps_per_epoch=steps)
    )


@SETTINGS
@given(
    batch_size=st.one_of(
        st.integers(max_value=0), st.integers(min_value=33), st.text(max_size=3), st.floats()
    )
)
def test_array_batches_batch_size(batch_size):
    _assert_named_error("batch_size", lambda: array_batches({"x": X}, batch_size, seed=0))


@SETTINGS
@given(seed=st.one_of(st.integers(max_value=-1), st.text(max_size=3), st.floats(), st.none()))
def test_array_batches_seed(seed):
    _assert_named_error("seed", lambda: array_batches({"x": X}, 8, seed=seed))


@SETTINGS
@given(length=st.one_of(st.integers(max_value=0), st.integers(min_value=65), st.text(max_size=2)))
def test_config_hash_length(length):
    _assert_named_error("length", lambda: config_hash({}, {}, {}, length=length))


@SETTINGS
@given(
    field=st.sampled_from(["flow.time_scale", "flow.t_min", "score.t_min"]),
    value=st.one_of(
        st.text(max_size=4),
        st.booleans(),
        st.none(),
        st.sampled_from([math.nan, math.inf, -1.0, 0.5, 1.0, 7.0]),
    ),
)
def test_objective_numbers(field, value):
    kind, name = field.split(".")
    if (field == "flow.time_scale" and value in (0.5, 1.0, 7.0)) or (
        field == "score.t_min" and value == 0.5
    ):
        return  # valid values
    if kind == "flow":
        _assert_named_error(name, lambda: FlowMatchingObjective.create(**{name: value}))
    else:
        sched = VPLinearSchedule.create()
        _assert_named_error(name, lambda: ScoreMatchingObjective.create(sched, t_min=value))


def test_objective_numbers_accept_concrete_scalars():
    obj = FlowMatchingObjective.create(time_scale=jnp.float32(1000.0), t_min=np.float32(0.1))
    assert float(obj.time_scale) == 1000.0


BAD_BATCHES = st.one_of(
    st.just({"x": np.array([["a", "b"]] * 8)}),
    st.just({"x": np.float32(1.0)}),
    st.just({"x": X[:8], "context": X[:4]}),
    st.sampled_from([math.nan, math.inf]).map(lambda v: {"x": np.full((8, 2), v, np.float32)}),
    st.just({"y": X[:8]}),
)


@SETTINGS
@given(batch=BAD_BATCHES)
def test_fit_checks_the_batches(batch):
    _assert_named_error(
        "data(0)" if "x" in batch else "'x'", lambda: fit(**{**GOOD, "data": lambda s: batch})
    )
