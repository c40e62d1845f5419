"""``jaxdiff convert``: diffusers save_pretrained -> Orbax params -> diffusers, on tiny models."""

import argparse
import json
import os

import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch

from jaxdiff.cli import convert
from jaxdiff.interop.diffusers_unet import unet_from_diffusers
from jaxdiff.interop.diffusers_vae import vae_from_diffusers
from jaxdiff.interop.state_dict import load_state_dict

BASE = dict(sample_size=16, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8)


def _models():
    torch.manual_seed(0)
    return {
        "UNet2DModel": diffusers.UNet2DModel(
            **BASE,
            in_channels=3,
            out_channels=3,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=8,
        ),
        "UNet2DConditionModel": diffusers.UNet2DConditionModel(
            **BASE,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
        ),
        "AutoencoderKL": diffusers.AutoencoderKL(
            **BASE,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
        ),
    }


MODELS = _models()


def _parse(argv):
    parser = argparse.ArgumentParser(prog="jaxdiff")
    convert.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["convert", *argv])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip_through_orbax(name, tmp_path):
    model = MODELS[name]
    model.save_pretrained(tmp_path / "hf")
    weights = tmp_path / "hf" / "diffusion_pytorch_model.safetensors"
    source = weights if name == "AutoencoderKL" else tmp_path / "hf"  # file and directory
    ckpt = tmp_path / "ckpt"
    assert convert.run(_parse(["--from", str(source), "--to", str(ckpt)])) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "hf"]  # no temp dirs left
    meta = json.loads((ckpt / convert.CONFIG_FILE).read_text())
    assert meta["class_name"] == name

    # the checkpoint holds exactly the importer's parameters
    loader = vae_from_diffusers if name == "AutoencoderKL" else unet_from_diffusers
    module, ref_params = loader(model)
    params = ocp.StandardCheckpointer().restore(ckpt / convert.PARAMS_DIR)
    assert jax.tree.structure(params) == jax.tree.structure(ref_params)
    jax.tree.map(np.testing.assert_array_equal, params, ref_params)
    assert meta["config"]["dtype"] == module.config.dtype

    out = tmp_path / "out" / "diffusion_pytorch_model.safetensors"
    assert convert.run(_parse(["--to-torch", "--from", str(ckpt), "--to", str(out)])) == 0
    exported, original = load_state_dict(out), load_state_dict(weights)
    assert exported.keys() == original.keys()
    for key, value in original.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    reloaded = type(model).from_pretrained(tmp_path / "out")  # config.json written beside
    for key, value in model.config.items():  # JSON turns tuples into lists
        if key.startswith("_"):
            continue
        assert json.loads(json.dumps(reloaded.config[key])) == json.loads(json.dumps(value))


def test_vae_checkpoint_decodes_like_diffusers(tmp_path):
    vae = MODELS["AutoencoderKL"]
    vae.save_pretrained(tmp_path / "hf")
    assert convert.run(_parse(["--from", str(tmp_path / "hf"), "--to", str(tmp_path / "c")])) == 0
    params = ocp.StandardCheckpointer().restore(tmp_path / "c" / convert.PARAMS_DIR)
    module, _ = vae_from_diffusers(vae)
    z = np.random.default_rng(0).standard_normal((1, 8, 8, 4)).astype(np.float32)
    got = module.apply({"params": params}, jnp.asarray(z), method=module.decode)
    with torch.no_grad():
        want = vae.decode(torch.from_numpy(z.transpose(0, 3, 1, 2).copy())).sample.numpy()
    np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), atol=1e-4, rtol=0)


def test_existing_destination_needs_overwrite(tmp_path, capsys):
    MODELS["AutoencoderKL"].save_pretrained(tmp_path / "hf")
    args = ["--from", str(tmp_path / "hf"), "--to", str(tmp_path / "c")]
    assert convert.run(_parse(args)) == 0
    assert convert.run(_parse(args)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert convert.run(_parse([*args, "--overwrite"])) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "hf"]


def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    assert convert.run(_parse(["--from", str(tmp_path / "m"), "--to", str(tmp_path / "c")])) == 2
    assert "ControlNetModel" in capsys.readouterr().err
    assert convert.run(_parse(["--from", str(tmp_path / "nope"), "--to", str(tmp_path / "c")])) == 2
    assert "nope" in capsys.readouterr().err
    args = ["--to-torch", "--from", str(tmp_path / "m"), "--to", str(tmp_path / "x.safetensors")]
    assert convert.run(_parse(args)) == 2
    assert "jaxdiff_config.json" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("data", [b"", b"\x08\x00\x00\x00\x00\x00\x00\x00{", b"\xff" * 64])
def test_unreadable_weights_exit_2_with_one_line(tmp_path, capsys, data):
    """Empty, truncated or random-byte weights: a one-line error naming the file, no traceback."""
    MODELS["AutoencoderKL"].save_pretrained(tmp_path / "hf")
    weights = tmp_path / "hf" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(data)
    assert convert.run(_parse(["--from", str(weights), "--to", str(tmp_path / "c")])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxdiff convert: error:") and "\n" not in err
    assert str(weights) in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


def test_unreadable_checkpoint_exports_exit_2_with_one_line(tmp_path, capsys):
    """--to-torch from a checkpoint with bad JSON, a bad config or garbled params."""
    MODELS["AutoencoderKL"].save_pretrained(tmp_path / "hf")
    ckpt = tmp_path / "c"
    assert convert.run(_parse(["--from", str(tmp_path / "hf"), "--to", str(ckpt)])) == 0
    meta_path = ckpt / convert.CONFIG_FILE
    meta = json.loads(meta_path.read_text())
    out = tmp_path / "out" / "w.safetensors"
    args = ["--to-torch", "--from", str(ckpt), "--to", str(out)]

    def fails_naming(path):
        assert convert.run(_parse(args)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("jaxdiff convert: error:") and "\n" not in err
        assert str(path) in err, err
        assert not out.exists()

    meta_path.write_text("{not json")
    fails_naming(meta_path)
    meta_path.write_text(json.dumps({**meta, "config": {"no_such_field": 1}}))
    fails_naming(meta_path)
    meta_path.write_text(json.dumps(meta))
    for root, _, files in os.walk(ckpt / convert.PARAMS_DIR):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"\x00garbage")
    fails_naming(ckpt / convert.PARAMS_DIR)
