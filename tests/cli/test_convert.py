"""``jaxdiff convert``: diffusers <-> Orbax params, and `jaxdiff train` runs -> diffusers."""

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch

from jaxdiff.cli import convert
from jaxdiff.cli.main import main
from jaxdiff.interop.diffusers_unet import unet_from_diffusers, unet_to_diffusers_state_dict
from jaxdiff.interop.diffusers_vae import vae_from_diffusers
from jaxdiff.interop.state_dict import load_state_dict
from jaxdiff.nets import HighResModelConfig, UNet, bind
from jaxdiff.schedules.config import NoiseSchedulerConfig, build_schedule
from jaxdiff.train import DenoisingObjective, TrainingConfig, array_batches, fit, run_directory

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


# --- `jaxdiff train` runs -> diffusers (and back) ---------------------------------------

TINY_UNET = HighResModelConfig(
    in_channels=1,
    out_channels=1,
    base_channels=8,
    channel_mult=(1,),
    num_res_blocks=1,
    attention_levels=(),  # the middle block still has attention
    norm_num_groups=4,
    attention_head_dim=8,
)
DATA_CFG = {"name": "noise"}
OBJECTIVE_CFG = {"schedule_type": "linear", "num_train_timesteps": 100}


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    """The layout `jaxdiff train` writes: run_directory(...) + fit, checkpoints at steps 1, 2.

    Returns the run directory and the final TrainState (on the host).
    """
    root = tmp_path_factory.mktemp("runs")
    run_dir = run_directory(root, dataclasses.asdict(TINY_UNET), DATA_CFG, OBJECTIVE_CFG)
    module = UNet(TINY_UNET)
    x0, t0 = jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32)
    params = jax.jit(module.init)(jax.random.key(0), x0, t0)["params"]
    data = np.random.default_rng(0).standard_normal((8, 8, 8, 1)).astype(np.float32)
    batches, _ = array_batches({"x": data}, 4, seed=0)
    schedule = build_schedule(NoiseSchedulerConfig(schedule_type="linear", num_train_timesteps=100))
    training = TrainingConfig(
        batch_size=4,
        num_steps=2,
        learning_rate=1e-2,
        ema_decay=0.5,  # EMA and raw parameters differ after 2 steps
        log_interval=1,
        checkpoint_interval=1,
        progress=False,
    )
    objective = DenoisingObjective.create(schedule, "epsilon")
    fitted = fit(
        jax.random.key(1),
        params,
        bind(module).apply_fn,
        objective,
        batches,
        training,
        run_dir=run_dir,
    )
    return run_dir, jax.device_get(fitted.state)


def _export(source, dest, *flags) -> int:
    return main(["convert", "--to-torch", "--from", str(source), "--to", str(dest), *flags])


def test_train_run_round_trips_through_diffusers(train_run, tmp_path, capsys):
    run_dir, state = train_run
    ema, raw = state.ema_params, state.params
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, ema, raw)))
    out = tmp_path / "out"
    weights = out / "diffusion_pytorch_model.safetensors"
    assert _export(run_dir, weights) == 0  # the run directory: its newest step
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"wrote {weights} and {out / 'config.json'} (the EMA parameters")
    assert "of step 2 of" in line and str(run_dir) in line

    # diffusers loads the folder and computes what the jaxdiff UNet computes with the EMA
    model = diffusers.UNet2DModel.from_pretrained(out)
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 1)).astype(np.float32)
    t = np.array([3, 71])
    got = UNet(TINY_UNET).apply({"params": ema}, jnp.asarray(x), jnp.asarray(t))
    with torch.no_grad():
        want = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(t))
    want = want.sample.numpy().transpose(0, 2, 3, 1)
    assert np.abs(want).max() > 1e-2  # a non-trivial output
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=0)

    # and back: `jaxdiff convert --from out/` holds exactly the EMA parameters
    ckpt = tmp_path / "ckpt"
    assert main(["convert", "--from", str(out), "--to", str(ckpt)]) == 0
    back = ocp.StandardCheckpointer().restore(ckpt / convert.PARAMS_DIR)
    assert jax.tree.structure(back) == jax.tree.structure(ema)
    jax.tree.map(np.testing.assert_array_equal, back, ema)


def test_raw_params_and_one_step_directory(train_run, tmp_path, capsys):
    run_dir, state = train_run

    def export(source, name, *flags):
        dest = tmp_path / name / "w.safetensors"
        assert _export(source, dest, *flags) == 0
        return load_state_dict(dest), capsys.readouterr().out

    raw, line = export(run_dir / "checkpoints" / "2", "raw", "--raw-params")
    assert "the raw parameters (not the EMA) of step 2" in line
    want = unet_to_diffusers_state_dict(state.params, TINY_UNET)
    assert raw.keys() == want.keys()
    for key, value in want.items():
        np.testing.assert_array_equal(raw[key], value, err_msg=key)
    first, line = export(run_dir / "checkpoints" / "1", "first")
    assert "the EMA parameters of step 1" in line
    last = unet_to_diffusers_state_dict(state.ema_params, TINY_UNET)
    assert first.keys() == last.keys()
    assert any(not np.array_equal(first[k], last[k]) for k in last)


def _cli(*argv):
    cmd = [sys.executable, "-m", "jaxdiff.cli.main", "convert", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize("existing", ["config.json", "export.safetensors"])
def test_export_never_replaces_a_file_without_overwrite(train_run, tmp_path, existing):
    """An unrelated out/config.json (or the named file) is left byte for byte; nothing written."""
    run_dir, _ = train_run
    out = tmp_path / "out"
    out.mkdir()
    (out / existing).write_bytes(b'{"an unrelated file": [1, 2, 3]}\n')
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    dest = out / "export.safetensors"
    proc = _cli("--to-torch", "--from", str(run_dir), "--to", str(dest))
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()  # one line, naming the file that is in the way
    assert line.startswith("jaxdiff convert: error: ")
    assert line.endswith(f" {out / existing} exists; pass --overwrite to replace it")
    assert proc.stdout == ""
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_overwrite_replaces_both_files(train_run, tmp_path, capsys):
    run_dir, state = train_run
    out = tmp_path / "out"
    out.mkdir()
    weights, dcfg = out / "diffusion_pytorch_model.safetensors", out / "config.json"
    weights.write_bytes(b"old weights")
    dcfg.write_text('{"old": true}')
    assert _export(run_dir, weights, "--overwrite") == 0
    assert capsys.readouterr().out.startswith(f"wrote {weights} and {dcfg} ")
    assert sorted(p.name for p in out.iterdir()) == sorted([weights.name, dcfg.name])  # no temps
    assert json.loads(dcfg.read_text())["_class_name"] == "UNet2DModel"
    want = unet_to_diffusers_state_dict(state.ema_params, TINY_UNET)
    got = load_state_dict(weights)
    assert got.keys() == want.keys()
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_bad_train_runs_exit_2_naming_the_path(train_run, tmp_path, capsys):
    run_dir, _ = train_run
    dest = tmp_path / "out" / "w.safetensors"

    def fails_naming(source, path, *flags):
        assert _export(source, dest, *flags) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("jaxdiff convert: error:") and "\n" not in err, err
        assert str(path) in err, err
        assert not dest.parent.exists()

    # a run that never saved a checkpoint
    fresh = run_directory(tmp_path / "a", dataclasses.asdict(TINY_UNET), DATA_CFG, OBJECTIVE_CFG)
    fails_naming(fresh, fresh)
    # runs of other models: a dict that is no UNet config, and another dataclass
    for model_cfg in ({"hidden_dim": 64}, TrainingConfig()):
        other = run_directory(tmp_path / "b", model_cfg, DATA_CFG, OBJECTIVE_CFG)
        (other / "checkpoints" / "1").mkdir(parents=True)
        fails_naming(other, other / "config.json")
    # a step directory whose run has no config.json
    lone = tmp_path / "c" / "checkpoints" / "7"
    lone.mkdir(parents=True)
    fails_naming(lone, tmp_path / "c" / "config.json")
    # a garbled newest step: named, and left where it is (the run is only read)
    copy = tmp_path / "d"
    shutil.copytree(run_dir, copy)
    for root, _, files in os.walk(copy / "checkpoints" / "2"):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"\x00garbage")
    fails_naming(copy, copy / "checkpoints" / "2")
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == ["1", "2"]
    # --raw-params means nothing for a `jaxdiff convert` checkpoint
    MODELS["AutoencoderKL"].save_pretrained(tmp_path / "hf")
    assert convert.run(_parse(["--from", str(tmp_path / "hf"), "--to", str(tmp_path / "e")])) == 0
    fails_naming(tmp_path / "e", tmp_path / "e", "--raw-params")
    # nor for an import
    args = ["--raw-params", "--from", str(tmp_path / "hf"), "--to", str(tmp_path / "f")]
    assert convert.run(_parse(args)) == 2
    assert "--to-torch" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()
