"""``jaxdiff convert``: diffusers weights <-> a Flax parameter checkpoint (Orbax).

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

writes the diffusers state dict (:func:`~jaxdiff.interop.unet_to_diffusers_state_dict` /
:func:`~jaxdiff.interop.vae_to_diffusers_state_dict`) and ``config.json`` beside it, so
``out/`` loads with diffusers' ``from_pretrained``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

__all__ = ["CONFIG_FILE", "PARAMS_DIR", "add_parser", "run"]

CONFIG_FILE = "jaxdiff_config.json"
PARAMS_DIR = "params"
_UNETS = ("UNet2DModel", "UNet2DConditionModel")
_VAE = "AutoencoderKL"
_FORMAT = 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``convert`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    parser = subparsers.add_parser(
        "convert",
        help="diffusers weights <-> Flax params (Orbax checkpoint)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        help="weights file with config.json beside it, or a diffusers model directory "
        "(with --to-torch: a directory written by `jaxdiff convert`)",
    )
    parser.add_argument(
        "--to",
        dest="dest",
        required=True,
        help="checkpoint directory to create (with --to-torch: the .safetensors file)",
    )
    parser.add_argument(
        "--to-torch",
        action="store_true",
        help="export a jaxdiff checkpoint back to a diffusers state dict + config.json",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --to")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit code (2 on bad input, message on stderr)."""
    try:
        out = _export(args) if args.to_torch else _import(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        print(f"jaxdiff convert: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _diffusers_config(source: Path) -> dict:
    if source.is_dir():
        path = source / "config.json"
    elif source.is_file():
        path = source.parent / "config.json"
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


def _stored_config(cls, meta: dict, meta_path: Path):
    """``cls(**meta["config"])``, or a ValueError naming ``meta_path`` and the problem."""
    fields = meta.get("config")
    if not isinstance(fields, dict):
        raise ValueError(f"{meta_path} has no 'config' object")
    try:
        return cls(**fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{meta_path}: its 'config' is not a valid {cls.__name__}: {err}") from err


def _class_name(dcfg: dict) -> str:
    name = dcfg.get("_class_name")
    if name is None:  # hand-written config: a VAE has latent_channels, else a UNet
        name = _VAE if "latent_channels" in dcfg else _UNETS[0]
    if name not in (*_UNETS, _VAE):
        raise ValueError(f"config.json has _class_name={name!r}; supported: {[*_UNETS, _VAE]}")
    return name


def _check_dest(dest: Path, overwrite: bool) -> None:
    if dest.exists() and not overwrite:
        raise FileExistsError(f"--to {dest} exists; pass --overwrite to replace it")


def _import(args) -> Path:
    from jaxdiff.interop.diffusers_unet import unet_from_diffusers
    from jaxdiff.interop.diffusers_vae import vae_from_diffusers

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
    return dest


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


def _export(args) -> Path:
    import orbax.checkpoint as ocp

    from jaxdiff.interop.diffusers_config import config_to_diffusers
    from jaxdiff.interop.diffusers_unet import unet_to_diffusers_state_dict
    from jaxdiff.interop.diffusers_vae import vae_config_to_diffusers, vae_to_diffusers_state_dict
    from jaxdiff.interop.state_dict import save_safetensors
    from jaxdiff.nets.config import HighResModelConfig
    from jaxdiff.nets.vae import VAEConfig

    source, dest = Path(args.source).absolute(), Path(args.dest)
    meta_path = source / CONFIG_FILE
    if not meta_path.is_file() or not (source / PARAMS_DIR).is_dir():
        raise FileNotFoundError(
            f"--from {source} is not a `jaxdiff convert` checkpoint (needs {CONFIG_FILE} "
            f"and {PARAMS_DIR}/ inside)"
        )
    if dest.suffix != ".safetensors":
        raise ValueError(f"--to {dest} must be a .safetensors file")
    _check_dest(dest, args.overwrite)
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
    if name == _VAE:
        config = _stored_config(VAEConfig, meta, meta_path)
        state = vae_to_diffusers_state_dict(params, config)
        dcfg = meta.get("diffusers_config") or vae_config_to_diffusers(config)
    elif name in _UNETS:
        config = _stored_config(HighResModelConfig, meta, meta_path)
        state = unet_to_diffusers_state_dict(params, config)
        dcfg = meta.get("diffusers_config") or config_to_diffusers(config)
    else:
        raise ValueError(f"{meta_path} has class_name={name!r}; supported: {[*_UNETS, _VAE]}")
    save_safetensors(state, dest)
    (dest.parent / "config.json").write_text(json.dumps(dcfg, indent=2, sort_keys=True))
    return dest
