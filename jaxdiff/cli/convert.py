"""``jaxdiff convert``: diffusers weights <-> Flax parameters (Orbax checkpoints).

Import (default)::

    jaxdiff convert --from model.safetensors --to ckpt/   # config.json beside the file
    jaxdiff convert --from saved_model_dir/ --to ckpt/    # a save_pretrained directory

reads the diffusers config's ``_class_name`` (``UNet2DModel``, ``UNet2DConditionModel``
or ``AutoencoderKL``), converts the weights with
:func:`~jaxdiff.interop.unet_from_diffusers` / :func:`~jaxdiff.interop.vae_from_diffusers`
and writes ``ckpt/params`` (an Orbax ``StandardCheckpointer`` checkpoint of the float32
parameter tree) and ``ckpt/jaxdiff_config.json`` (the class name, the jaxdiff config and
the original diffusers config). Everything is written into a temporary sibling directory
that is renamed to ``ckpt`` at the end, so ``ckpt`` is complete or absent.

Export::

    jaxdiff convert --to-torch --from ckpt/ --to out/diffusion_pytorch_model.safetensors
    jaxdiff convert --to-torch --from runs/<hash>/ --to out/diffusion_pytorch_model.safetensors
    jaxdiff convert --to-torch --from runs/<hash>/checkpoints/20 --to out/step20.safetensors

writes the diffusers state dict (:func:`~jaxdiff.interop.unet_to_diffusers_state_dict` /
:func:`~jaxdiff.interop.vae_to_diffusers_state_dict`) and ``config.json`` beside it.
``--from`` is a ``jaxdiff convert`` checkpoint, a ``jaxdiff train`` run directory (its
newest checkpoint) or one ``checkpoints/<step>`` directory of a run; a run's UNet is
exported with its EMA parameters (``--raw-params``: the raw ones), read as described in
:mod:`jaxdiff.cli.run_checkpoint`. Named ``diffusion_pytorch_model.safetensors``, ``out/``
loads with diffusers' ``from_pretrained`` and ``jaxdiff convert --from out/ --to ckpt/``
imports it back (any other name: ``--from out/<name>.safetensors``). Neither file may
exist unless ``--overwrite`` is given (checked before any work is done); each is written
to a temporary file and renamed into place.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path

__all__ = ["CONFIG_FILE", "PARAMS_DIR", "add_parser", "run"]

CONFIG_FILE = "jaxdiff_config.json"
PARAMS_DIR = "params"
_DIFFUSERS_CONFIG = "config.json"
_UNETS = ("UNet2DModel", "UNet2DConditionModel")
_VAE = "AutoencoderKL"
_FORMAT = 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``convert`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    parser = subparsers.add_parser(
        "convert",
        help="diffusers weights <-> Flax params (Orbax checkpoint)",
        description="Convert diffusers weights <-> Flax parameters (Orbax checkpoints).",
        epilog="With --to-torch, a `jaxdiff train` run exports its UNet's EMA parameters "
        "(--raw-params: the raw ones) as diffusers weights plus config.json beside them. "
        "Name the file diffusion_pytorch_model.safetensors and its folder loads with "
        "diffusers' from_pretrained; `jaxdiff convert --from <that folder> --to ckpt/` "
        "imports it back. Neither file is replaced without --overwrite.",
    )
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        help="weights file with config.json beside it, or a diffusers model directory "
        "(with --to-torch: a directory written by `jaxdiff convert`, a `jaxdiff train` run "
        "directory (its newest checkpoint) or one of its checkpoints/<step> directories)",
    )
    parser.add_argument(
        "--to",
        dest="dest",
        required=True,
        help="checkpoint directory to create (with --to-torch: the .safetensors file; "
        "config.json is written beside it)",
    )
    parser.add_argument(
        "--to-torch",
        action="store_true",
        help="export a jaxdiff checkpoint or a `jaxdiff train` run (EMA parameters) to a "
        "diffusers state dict + config.json",
    )
    parser.add_argument(
        "--raw-params",
        action="store_true",
        help="with --to-torch from a `jaxdiff train` run: export the raw parameters "
        "instead of their EMA",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --to (with --to-torch: and the config.json beside it)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit code (2 on bad input, one line on stderr).

    Errors go through :func:`jaxdiff.cli.console.run_guarded`, as every command's do.
    """
    from jaxdiff.cli.console import run_guarded

    def convert() -> int:
        written, note = _export(args) if args.to_torch else (_import(args), "")
        print(f"wrote {' and '.join(str(p) for p in written)}{note}")
        return 0

    return run_guarded("convert", convert, debug=getattr(args, "debug", False))


def _diffusers_config(source: Path) -> dict:
    if source.is_dir():
        path = source / _DIFFUSERS_CONFIG
    elif source.is_file():
        path = source.parent / _DIFFUSERS_CONFIG
    else:
        raise FileNotFoundError(f"--from {source}: no such file or directory")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: --from needs the diffusers config.json beside the weights "
            "(or a save_pretrained directory)"
        )
    return _read_json(path)


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``; ValueError naming the file if it is not one."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, not an object")
    return data


def _stored_config(cls, fields, where: str):
    """``cls(**fields)``, or a ValueError starting with ``where`` (file and key) and why."""
    if not isinstance(fields, dict):
        raise ValueError(f"{where} is missing or not a JSON object")
    try:
        return cls(**fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where} is not a valid {cls.__name__}: {err}") from err


def _class_name(dcfg: dict) -> str:
    name = dcfg.get("_class_name")
    if name is None:  # hand-written config: a VAE has latent_channels, else a UNet
        name = _VAE if "latent_channels" in dcfg else _UNETS[0]
    if name not in (*_UNETS, _VAE):
        raise ValueError(f"config.json has _class_name={name!r}; supported: {[*_UNETS, _VAE]}")
    return name


def _check_dest(dest: Path, overwrite: bool, what: str = "--to ") -> None:
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{what}{dest} exists; pass --overwrite to replace it")


def _import(args) -> list[Path]:
    from jaxdiff.interop.diffusers_unet import unet_from_diffusers
    from jaxdiff.interop.diffusers_vae import vae_from_diffusers

    if args.raw_params:
        raise ValueError("--raw-params applies to --to-torch exports of `jaxdiff train` runs")
    source, dest = Path(args.source), Path(args.dest)
    _check_dest(dest, args.overwrite)
    dcfg = _diffusers_config(source)
    name = _class_name(dcfg)
    if name == _VAE:
        module, params = vae_from_diffusers(source, {**dcfg, "_class_name": _VAE})
    else:  # without _class_name the UNet importer tells the two kinds apart
        module, params = unet_from_diffusers(source, dcfg)
        name = _UNETS[1] if module.config.conditional else _UNETS[0]
    meta = {
        "format": _FORMAT,
        "class_name": name,
        "config": dataclasses.asdict(module.config),
        "diffusers_config": dcfg,
    }
    _write_checkpoint_atomically(dest, params, meta)
    return [dest]


def _write_checkpoint_atomically(dest: Path, params, meta: dict) -> None:
    import orbax.checkpoint as ocp

    dest = dest.absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(tmp / PARAMS_DIR, params)
        checkpointer.wait_until_finished()
        checkpointer.close()
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        if dest.exists():  # --overwrite: move the old one aside, then swap
            old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dest, old)
            os.replace(tmp, dest)
            _remove(old)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def _export(args) -> tuple[list[Path], str]:
    """Write ``--to`` and the diffusers config.json beside it; returns them and a note."""
    from jaxdiff.cli.run_checkpoint import find_train_checkpoint

    source, dest = Path(args.source).absolute(), Path(args.dest)
    if dest.suffix != ".safetensors":
        raise ValueError(f"--to {dest} must be a .safetensors file")
    dcfg_path = dest.parent / _DIFFUSERS_CONFIG
    _check_dest(dest, args.overwrite)  # both files, before any work
    _check_dest(dcfg_path, args.overwrite, what="the config.json written beside --to, ")
    for path in (dest, dcfg_path):
        if path.is_dir():
            raise ValueError(f"{path} is a directory; --to-torch writes a file there")
    is_convert = (source / CONFIG_FILE).is_file() and (source / PARAMS_DIR).is_dir()
    run = None if is_convert else find_train_checkpoint(source)
    if run is not None:
        state, dcfg, note = _train_run_state_dict(run, raw=args.raw_params)
    elif is_convert:
        if args.raw_params:
            raise ValueError(
                f"--raw-params applies to `jaxdiff train` runs; --from {source} is a "
                "`jaxdiff convert` checkpoint (it holds one parameter set)"
            )
        (state, dcfg), note = _checkpoint_state_dict(source), ""
    else:
        raise FileNotFoundError(
            f"--from {source} is not a `jaxdiff convert` checkpoint (needs {CONFIG_FILE} "
            f"and {PARAMS_DIR}/ inside), a `jaxdiff train` run directory (config.json and "
            "checkpoints/) or one of its checkpoints/<step> directories"
        )
    _write_export(dest, state, dcfg)
    return [dest, dcfg_path], note


def _write_export(dest: Path, state: dict, dcfg: dict) -> None:
    """The safetensors file and config.json, each via a temporary file and ``os.replace``."""
    from jaxdiff.interop.state_dict import save_safetensors

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{_DIFFUSERS_CONFIG}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(json.dumps(dcfg, indent=2, sort_keys=True))
        save_safetensors(state, dest)  # atomic itself: a temporary file renamed over dest
        os.replace(tmp, dest.parent / _DIFFUSERS_CONFIG)
    finally:
        if tmp.exists():
            tmp.unlink()


def _train_run_state_dict(run, *, raw: bool) -> tuple[dict, dict, str]:
    """The diffusers state dict and config of a ``jaxdiff train`` checkpoint, and a note."""
    from jaxdiff.cli.run_checkpoint import restore_train_params
    from jaxdiff.interop.diffusers_config import config_to_diffusers
    from jaxdiff.interop.diffusers_unet import unet_to_diffusers_state_dict
    from jaxdiff.nets.config import HighResModelConfig

    fields = _read_json(run.config_path).get("model")
    kind = fields.get("__class__", HighResModelConfig.__name__) if isinstance(fields, dict) else ""
    if kind != HighResModelConfig.__name__:  # canonical_config names a dataclass's class
        raise ValueError(
            f"{run.config_path}: the run's 'model' is {kind or 'missing'}, not a jaxdiff UNet "
            "(HighResModelConfig); only UNets export to diffusers"
        )
    fields = {k: v for k, v in fields.items() if k != "__class__"}
    config = _stored_config(HighResModelConfig, fields, f"{run.config_path}: its 'model'")
    params = restore_train_params(run, ema=not raw)
    what = "raw parameters (not the EMA)" if raw else "EMA parameters"
    note = f" (the {what} of step {run.step} of the `jaxdiff train` run {run.run_dir})"
    return unet_to_diffusers_state_dict(params, config), config_to_diffusers(config), note


def _checkpoint_state_dict(source: Path) -> tuple[dict, dict]:
    """The diffusers state dict and config of a ``jaxdiff convert`` checkpoint."""
    import orbax.checkpoint as ocp

    from jaxdiff.interop.diffusers_config import config_to_diffusers
    from jaxdiff.interop.diffusers_unet import unet_to_diffusers_state_dict
    from jaxdiff.interop.diffusers_vae import vae_config_to_diffusers, vae_to_diffusers_state_dict
    from jaxdiff.nets.config import HighResModelConfig
    from jaxdiff.nets.vae import VAEConfig

    meta_path = source / CONFIG_FILE
    meta = _read_json(meta_path)
    name = meta.get("class_name")
    checkpointer = ocp.StandardCheckpointer()
    try:
        params = checkpointer.restore(source / PARAMS_DIR)
    except Exception as err:  # noqa: BLE001 - Orbax/TensorStore raise many kinds
        raise ValueError(
            f"{source / PARAMS_DIR} is not a readable parameter checkpoint (truncated or "
            f"corrupt): {type(err).__name__}: {str(err)[:200]}"
        ) from err
    finally:
        checkpointer.close()
    where = f"{meta_path}: its 'config'"
    if name == _VAE:
        config = _stored_config(VAEConfig, meta.get("config"), where)
        state = vae_to_diffusers_state_dict(params, config)
        return state, meta.get("diffusers_config") or vae_config_to_diffusers(config)
    if name in _UNETS:
        config = _stored_config(HighResModelConfig, meta.get("config"), where)
        state = unet_to_diffusers_state_dict(params, config)
        return state, meta.get("diffusers_config") or config_to_diffusers(config)
    raise ValueError(f"{meta_path} has class_name={name!r}; supported: {[*_UNETS, _VAE]}")
