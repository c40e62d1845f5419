"""``jaxdiff style``: OT-CFM style transfer -- ``train`` (Hydra), ``transfer``, ``preprocess``.

The PyTorch original's three scripts as one command::

    jaxdiff style train model.hidden_dim=384 training.lr=1e-4 data.source=folder data.root=raw_data
    jaxdiff style transfer --checkpoint outputs/<hash> --input img.png --output out.png
        --source-style 0 --target-style 1 --num-steps 20 --solver rk4   (one line)
    jaxdiff style preprocess --input raw_data --output latents.npz [--vae path/to/vae]

``train`` reads Hydra YAML (``configs/style``; the original's ``config.json`` fields are
keys: ``model.hidden_dim``, ``model.num_layers``, ``model.num_styles``,
``training.batch_size``, ``training.lr``, ``training.stage1_epochs``,
``training.label_drop_prob``). It trains a
:class:`~jaxdiff.nets.StyleVelocity` (IsoNext + style ids) with OT-CFM
(exact minibatch pairs, within each style by default: torchcfm#117 reports global
pairing hurting conditional generation) and label dropout to the null style id, in
``<output_dir>/<hash>/`` (:func:`jaxdiff.train.run_directory`: the hash covers
``model``, ``data`` and ``objective``, not ``training``) with Orbax checkpoints: a
killed run resumes, a finished run is not trained again, more epochs continue it.

An epoch is one pass over the training images: ``N // batch_size`` optimiser steps
(the short last batch dropped, :func:`jaxdiff.train.array_batches`); a
``training.num_steps`` set (not null) replaces ``stage1_epochs``.

Data: ``data.source=digits`` (default, offline: :func:`jaxdiff.data.digit_styles.
digit_styles`, 8 x 8 x ``data.scale``) or ``folder`` (``data.root/style_k/*.jpg``,
:func:`~jaxdiff.data.style_folders.load_style_folders`; ``data.image_size`` resizes);
``data.latents=pixel`` trains on the images, ``vae`` on the posterior means of the
diffusers VAE weights at ``data.vae`` (encoded once into the run's ``latents.npz``).
bf16: ``model.dtype=bfloat16`` (IsoNext's compute dtype; parameters stay float32).
The run writes ``style_model.json`` (what ``transfer`` needs), ``loss.png`` and
``metrics.json`` (final loss, steps).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

from jaxdiff._atomic import atomic_write_text
from jaxdiff.cli.config import (
    ConfigError,
    check_output_dir,
    checking,
    compose_config,
    help_epilog,
    schema_from,
)

__all__ = [
    "DESCRIPTION",
    "TRAIN_DESCRIPTION",
    "add_parser",
    "compose",
    "prepare",
    "run",
    "schema",
    "train_style",
]

DESCRIPTION = """OT-CFM style transfer with an IsoNext velocity network (AdaGN style input).
  train       train on two-style digits (default) or raw_data/style_k/*.jpg; Hydra overrides
  transfer    invert an image (or a folder) under one style, regenerate under another
  preprocess  raw_data/style_k/*.jpg -> a latent .npz (pixels, or a diffusers VAE)"""

TRAIN_DESCRIPTION = """Train the style model, an IsoNext velocity network told a style id, with
OT-CFM (exact minibatch pairs within each style) and label dropout for classifier-free
guidance.
Data: two-style digits (default, offline) or data.source=folder data.root=raw_data
(raw_data/style_k/*.jpg), in pixel space or data.latents=vae data.vae=<diffusers VAE>.
An epoch (training.stage1_epochs) is one pass over the images, N // batch_size steps.
Each configuration trains in <output_dir>/<config hash>/ with checkpoints: a killed
run resumes, a finished run is not trained again. bf16: model.dtype=bfloat16."""

_RENAME = {"learning_rate": "lr", "epochs": "stage1_epochs"}
_DERIVED = ("in_channels", "out_channels", "style_dim")  # set from the data


def _model_schema() -> type:
    """``model``: ``num_styles`` and IsoNextConfig's fields less those set by the data."""
    from jaxdiff.nets import IsoNextConfig

    base = schema_from(IsoNextConfig, "IsoNextSchema")
    fields = [("num_styles", int, dataclasses.field(default=2))]
    for f in dataclasses.fields(base):
        if f.name not in _DERIVED:
            fields.append((f.name, f.type, dataclasses.field(default=f.default)))
    return dataclasses.make_dataclass("StyleModelSchema", fields)


@dataclasses.dataclass
class DataSchema:
    """``data``: which images, in which space (see the module docstring)."""

    source: str = "digits"
    root: Optional[str] = None  # noqa: UP045 - OmegaConf
    image_size: Optional[int] = None  # noqa: UP045 - OmegaConf
    latents: str = "pixel"
    vae: Optional[str] = None  # noqa: UP045 - OmegaConf
    scale: int = 1
    sigma: float = 0.5
    test_fraction: float = 0.2
    seed: int = 0


@dataclasses.dataclass
class ObjectiveSchema:
    """``objective``: the flow-matching path, pairing and time sampler."""

    coupling: str = "exact"
    class_conditional: bool = True
    sigma: float = 0.0
    time_sampler: str = "uniform"


def schema() -> type:
    """The app's structured config: model, data, objective, training, output_dir."""
    from jaxdiff.train.config import TrainingConfig

    base = schema_from(TrainingConfig, "StyleTrainingBase", rename=_RENAME)
    training = dataclasses.make_dataclass(
        "StyleTrainingSchema",
        [("label_drop_prob", float, dataclasses.field(default=0.15))],
        bases=(base,),
    )
    parts = {"model": _model_schema(), "data": DataSchema, "objective": ObjectiveSchema}
    parts["training"] = training
    fields = [(k, v, dataclasses.field(default_factory=v)) for k, v in parts.items()]
    fields.append(("output_dir", str, dataclasses.field(default="outputs")))
    return dataclasses.make_dataclass("StyleSchema", fields)


def compose(overrides: list[str], config_name: str = "config") -> dict:
    """The composed, schema-checked ``style`` config (a plain dict); ConfigError if bad."""
    return compose_config("style", overrides, config_name, schema())


def add_parser(subparsers, parents=()):
    """Register ``jaxdiff style {train, transfer, preprocess}``; returns the parser."""
    import argparse

    raw = argparse.RawDescriptionHelpFormatter
    parser = subparsers.add_parser(
        "style",
        help="OT-CFM style transfer: train, transfer, preprocess",
        description=DESCRIPTION,
        formatter_class=raw,
    )
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="style_command", required=True, metavar="action")
    train = sub.add_parser(
        "train",
        help="train the style model (Hydra overrides)",
        description=TRAIN_DESCRIPTION,
        epilog=help_epilog("style"),
        formatter_class=raw,
        parents=[*parents, debug],
    )
    train.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. training.lr=3e-4")
    tr = sub.add_parser(
        "transfer",
        parents=[debug],
        help="transfer an image or a folder to another style",
        description="Invert each image to noise under --source-style (flow ODE t: 0 -> 1), "
        "regenerate under --target-style (t: 1 -> 0); write PNGs; print NFE and time.",
    )
    tr.add_argument("--checkpoint", required=True, help="a `jaxdiff style train` run directory")
    tr.add_argument("--input", required=True, help="an image file, or a folder of them")
    tr.add_argument("--output", required=True, help="a .png path, or a folder (folder input)")
    tr.add_argument("--source-style", type=int, required=True, help="style index of the input")
    tr.add_argument("--target-style", type=int, required=True, help="style index to produce")
    tr.add_argument("--num-steps", type=int, default=20, help="ODE steps per leg (default 20)")
    tr.add_argument("--solver", default="rk4", help="euler | midpoint | heun | rk4 (default)")
    tr.add_argument("--guidance-scale", type=float, default=1.0, help="CFG weight (1: none)")
    tr.add_argument("--batch-size", type=int, default=16, help="images per model batch")
    pre = sub.add_parser(
        "preprocess",
        parents=[debug],
        help="images -> a latent .npz (atomic)",
        description="Read raw_data/style_k/*.{jpg,jpeg,png}; write latents (pixels, or the "
        "posterior means of diffusers VAE weights) with their style labels to one .npz.",
    )
    pre.add_argument("--input", required=True, help="folder holding style_0/, style_1/, ...")
    pre.add_argument("--output", required=True, help="the .npz to write")
    pre.add_argument("--vae", help="diffusers AutoencoderKL weights (a save_pretrained folder)")
    pre.add_argument("--image-size", type=int, help="resize every image to this square side")
    pre.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    return parser


def run(args) -> int:
    """Dispatch ``jaxdiff style <action>``; returns the exit code."""
    from jaxdiff.cli import style_transfer

    if args.style_command == "transfer":
        return style_transfer.run_transfer(args)
    if args.style_command == "preprocess":
        return style_transfer.run_preprocess(args)
    from jaxdiff.cli.app import run_app

    return run_app(
        "style",
        args,
        compose=compose,
        prepare=prepare,
        execute=train_style,
        files=(style_transfer.CARD, "loss.png", "metrics.json"),
    )


def _training(training: dict):
    from jaxdiff.train import TrainingConfig

    kwargs = {k: v for k, v in training.items() if k != "label_drop_prob"}
    for field, key in _RENAME.items():
        kwargs[field] = kwargs.pop(key)
    return TrainingConfig(**kwargs)


def _check_data(data: dict, num_styles: int) -> None:
    from jaxdiff._validation import check_choice, check_int_range
    from jaxdiff.data.style_folders import _style_dirs

    check_choice("source", data["source"], ("digits", "folder"))
    check_choice("latents", data["latents"], ("pixel", "vae"))
    if data["image_size"] is not None:
        check_int_range("image_size", data["image_size"], 1)
    if data["source"] == "digits":
        if num_styles != 2 or data["image_size"] is not None or data["root"] is not None:
            raise ValueError(
                "source='digits' has 2 styles of side 8 * data.scale: it takes "
                "model.num_styles=2, no data.image_size and no data.root"
            )
    elif data["root"] is None:
        raise ValueError("root is needed with source='folder' (root/style_k/*.jpg)")
    elif not Path(data["root"]).is_dir():
        raise ValueError(f"root={data['root']!r} is not a folder (root/style_k/*.jpg)")
    elif (found := len(_style_dirs(Path(data["root"])))) != num_styles:
        raise ValueError(f"root={data['root']!r} has {found} styles, model.num_styles={num_styles}")
    vae = data["vae"]
    if vae is None and data["latents"] == "vae":
        raise ValueError("vae=None: latents='vae' needs the path of diffusers VAE weights")
    if vae is not None and data["latents"] != "vae":
        raise ValueError(f"vae={vae!r} is only used with latents='vae' (pixel space now)")
    if vae is not None and not Path(vae).exists():
        raise ValueError(f"vae={vae!r} does not exist (diffusers VAE weights)")


def prepare(cfg: dict) -> dict:
    """Build every library object of ``cfg`` before any work; ConfigError naming the key.

    Returns ``{"isonext", "num_styles", "objective", "training", "run_dir"}``; the
    IsoNext config's channels are set from the data by :func:`train_style`.
    """
    from jaxdiff._validation import check_int_range, check_real
    from jaxdiff.flows import cfm_objective, ot_cfm_objective
    from jaxdiff.nets import IsoNextConfig
    from jaxdiff.train import config_hash

    model = dict(cfg["model"])
    k = model.pop("num_styles")
    with checking("model", cfg["model"]):
        check_int_range("num_styles", k, 1)
        isonext = IsoNextConfig(in_channels=1, out_channels=1, style_dim=k, **model)
    with checking("data", cfg["data"]):
        _check_data(cfg["data"], k)
    with checking("training", cfg["training"], _RENAME):
        training = _training(cfg["training"])
        drop = check_real("label_drop_prob", cfg["training"]["label_drop_prob"], 0.0)
        if drop >= 1.0:
            raise ValueError(f"label_drop_prob={drop} is out of range; allowed: [0, 1)")
    obj = cfg["objective"]
    with checking("objective", obj):
        build = {"exact": ot_cfm_objective, "independent": cfm_objective}.get(obj["coupling"])
        if build is None:
            raise ValueError(f"coupling={obj['coupling']!r}: allowed exact, independent")
        objective = build(
            obj["sigma"],
            num_classes=k,
            label_drop_prob=drop,
            class_conditional=obj["class_conditional"],  # independent pairs refuse True
            time_sampler=obj["time_sampler"],
        )
    root = check_output_dir(cfg["output_dir"])
    run_dir = root / config_hash(cfg["model"], cfg["data"], obj)
    return dict(
        isonext=isonext, num_styles=k, objective=objective, training=training, run_dir=run_dir
    )


def _latents(data: dict, run_dir: Path, say):
    """``(image_shape, StyleLatents)`` of the configured data (a VAE's cached on disk)."""
    from jaxdiff.cli.style_transfer import write_latents
    from jaxdiff.data.digit_styles import digit_styles
    from jaxdiff.data.style_folders import load_style_folders
    from jaxdiff.flows import StyleLatents, load_latents

    with checking("data", data):
        if data["source"] == "digits":
            split = dict(test_fraction=data["test_fraction"], seed=data["seed"])
            images, styles, _ = digit_styles(
                "train", scale=data["scale"], sigma=data["sigma"], **split
            )
        else:
            size = data["image_size"]
            images, styles = load_style_folders(
                data["root"], image_size=size, resize=size is not None
            )
    say(f"{len(images)} images {images.shape[1:]} in {int(styles.max()) + 1} styles")
    if data["latents"] == "pixel":
        meta = {"scaling_factor": 1.0, "shift_factor": 0.0}
        return images.shape[1:], StyleLatents(images, styles, meta)
    path = run_dir / "latents.npz"
    if not path.is_file():
        say(f"encoding with the VAE at {data['vae']} into {path}")
        write_latents(images, styles, path, vae=data["vae"], names=("data", "data.vae"))
    return images.shape[1:], load_latents(path)


def train_style(cfg: dict, job: dict | None = None, log=None) -> dict:
    """Run the whole training job for a composed config; returns ``{"run_dir", "metrics"}``.

    Args:
      cfg: the composed config (:func:`compose`).
      job: :func:`prepare`'s result for ``cfg`` (built here when None).
      log: called with one line per phase (see :class:`~jaxdiff.cli.console.Console`).
    """
    import jax
    import jax.numpy as jnp

    from jaxdiff.cli.style_transfer import card_of, write_card
    from jaxdiff.counting.plots import plot_loss
    from jaxdiff.nets import StyleVelocity, bind
    from jaxdiff.train import array_batches, fit, read_metrics, run_directory

    say = log or (lambda message: None)
    job = prepare(cfg) if job is None else job
    training, k = job["training"], job["num_styles"]
    run_dir = run_directory(cfg["output_dir"], cfg["model"], cfg["data"], cfg["objective"])
    say(f"config {run_dir.name}: run directory {run_dir}")
    image_shape, data = _latents(cfg["data"], run_dir, say)
    if training.batch_size > len(data.labels):
        raise ConfigError(
            f"training.batch_size={training.batch_size} exceeds the {len(data.labels)} images"
        )
    channels = data.latents.shape[-1]
    isonext = dataclasses.replace(job["isonext"], in_channels=channels, out_channels=channels)
    write_card(run_dir, card_of(isonext, k, image_shape, data, cfg["data"]))
    module = StyleVelocity(isonext, k)
    k_init, k_train = jax.random.split(jax.random.key(training.seed))
    x = jnp.zeros((1, *data.latents.shape[1:]))
    say(f"initialising the IsoNext ({isonext.num_layers} blocks of width {isonext.hidden_dim})")
    params = jax.jit(module.init)(k_init, x, jnp.zeros((1,)), jnp.zeros((1,), jnp.int32))
    arrays = {"x": data.latents, "labels": data.labels}
    batches, steps_per_epoch = array_batches(arrays, training.batch_size, seed=training.seed)
    fitted = fit(
        k_train,
        params["params"],
        bind(module).apply_fn,
        job["objective"],
        batches,
        training,
        run_dir=run_dir,
        steps_per_epoch=steps_per_epoch,
        log=say,
    )
    history = read_metrics(run_dir / "metrics.jsonl")
    steps = int(fitted.state.step)
    metrics = {
        "final_loss": history[-1]["loss"] if history else None,
        "steps": steps,
        "trained_steps_this_call": steps - fitted.start_step,
        "steps_per_epoch": steps_per_epoch,
        "epochs": steps / steps_per_epoch,
        "num_images": len(data.labels),
        "latent_shape": list(data.latents.shape[1:]),
        "coupling": cfg["objective"]["coupling"],
        "class_conditional": cfg["objective"]["class_conditional"],
    }
    plot_loss(history, run_dir / "loss.png", title="OT-CFM velocity loss")
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    return {"run_dir": str(run_dir), "metrics": metrics}
