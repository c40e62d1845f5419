"""jaxdiff's CLIP text encoder against transformers' (PyTorch) on random tiny models."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from transformers.activations import ACT2FN

from jaxdiff.interop.clip_text import clip_text_from_transformers
from jaxdiff.nets.clip_text import _ACTIVATIONS, CLIPTextConfig, CLIPTextModel, CLIPTextOutput

VOCAB, CONTEXT = 99, 16
TINY = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=37,
    projection_dim=24,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=CONTEXT,
    bos_token_id=0,
    pad_token_id=1,
)
# (transformers class, config overrides): both activations of CLIP checkpoints and both
# pooling rules (eos_token_id == 2: argmax of the ids; otherwise the first eos id)
CASES = {
    "quick_gelu-legacy-eos-projection": (
        "CLIPTextModelWithProjection",
        dict(hidden_act="quick_gelu", eos_token_id=2),
    ),
    "gelu-eos5": ("CLIPTextModel", dict(hidden_act="gelu", eos_token_id=5, num_hidden_layers=3)),
    "gelu_new-eos5-projection": (
        "CLIPTextModelWithProjection",
        dict(hidden_act="gelu_new", eos_token_id=5),
    ),
}
ATOL = 1e-5  # float32; measured errors are about 2e-6


def tiny_clip(cls: str = "CLIPTextModel", seed: int = 0, **overrides):
    """A random tiny transformers CLIP text model, every tensor perturbed (non-trivial norms)."""
    torch.manual_seed(seed)
    model = getattr(transformers, cls)(transformers.CLIPTextConfig(**{**TINY, **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def prompts(eos_token_id: int, lengths=(CONTEXT, 9, 5), seed: int = 0):
    """Ids ``[B, T]`` and a 0/1 mask padded at the end; each row ends in an eos token.

    Legacy rows (``eos_token_id == 2``) end in the largest id (CLIP's end-of-text is the
    last vocabulary entry) and are padded with it, as Stable Diffusion's tokenizer does.
    Other rows hold ids larger than the eos id before it and are padded with eos, so
    ``argmax`` and "first eos" pick different positions.
    """
    rng = np.random.default_rng(seed)
    ids = rng.integers(6, VOCAB - 1, size=(len(lengths), CONTEXT))
    mask = np.zeros_like(ids)
    eos = VOCAB - 1 if eos_token_id == 2 else eos_token_id
    for row, n in enumerate(lengths):
        ids[row, n - 1 :] = eos
        mask[row, :n] = 1
    return ids, mask


def torch_outputs(model, ids, mask=None) -> dict:
    """``last_hidden_state``, ``pooled`` and (with projection) ``text_embeds`` as numpy."""
    ids = torch.from_numpy(ids)
    mask = None if mask is None else torch.from_numpy(mask)
    with torch.no_grad():
        tower = getattr(model, "text_model", model)
        out = tower(input_ids=ids, attention_mask=mask)
        result = dict(last_hidden_state=out.last_hidden_state, pooled=out.pooler_output)
        if tower is not model:
            result["text_embeds"] = model(input_ids=ids, attention_mask=mask).text_embeds
    return {k: v.numpy() for k, v in result.items()}


def assert_matches(out: CLIPTextOutput, ref: dict, atol: float = ATOL):
    assert isinstance(out, CLIPTextOutput)
    for name in ("last_hidden_state", "pooled"):
        np.testing.assert_allclose(getattr(out, name), ref[name], atol=atol, rtol=0, err_msg=name)
    if "text_embeds" in ref:
        np.testing.assert_allclose(out.text_embeds, ref["text_embeds"], atol=atol, rtol=0)
    else:
        assert out.text_embeds is None


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    cls, overrides = CASES[request.param]
    model = tiny_clip(cls, **overrides)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    return model, folder, overrides["eos_token_id"]


def test_matches_transformers_with_and_without_mask_eager_and_jitted(case):
    model, folder, eos = case
    module, params = clip_text_from_transformers(folder)
    assert module.with_projection == hasattr(model, "text_projection")
    ids, mask = prompts(eos)
    assert ((ids == eos).argmax(1) != ids.argmax(1)).any()  # the two pooling rules differ
    apply = jax.jit(lambda p, i, m: module.apply({"params": p}, i, m))
    refs = [torch_outputs(model, ids, m) for m in (None, mask)]
    # padding queries see fewer keys with the mask: the mask is not a no-op here
    assert np.abs(refs[0]["last_hidden_state"] - refs[1]["last_hidden_state"]).max() > 0.1
    for m, ref in zip((None, mask), refs, strict=True):
        assert_matches(module.apply({"params": params}, ids, m), ref)
        assert_matches(apply(params, jnp.asarray(ids), m), ref)
    shorter = ids[1:, :9], mask[1:, :9]  # fewer tokens than the context
    assert_matches(module.apply({"params": params}, *shorter), torch_outputs(model, *shorter))


def test_the_in_memory_pair_gives_the_folder_s_parameters(case):
    model, folder, _ = case
    _, from_folder = clip_text_from_transformers(folder)
    module, from_pair = clip_text_from_transformers((model.config.to_dict(), model.state_dict()))
    numpy_state = {k: v.numpy() for k, v in model.state_dict().items()}
    _, from_numpy = clip_text_from_transformers((model.config.to_dict(), numpy_state))
    for other in (from_pair, from_numpy):
        jax.tree.map(np.testing.assert_array_equal, from_folder, other)
    assert module.with_projection == hasattr(model, "text_projection")


def test_left_padding_matches_eager_attention():
    """A query with no unmasked key attends uniformly, as transformers' eager attention."""
    model = tiny_clip(hidden_act="gelu", eos_token_id=5)
    model.set_attn_implementation("eager")
    module, params = clip_text_from_transformers((model.config.to_dict(), model.state_dict()))
    ids, mask = prompts(5, lengths=(7, 12))
    ids, mask = np.roll(ids, 4, axis=1), np.roll(mask, 4, axis=1)  # padding first
    assert_matches(module.apply({"params": params}, ids, mask), torch_outputs(model, ids, mask))


def test_bfloat16_compute_stays_close():
    model = tiny_clip("CLIPTextModelWithProjection", hidden_act="quick_gelu", eos_token_id=2)
    source = (model.config.to_dict(), model.state_dict())
    module, params = clip_text_from_transformers(source, dtype="bfloat16")
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    ids, mask = prompts(2)
    out = module.apply({"params": params}, ids, mask)
    assert out.last_hidden_state.dtype == jnp.bfloat16
    ref = torch_outputs(model, ids, mask)
    for name in ("last_hidden_state", "pooled", "text_embeds"):
        got = np.asarray(getattr(out, name), np.float32)
        assert np.abs(got - ref[name]).max() < 0.15 * np.abs(ref[name]).max(), name


@pytest.mark.parametrize("name", sorted(_ACTIVATIONS))
def test_activations_match_transformers(name):
    x = np.linspace(-6, 6, 601, dtype=np.float32)
    ref = ACT2FN[name](torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_ACTIVATIONS[name](jnp.asarray(x)), ref, atol=1e-6, rtol=1e-6)


# --- config ---------------------------------------------------------------------------


def test_defaults_are_transformers_defaults():
    ref = transformers.CLIPTextConfig()
    for f in dataclasses.fields(CLIPTextConfig):
        if f.name != "dtype":
            assert getattr(CLIPTextConfig(), f.name) == getattr(ref, f.name), f.name
    assert CLIPTextConfig().dtype == "float32"


def test_from_dict_reads_text_and_full_clip_configs():
    text = transformers.CLIPTextConfig(**TINY, hidden_act="gelu", eos_token_id=5)
    expected = CLIPTextConfig(**{k: v for k, v in TINY.items() if "token" not in k},
                              hidden_act="gelu", eos_token_id=5)  # fmt: skip
    d = {**text.to_dict(), "dtype": "bfloat16", "unrelated": [1, 2]}
    assert CLIPTextConfig.from_dict(d) == expected  # dtype is the stored weights' dtype
    full = transformers.CLIPConfig(text_config=text.to_dict(), projection_dim=20).to_dict()
    assert CLIPTextConfig.from_dict(full) == dataclasses.replace(expected, projection_dim=20)
    assert CLIPTextConfig.from_dict({"vocab_size": 7}) == CLIPTextConfig(vocab_size=7)


@pytest.mark.parametrize(
    ("error", "field", "kwargs"),
    [
        (ValueError, "num_attention_heads", dict(hidden_size=30, num_attention_heads=4)),
        (ValueError, "hidden_act", dict(hidden_act="gelu_foo")),
        (TypeError, "hidden_act", dict(hidden_act=None)),
        (ValueError, "vocab_size", dict(vocab_size=0)),
        (TypeError, "hidden_size", dict(hidden_size="512")),
        (TypeError, "num_hidden_layers", dict(num_hidden_layers=2.0)),
        (ValueError, "layer_norm_eps", dict(layer_norm_eps=0.0)),
        (TypeError, "eos_token_id", dict(eos_token_id=[2, 3])),
        (ValueError, "max_position_embeddings", dict(max_position_embeddings=-1)),
        (ValueError, "dtype", dict(dtype="float64")),
    ],
)
def test_bad_config_fields_raise_naming_the_field(error, field, kwargs):
    with pytest.raises(error, match=field):
        CLIPTextConfig(**kwargs)


def test_from_dict_refuses_non_mappings():
    with pytest.raises(TypeError, match="mapping"):
        CLIPTextConfig.from_dict([("vocab_size", 7)])
    with pytest.raises(TypeError, match="text_config"):
        CLIPTextConfig.from_dict({"text_config": "clip"})


# --- bad input ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_module():
    cfg = CLIPTextConfig(**{k: v for k, v in TINY.items() if "token" not in k})
    module = CLIPTextModel(cfg, with_projection=True)
    params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    return module, params


def _ids(batch=2, tokens=4):
    return np.arange(batch * tokens).reshape(batch, tokens) % VOCAB


@pytest.mark.parametrize(
    ("error", "pattern", "ids", "mask"),
    [
        (TypeError, "input_ids .*dtype float32", _ids().astype(np.float32), None),
        (TypeError, "input_ids .*dtype bool", _ids() > 2, None),
        (TypeError, "input_ids", "a photo of a cat", None),
        (ValueError, r"input_ids must have shape \[batch, tokens\]", _ids()[0], None),
        (ValueError, r"input_ids must have shape", np.zeros((2, 0), np.int32), None),
        (ValueError, r"vocab_size=99\); got range \[92, 99\]", _ids() + 92, None),
        (ValueError, r"vocab_size=99\); got range \[-1", _ids() - 1, None),
        (ValueError, r"input_ids has 17 tokens.*max_position_embeddings=16", _ids(1, 17), None),
        (
            ValueError,
            r"attention_mask must have the shape of input_ids \(2, 4\)",
            _ids(),
            np.ones((2, 5)),
        ),  # fmt: skip
        (ValueError, "attention_mask entries must be 0", _ids(), 2 * np.ones((2, 4))),
        (TypeError, "attention_mask", _ids(), "all"),
    ],
)
def test_bad_input_raises_naming_it(tiny_module, error, pattern, ids, mask):
    module, params = tiny_module
    with pytest.raises(error, match=pattern):
        module.apply({"params": params}, ids, mask)


def test_shape_checks_also_run_under_jit(tiny_module):
    module, params = tiny_module
    apply = jax.jit(lambda i, m: module.apply({"params": params}, i, m))
    out = apply(jnp.asarray(_ids()), jnp.ones((2, 4), jnp.int32))  # the valid call runs
    assert out.text_embeds.shape == (2, 24)
    with pytest.raises(ValueError, match="input_ids has 17 tokens"):
        apply(jnp.asarray(_ids(1, 17)), None)
    with pytest.raises(ValueError, match="attention_mask"):
        apply(jnp.asarray(_ids()), jnp.ones((2, 3)))
    with pytest.raises(TypeError, match="input_ids"):
        apply(jnp.ones((2, 4)), None)
