"""clip_text_from_transformers: every source layout, and clear errors for bad ones."""

import json

import jax
import numpy as np
import pytest
import torch
import transformers

from jaxdiff.interop.clip_text import clip_text_from_transformers
from jaxdiff.interop.keys import StateDictMismatchError
from tests.nets.test_clip_text import TINY, assert_matches, prompts, tiny_clip, torch_outputs


@pytest.fixture(scope="module")
def plain():
    return tiny_clip(hidden_act="gelu", eos_token_id=5)


@pytest.fixture(scope="module")
def reference(plain):
    """The plain model's params, read from the in-memory pair (checked against torch)."""
    module, params = clip_text_from_transformers((plain.config.to_dict(), plain.state_dict()))
    ids, mask = prompts(5)
    assert_matches(module.apply({"params": params}, ids, mask), torch_outputs(plain, ids, mask))
    return params


def _assert_same(params, reference):
    jax.tree.map(np.testing.assert_array_equal, params, reference)


def test_pytorch_model_bin_folder(plain, reference, tmp_path):
    plain.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(plain.state_dict(), tmp_path / "pytorch_model.bin")
    _assert_same(clip_text_from_transformers(tmp_path)[1], reference)


def test_sharded_safetensors_folder(plain, reference, tmp_path):
    plain.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    _assert_same(clip_text_from_transformers(str(tmp_path))[1], reference)


def test_text_model_prefix_and_position_ids_buffer_of_older_checkpoints(plain, reference):
    """transformers < 5 saved ``text_model.*`` (< 4.31 also the position_ids buffer)."""
    state = {f"text_model.{k}": v for k, v in plain.state_dict().items()}
    state["text_model.embeddings.position_ids"] = torch.arange(TINY["max_position_embeddings"])
    module, params = clip_text_from_transformers((plain.config.to_dict(), state))
    assert not module.with_projection
    _assert_same(params, reference)


def test_full_clip_model_folder_gives_its_text_tower(tmp_path):
    text = transformers.CLIPTextConfig(**TINY, hidden_act="quick_gelu", eos_token_id=2)
    vision = transformers.CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
        image_size=8, patch_size=4,
    )  # fmt: skip
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=20
    )
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(tmp_path)
    module, params = clip_text_from_transformers(tmp_path)
    assert module.with_projection and module.config.projection_dim == 20
    ids, mask = prompts(2)
    with torch.no_grad():
        ref = model.get_text_features(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
        )
    out = module.apply({"params": params}, ids, mask)
    np.testing.assert_allclose(out.text_embeds, ref.pooler_output.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(out.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=0)


def test_with_projection_must_agree_with_the_weights(plain):
    source = (plain.config.to_dict(), plain.state_dict())
    with pytest.raises(StateDictMismatchError, match="text_projection.weight") as info:
        clip_text_from_transformers(source, with_projection=True)
    assert info.value.missing == ["text_projection.weight"] and not info.value.unknown
    projected = tiny_clip("CLIPTextModelWithProjection", eos_token_id=5)
    source = (projected.config.to_dict(), projected.state_dict())
    with pytest.raises(StateDictMismatchError) as info:
        clip_text_from_transformers(source, with_projection=False)
    assert info.value.unknown == ["text_projection.weight"] and not info.value.missing
    assert clip_text_from_transformers(source, with_projection=True)[0].with_projection


def test_missing_unknown_and_misshaped_keys_are_listed_together(plain):
    state = dict(plain.state_dict())
    del state["encoder.layers.1.mlp.fc2.bias"]
    state["encoder.layers.2.mlp.fc1.weight"] = torch.zeros(37, 32)
    state["embeddings.token_embedding.weight"] = torch.zeros(98, 32)
    with pytest.raises(StateDictMismatchError) as info:
        clip_text_from_transformers((plain.config.to_dict(), state))
    err = info.value
    assert err.missing == ["encoder.layers.1.mlp.fc2.bias"]
    assert err.unknown == ["encoder.layers.2.mlp.fc1.weight"]
    assert err.mismatched == {"embeddings.token_embedding.weight": ((99, 32), (98, 32))}
    for name in ("fc2.bias", "layers.2.mlp.fc1.weight", "expected (99, 32), got (98, 32)"):
        assert name in str(err)


def test_a_missing_folder_names_it_and_hub_ids_are_not_downloaded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        clip_text_from_transformers(missing)
    with pytest.raises(FileNotFoundError, match="does not download.*local folder") as info:
        clip_text_from_transformers("openai/clip-vit-large-patch14")
    assert "openai/clip-vit-large-patch14" in str(info.value)


def test_incomplete_folders_say_what_is_missing(plain, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        clip_text_from_transformers(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(plain.config.to_dict()))
    with pytest.raises(FileNotFoundError, match="no weights.*model.safetensors"):
        clip_text_from_transformers(tmp_path)
    with pytest.raises(ValueError, match="is a file"):
        clip_text_from_transformers(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("[1, 2]")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not an object"):
        clip_text_from_transformers(tmp_path)


@pytest.mark.parametrize(
    ("error", "pattern", "call"),
    [
        (TypeError, "source must be", lambda cfg, sd: clip_text_from_transformers(42)),
        (TypeError, "config_dict, state_dict", lambda cfg, sd: clip_text_from_transformers([cfg])),
        (TypeError, r"\(dict, int\)", lambda cfg, sd: clip_text_from_transformers((cfg, 5))),
        (TypeError, "with_projection", lambda cfg, sd: clip_text_from_transformers(
            (cfg, sd), with_projection="yes")),
        (ValueError, "dtype", lambda cfg, sd: clip_text_from_transformers((cfg, sd), dtype="f64")),
        (TypeError, "final_layer_norm.bias", lambda cfg, sd: clip_text_from_transformers(
            (cfg, {**sd, "final_layer_norm.bias": [0.0] * 32}))),
        (ValueError, "num_attention_heads", lambda cfg, sd: clip_text_from_transformers(
            ({**cfg, "num_attention_heads": 5}, sd))),
    ],
)  # fmt: skip
def test_bad_arguments_raise_naming_them(plain, error, pattern, call):
    with pytest.raises(error, match=pattern):
        call(plain.config.to_dict(), plain.state_dict())
