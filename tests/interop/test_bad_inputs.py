"""Generated bad input to the weight import: a clear error naming the argument, always.

Covers :func:`load_state_dict`, :func:`save_safetensors`, :func:`unet_from_diffusers`,
:func:`vae_from_diffusers` and the diffusers config readers: wrong argument types,
strings for bools and numbers, unreadable files of every suffix (random bytes,
truncated, empty), unknown names.
"""

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxdiff.interop import unet_from_diffusers, vae_from_diffusers
from jaxdiff.interop.diffusers_config import config_from_diffusers, config_to_diffusers
from jaxdiff.interop.diffusers_vae import vae_config_from_diffusers, vae_config_to_diffusers
from jaxdiff.interop.state_dict import (
    SAFETENSORS_SUFFIXES,
    TORCH_SUFFIXES,
    load_state_dict,
    save_safetensors,
)
from jaxdiff.nets.config import HighResModelConfig
from jaxdiff.nets.vae import VAEConfig

SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
not_a_path = st.one_of(
    st.none(), st.integers(), st.floats(), st.binary(max_size=4), st.lists(st.text(), max_size=2)
)
not_a_bool = st.one_of(
    st.text(max_size=6), st.integers(), st.floats(), st.none(), st.lists(st.booleans())
)


def _assert_named_error(name, make, error=(TypeError, ValueError)):
    with pytest.raises(error) as info:
        make()
    assert name in str(info.value), (name, str(info.value))


@SETTINGS
@given(path=not_a_path)
def test_load_state_dict_path_type(path):
    _assert_named_error("path", lambda: load_state_dict(path), TypeError)


@SETTINGS
@given(flag=not_a_bool, suffix=st.sampled_from(TORCH_SUFFIXES + SAFETENSORS_SUFFIXES))
def test_load_state_dict_allow_pickle_is_a_bool(tmp_path, flag, suffix):
    path = tmp_path / f"w{suffix}"
    path.write_bytes(b"")
    _assert_named_error("allow_pickle", lambda: load_state_dict(path, allow_pickle=flag), TypeError)


@SETTINGS
@given(
    suffix=st.sampled_from(TORCH_SUFFIXES + SAFETENSORS_SUFFIXES),
    data=st.one_of(st.binary(max_size=300), st.integers(0, 200)),
    allow_pickle=st.booleans(),
)
def test_unreadable_files_name_the_file(tmp_path, suffix, data, allow_pickle):
    """Random bytes, or a valid file cut at a random length: a ValueError naming it."""
    path = tmp_path / f"w{suffix}"
    if isinstance(data, int):  # truncate a real file of this format
        good = tmp_path / f"good{suffix}"
        if suffix in SAFETENSORS_SUFFIXES:
            save_safetensors({"a": np.arange(50, dtype=np.float32)}, good)
        else:
            torch.save({"a": torch.arange(50.0)}, good)
        data = good.read_bytes()[: min(data, good.stat().st_size - 1)]
    path.write_bytes(data)
    _assert_named_error(str(path), lambda: load_state_dict(path, allow_pickle=allow_pickle))


@SETTINGS
@given(suffix=st.text(alphabet="abcxyz0", min_size=1, max_size=5))
def test_unknown_suffix(tmp_path, suffix):
    path = tmp_path / f"w.{suffix}"
    path.write_bytes(b"\x00")
    if path.suffix.lower() in TORCH_SUFFIXES + SAFETENSORS_SUFFIXES:
        return
    _assert_named_error(path.suffix, lambda: load_state_dict(path), ValueError)


BAD_SAVE = {
    "state_dict": st.one_of(
        st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)
    ),
    "keys": st.one_of(st.integers(), st.none(), st.tuples(st.text(max_size=2))),
    "values": st.one_of(
        st.lists(st.text(max_size=2), min_size=1, max_size=3).map(np.array),
        st.just(np.array([None, 1], dtype=object)),
        st.just(np.zeros(2, np.complex128)),
    ),
    "metadata": st.one_of(
        st.text(max_size=3),
        st.integers(),
        st.dictionaries(st.text(max_size=2), st.integers(), min_size=1, max_size=2),
        st.dictionaries(st.integers(), st.text(max_size=2), min_size=1, max_size=2),
    ),
    "path": not_a_path,
}
NAMES = {
    "state_dict": "state_dict",
    "keys": "keys",
    "values": "state_dict[",
    "metadata": "metadata",
}


@SETTINGS
@given(data=st.data(), what=st.sampled_from(sorted(BAD_SAVE)))
def test_save_safetensors_writes_nothing_on_bad_input(tmp_path, data, what):
    value = data.draw(BAD_SAVE[what], label=what)
    target = tmp_path / "out" / "w.safetensors"
    state, kwargs, path = {"a": np.zeros(2, np.float32)}, {}, target
    if what == "state_dict":
        state = value
    elif what == "keys":
        state = {value: np.zeros(2)}
    elif what == "values":
        state = {"a": value}
    elif what == "metadata":
        kwargs = {"metadata": value}
    else:
        path = value
    _assert_named_error(
        NAMES.get(what, "path"), lambda: save_safetensors(state, path, **kwargs), TypeError
    )
    assert not os.path.exists(tmp_path / "out")


@SETTINGS
@given(
    loader=st.sampled_from([unet_from_diffusers, vae_from_diffusers]),
    source=st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.integers(), max_size=2)),
)
def test_importers_reject_bad_sources(loader, source):
    _assert_named_error("source", lambda: loader(source, {}), TypeError)


@SETTINGS
@given(
    loader=st.sampled_from([unet_from_diffusers, vae_from_diffusers]),
    config=st.one_of(st.text(max_size=4), st.integers(), st.lists(st.integers(), max_size=2)),
)
def test_importers_reject_non_mapping_configs(loader, config):
    _assert_named_error("config", lambda: loader({"w": np.zeros(1)}, config), TypeError)


BAD_OVERRIDES = {
    "use_checkpointing": not_a_bool,
    "lora_alpha": st.one_of(st.text(max_size=3), st.booleans(), st.just(float("nan"))),
    "dropout": st.one_of(st.text(max_size=3), st.booleans(), st.floats(max_value=-1e-9)),
    "dtype": st.one_of(st.integers(), st.sampled_from(["float64", "fp8", "int8", "half", "bf16"])),
}


@SETTINGS
@given(data=st.data(), name=st.sampled_from(sorted(BAD_OVERRIDES) + ["unknown"]))
def test_unet_overrides_are_checked_before_loading(data, name):
    """No weights are read: the source is a path that does not exist."""
    if name == "unknown":
        name = data.draw(st.sampled_from(["channels", "lora", "num_heads", "sample_size"]))
        value = 1
    else:
        value = data.draw(BAD_OVERRIDES[name], label=name)
    _assert_named_error(name, lambda: unet_from_diffusers("/nonexistent", **{name: value}))


@SETTINGS
@given(dtype=BAD_OVERRIDES["dtype"])
def test_vae_dtype_is_checked_before_loading(dtype):
    _assert_named_error("dtype", lambda: vae_from_diffusers("/nonexistent", dtype=dtype))


UNET_FLAGS = ["flip_sin_to_cos", "center_input_sample", "add_attention"]
UNET_NUMBERS = ["dropout", "norm_eps", "freq_shift", "mid_block_scale_factor"]
VAE_FLAGS = ["mid_block_add_attention", "use_quant_conv", "use_post_quant_conv"]
VAE_NUMBERS = ["scaling_factor", "shift_factor"]


@SETTINGS
@given(
    data=st.data(),
    kind=st.sampled_from(["unet", "vae"]),
    is_flag=st.booleans(),
)
def test_diffusers_config_strings_are_not_truthy(data, kind, is_flag):
    """A config.json with ``"flip_sin_to_cos": "false"`` is refused, not read as True."""
    if kind == "unet":
        dcfg, parse = config_to_diffusers(HighResModelConfig(num_heads=1)), config_from_diffusers
        names = UNET_FLAGS if is_flag else UNET_NUMBERS
    else:
        dcfg, parse = vae_config_to_diffusers(VAEConfig()), vae_config_from_diffusers
        names = VAE_FLAGS if is_flag else VAE_NUMBERS
    name = data.draw(st.sampled_from(names), label="option")
    bad = st.one_of(st.sampled_from(["false", "no", "0"]), st.integers(0, 1), st.none())
    if not is_flag:
        bad = st.one_of(st.sampled_from(["0.1", "abc"]), st.booleans(), st.just([1.0]))
    value = data.draw(bad, label="value")
    if name == "shift_factor" and value is None:
        return  # None means no shift
    _assert_named_error(name, lambda: parse({**dcfg, name: value}), TypeError)
