"""Bad network configurations raise naming the field (hypothesis over the config fields)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdiff.nets import HighResModelConfig

BOOL_FIELDS = (
    "conditional",
    "use_checkpointing",
    "use_linear_projection",
    "flip_sin_to_cos",
    "mid_block",
    "mid_attention",
    "center_input_sample",
)
REAL_FIELDS = ("dropout", "norm_eps", "freq_shift", "mid_block_scale_factor", "lora_alpha")
INT_FIELDS = ("in_channels", "out_channels", "base_channels", "num_res_blocks", "lora_rank")

not_a_bool = st.one_of(st.text(max_size=5), st.integers(), st.floats(), st.none())
not_a_number = st.one_of(st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2))


@settings(max_examples=20, deadline=None)
@given(field=st.sampled_from(BOOL_FIELDS), value=not_a_bool)
def test_flags_must_be_bools(field, value):
    with pytest.raises(TypeError, match=field):
        HighResModelConfig(**{field: value})


@settings(max_examples=20, deadline=None)
@given(field=st.sampled_from(REAL_FIELDS + INT_FIELDS), value=not_a_number)
def test_numbers_must_be_numbers(field, value):
    with pytest.raises(TypeError, match=field):
        HighResModelConfig(**{field: value})


@settings(max_examples=20, deadline=None)
@given(
    field=st.sampled_from(("dropout", "norm_eps")),
    value=st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf"))),
)
def test_out_of_range_numbers(field, value):
    if field == "dropout" and value == 0.0:
        return  # no dropout is allowed
    with pytest.raises(ValueError, match=field):
        HighResModelConfig(**{field: value})


@settings(max_examples=20, deadline=None)
@given(field=st.sampled_from(INT_FIELDS[:4]), value=st.integers(max_value=0))
def test_sizes_must_be_positive(field, value):
    with pytest.raises(ValueError, match=field):
        HighResModelConfig(**{field: value})


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="fourier"):
        HighResModelConfig(time_embedding_type="sinus")
    with pytest.raises(ValueError, match="dtype"):
        HighResModelConfig(dtype="float8")
