"""Text encoders: the offline HashTextEncoder and CLIPTextEncoder against transformers."""

import json
import sys

import jax
import numpy as np
import pytest
import torch
import transformers

from jaxdiff.interop.clip_text import clip_text_from_transformers
from jaxdiff.nets.text_encoder import CLIPTextEncoder, HashTextEncoder, TextEncoder, TextEncoding
from tests.nets.test_clip_text import tiny_clip, torch_outputs

ATOL = 1e-5
BOS, EOS, PAD = 256, 257, 258  # HashTextEncoder's special ids


@pytest.fixture(scope="module")
def hashed():
    return HashTextEncoder(max_length=16)


def _assert_same(a: TextEncoding, b: TextEncoding, atol=1e-6):
    for name in ("tokens", "pooled", "mask"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=atol, rtol=0)


# --- HashTextEncoder ------------------------------------------------------------------


def test_hash_shapes_dtypes_and_mask(hashed):
    out = hashed.encode(["a photo", "", "é"])
    assert isinstance(out, TextEncoding) and isinstance(hashed, TextEncoder)
    assert (hashed.max_length, hashed.dim, hashed.pooled_dim) == (16, 64, 32)
    assert out.tokens.shape == (3, 16, 64) and out.tokens.dtype == np.float32
    assert out.pooled.shape == (3, 32) and out.pooled.dtype == np.float32
    assert out.mask.dtype == np.int32
    np.testing.assert_array_equal(out.mask.sum(1), [9, 2, 4])  # BOS + UTF-8 bytes + EOS
    assert np.isfinite(out.tokens).all() and np.isfinite(out.pooled).all()


def test_hash_is_its_model_on_byte_ids(hashed):
    """The oracle: ids written by hand (BOS, UTF-8 bytes, EOS, padding) through the model."""
    ids = np.full((2, 16), PAD, np.int32)
    ids[0, :5] = [BOS, 0xC3, 0xA9, ord("x"), EOS]  # "éx"
    ids[1, :2] = [BOS, EOS]  # ""
    ref = jax.jit(hashed.module.apply)({"params": hashed.params}, ids)
    out = hashed.encode(["éx", ""])
    np.testing.assert_allclose(out.tokens, ref.last_hidden_state, atol=1e-6, rtol=0)
    np.testing.assert_allclose(out.pooled, ref.text_embeds, atol=1e-6, rtol=0)
    # pooled at the first EOS (eos id 257 is not the legacy 2): position 4, then 1
    np.testing.assert_allclose(ref.pooled, ref.last_hidden_state[[0, 1], [4, 1]], atol=0)


def test_hash_is_deterministic_and_batch_independent(hashed):
    batch = hashed.encode(["x", "a photo", ""])
    alone = hashed.encode(["a photo"])
    _assert_same(alone, jax.tree.map(lambda a: a[1:2], batch))
    _assert_same(hashed.encode([""]), jax.tree.map(lambda a: a[2:], batch))
    _assert_same(HashTextEncoder(max_length=16).encode(["a photo"]), alone, atol=0)
    assert not np.allclose(batch.pooled[0], batch.pooled[1])  # different prompts
    assert not np.allclose(batch.tokens[1, 3:], batch.tokens[2, 3:])  # ... and token states
    other_seed = HashTextEncoder(max_length=16, seed=1).encode(["a photo"])
    assert not np.allclose(other_seed.pooled, alone.pooled)


def test_hash_over_long_prompt_raises_unless_truncate():
    short = HashTextEncoder(max_length=8)
    short.encode(["abcdef"])  # 6 = max_length - 2 bytes fit
    with pytest.raises(ValueError, match=r"prompts\[1\] has 7 UTF-8 bytes.*max_length - 2 = 6"):
        short.encode(["ok", "abcdefg"])
    short.encode(["abcdé"])  # é is two bytes: 6 in all
    with pytest.raises(ValueError, match=r"prompts\[0\] has 7 UTF-8"):
        short.encode(["abcdeé"])
    cut = HashTextEncoder(max_length=8, truncate=True)
    _assert_same(cut.encode(["abcdefg", "ok"]), short.encode(["abcdef", "ok"]), atol=0)


@pytest.mark.parametrize(
    "prompts, error, match",
    [
        ("a photo", TypeError, r"single str 'a photo'.*\[prompt\]"),
        (None, TypeError, "prompts must be a list or tuple of str, got NoneType"),
        ([], ValueError, "at least one prompt"),
        (["a", 3], TypeError, r"prompts\[1\] must be a str, got int"),
        ([b"a"], TypeError, r"prompts\[0\] must be a str, got bytes"),
    ],
)
def test_bad_prompts(hashed, prompts, error, match):
    with pytest.raises(error, match=match):
        hashed.encode(prompts)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(max_length=1), ValueError, "max_length=1 is out of range"),
        (dict(max_length=78), ValueError, "max_length <= 77"),
        (dict(max_length=8.0), TypeError, "max_length must be an int"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(truncate="yes"), TypeError, "truncate must be a bool"),
    ],
)
def test_bad_hash_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        HashTextEncoder(**kwargs)


def test_protocol_is_structural():
    class Duck:
        max_length, dim, pooled_dim = 4, 2, 2

        def encode(self, prompts):
            raise NotImplementedError

    assert isinstance(Duck(), TextEncoder)
    assert not isinstance(object(), TextEncoder)
    assert not isinstance(HashTextEncoder.encode, TextEncoder)


# --- CLIPTextEncoder against transformers ---------------------------------------------

# a tiny byte-level BPE vocabulary in CLIP's layout: characters, characters ending a word
# (suffix </w>), merged pieces, then <|startoftext|> and <|endoftext|> as the last ids
_CHARS, _MERGES = "ahopt", ["p h", "ph o", "pho t", "phot o</w>"]
_PROMPTS = ["a photo", "", "hat pot a photo hat"]  # the last is truncated at 8 tokens
_CONTEXT = 8


def _write_tokenizer(folder):
    """Write vocab.json + merges.txt, load them with CLIPTokenizer and save_pretrained."""
    words = [*_CHARS, *(c + "</w>" for c in _CHARS), *(m.replace(" ", "") for m in _MERGES)]
    vocab = {w: i for i, w in enumerate([*words, "<|startoftext|>", "<|endoftext|>"])}
    raw = folder / "raw"
    raw.mkdir()
    (raw / "vocab.json").write_text(json.dumps(vocab))
    (raw / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n")
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(raw), local_files_only=True)
    assert tokenizer("a photo")["input_ids"] == [len(vocab) - 2, 5, 13, len(vocab) - 1]
    for name in ("tokenizer", "tokenizer_2"):
        tokenizer.save_pretrained(folder / name)
    return tokenizer, len(vocab)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A diffusers-style folder: tokenizer/ beside two text encoders.

    ``text_encoder/``: CLIPTextModelWithProjection pooling at the first EOS (id 15).
    ``text_encoder_2/``: the legacy argmax rule (eos_token_id 2) and use_attention_mask,
    beside ``tokenizer_2/`` (SDXL's layout; here a copy of the same tokenizer).
    """
    root = tmp_path_factory.mktemp("pipeline")
    tokenizer, vocab = _write_tokenizer(root)
    sizes = dict(
        vocab_size=vocab, max_position_embeddings=_CONTEXT, bos_token_id=vocab - 2,
        pad_token_id=vocab - 1,
    )  # fmt: skip
    first = tiny_clip("CLIPTextModelWithProjection", eos_token_id=vocab - 1, **sizes)
    legacy = tiny_clip("CLIPTextModelWithProjection", seed=1, eos_token_id=2, **sizes)
    legacy.config.use_attention_mask = True
    first.save_pretrained(root / "text_encoder")
    legacy.save_pretrained(root / "text_encoder_2")
    return root, tokenizer, {"text_encoder": first, "text_encoder_2": legacy}


@pytest.mark.parametrize("folder", ["text_encoder", "text_encoder_2"])
def test_clip_matches_transformers_tokenizer_and_model(pipeline, folder):
    root, tokenizer, models = pipeline
    encoder = CLIPTextEncoder.from_pretrained(root / folder)
    assert isinstance(encoder, TextEncoder)
    assert (encoder.max_length, encoder.dim, encoder.pooled_dim) == (_CONTEXT, 32, 24)
    assert encoder.use_attention_mask is (folder == "text_encoder_2")
    batch = tokenizer(
        _PROMPTS, padding="max_length", max_length=_CONTEXT, truncation=True, return_tensors="pt"
    )
    mask = batch["attention_mask"] if encoder.use_attention_mask else None  # as diffusers
    with torch.no_grad():
        ref = models[folder](input_ids=batch["input_ids"], attention_mask=mask)
    out = encoder.encode(_PROMPTS)
    np.testing.assert_array_equal(out.mask, batch["attention_mask"].numpy())
    np.testing.assert_allclose(out.tokens, ref.last_hidden_state.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(out.pooled, ref.text_embeds.numpy(), atol=ATOL, rtol=0)


def test_clip_without_projection_pools_the_hidden_state():
    model = tiny_clip(eos_token_id=5)  # CLIPTextModel: no text_projection
    module, params = clip_text_from_transformers((model.config.to_dict(), model.state_dict()))
    ids = np.array([[0, 7, 9, 5, 5, 5], [0, 5, 5, 5, 5, 5]])
    mask = (np.arange(6) <= np.array([[3], [1]])).astype(np.int64)
    encoder = CLIPTextEncoder(module, params, lambda p: (ids, mask), max_length=6)
    assert (encoder.dim, encoder.pooled_dim) == (32, 32)
    ref = torch_outputs(model, ids)
    out = encoder.encode(["first", "second"])
    np.testing.assert_allclose(out.tokens, ref["last_hidden_state"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(out.pooled, ref["pooled"], atol=ATOL, rtol=0)


def test_clip_max_length_and_tokenizer_in_the_model_folder(pipeline, tmp_path):
    root, tokenizer, models = pipeline
    models["text_encoder"].save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    encoder = CLIPTextEncoder.from_pretrained(tmp_path, max_length=6)
    out = encoder.encode(_PROMPTS)
    assert out.tokens.shape == (3, 6, 32) and out.pooled.shape == (3, 24)
    np.testing.assert_array_equal(out.mask.sum(1), [4, 2, 6])
    with pytest.raises(ValueError, match="max_length=9 is out of range"):
        CLIPTextEncoder.from_pretrained(tmp_path, max_length=9)


def test_clip_missing_tokenizer_names_the_places_looked(pipeline, tmp_path):
    _, _, models = pipeline
    models["text_encoder"].save_pretrained(tmp_path / "text_encoder")
    with pytest.raises(FileNotFoundError, match=r"no tokenizer.*tokenizer'\]"):
        CLIPTextEncoder.from_pretrained(tmp_path / "text_encoder")


def test_clip_without_transformers_says_how_to_install(pipeline, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers fails
    with pytest.raises(ImportError, match="pip install transformers"):
        CLIPTextEncoder.from_pretrained(pipeline[0] / "text_encoder")


def test_clip_bad_construction_and_tokenize_output(hashed):
    module, params = hashed.module, hashed.params
    with pytest.raises(TypeError, match="module must be a CLIPTextModel, got dict"):
        CLIPTextEncoder({}, params, lambda p: p)
    with pytest.raises(TypeError, match="tokenize must be callable"):
        CLIPTextEncoder(module, params, "clip")
    with pytest.raises(TypeError, match="use_attention_mask must be a bool"):
        CLIPTextEncoder(module, params, lambda p: p, use_attention_mask=1)
    short = np.zeros((1, 5), np.int32)
    encoder = CLIPTextEncoder(module, params, lambda p: (short, short), max_length=6)
    with pytest.raises(ValueError, match=r"ids of shape \(1, 5\).*expected integers of shape"):
        encoder.encode(["x"])
    with pytest.raises(TypeError, match=r"\[prompt\]"):
        encoder.encode("x")
