"""The style model of ``jaxdiff style`` and its ``transfer`` and ``preprocess`` commands.

Model: :class:`jaxdiff.nets.StyleVelocity` (an IsoNext told a style id, ``K`` the null
id that label dropout and guidance use). Time: the model is told ``t`` in ``[0, 1]``
(objective ``time_scale=1``, ``FlowSchedule.create(num_train_timesteps=1)``); IsoNext
scales it internally.

A ``jaxdiff style train`` run directory holds ``style_model.json`` (:func:`write_card`:
the IsoNext config, ``num_styles``, image and latent shapes, pixel or VAE latents) and
Orbax checkpoints; ``transfer`` needs nothing else.

Transfer (the original's ``inference.py``): encode the image ``x`` (pixels, or the VAE
posterior mean ``(E(x) - shift) * scale``), integrate the flow ODE from ``t = 0`` to 1
under the source style (``FlowODE(direction="invert")``: the noise code ``z``), then from
``t = 1`` to 0 under the target style (``direction="generate"``), decode. With
``guidance_scale = w`` both legs use the guided velocity ``v_null + w (v_s - v_null)``
(Ho & Salimans 2022). Same style both ways returns ``x`` up to the solvers' error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._atomic import atomic_write, atomic_write_text
from jaxdiff.cli.config import ConfigError
from jaxdiff.nets import IsoNextConfig, StyleVelocity

__all__ = [
    "CARD",
    "card_of",
    "read_card",
    "run_preprocess",
    "run_transfer",
    "transfer_latents",
    "write_card",
    "write_latents",
]

CARD = "style_model.json"
_FORMAT = "jaxdiff.style_model"


def write_card(run_dir: Path, card: dict) -> Path:
    """Write ``run_dir/style_model.json`` atomically (``card``: see :func:`read_card`)."""
    text = json.dumps({"format": _FORMAT, **card}, indent=2)
    return atomic_write_text(Path(run_dir) / CARD, text)


def read_card(checkpoint) -> tuple[dict, StyleVelocity, Path]:
    """``(card, module, step_dir)`` of a run directory (or its ``checkpoints/<step>``).

    The card holds ``isonext`` (IsoNextConfig fields), ``num_styles``, ``image_shape``
    and ``latent_shape`` (``[H, W, C]``), ``latents`` (``pixel`` / ``vae``), ``vae`` (the
    weights' path or None), ``scaling_factor`` and ``shift_factor``. The newest
    committed step is taken from a run directory.

    Raises:
      FileNotFoundError / ValueError naming ``--checkpoint``.
    """
    from jaxdiff.cli.run_checkpoint import committed_steps

    path = Path(checkpoint).absolute()  # Orbax reads absolute paths only
    step_dir = None
    if path.parent.name == "checkpoints" and path.name.isdigit():
        path, step_dir = path.parent.parent, path
    if not path.is_dir():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: no such run directory")
    if not (path / CARD).is_file():
        raise FileNotFoundError(
            f"--checkpoint {checkpoint} is not a `jaxdiff style train` run directory "
            f"(no {CARD} inside)"
        )
    try:
        card = json.loads((path / CARD).read_text())
        if card.pop("format") != _FORMAT:
            raise ValueError(f"format is not {_FORMAT!r}")
        module = StyleVelocity(IsoNextConfig(**card["isonext"]), int(card["num_styles"]))
    except Exception as err:  # noqa: BLE001 - any damage to the card reads the same
        raise ValueError(f"--checkpoint {checkpoint}: {CARD} is damaged ({err!r:.120})") from None
    steps = committed_steps(path / "checkpoints")
    if step_dir is None and steps:
        step_dir = path / "checkpoints" / str(steps[-1])
    if step_dir is None or not step_dir.is_dir():
        raise FileNotFoundError(
            f"--checkpoint {checkpoint} has no committed checkpoint (checkpoints/<step>/); "
            "train it first (jaxdiff style train)"
        )
    return card, module, step_dir


@contextlib.contextmanager
def _argument(name: str):
    """Errors inside (bad value, unreadable file) as one :class:`ConfigError` naming ``name``."""
    try:
        yield
    except ConfigError:
        raise
    except (TypeError, ValueError, OSError) as err:
        text = " ".join(str(err).split())
        raise ConfigError(text if text.startswith(name) else f"{name}: {text}") from err


def _load_vae(path, field: str):
    from jaxdiff.interop import vae_from_diffusers

    with _argument(field):
        return vae_from_diffusers(path)


def write_latents(
    images, styles, out_path, *, vae=None, overwrite=False, names=("--output", "--vae")
):
    """Encode ``images`` (through diffusers VAE weights at ``vae``, or none) to an ``.npz``.

    :func:`jaxdiff.flows.preprocess_to_latents` with the VAE's scaling / shift factors;
    atomic. Returns the path. ``names``: what errors call ``out_path`` and ``vae``.
    """
    from jaxdiff.flows import preprocess_to_latents, vae_encode_fn

    options = {}
    if vae is not None:
        module, params = _load_vae(vae, names[1])
        options = dict(
            encode=vae_encode_fn(module, params),
            scaling_factor=module.config.scaling_factor,
            shift_factor=module.config.shift_factor or 0.0,
        )
    with _argument(names[0]):
        return preprocess_to_latents(images, styles, out_path, overwrite=overwrite, **options)


def transfer_latents(
    module,
    params,
    x,
    source: int,
    target: int,
    *,
    solver="rk4",
    num_steps=20,
    w=1.0,
    batch_size=16,
):
    """Invert ``x`` under ``source``, regenerate under ``target`` (one compiled program).

    Args:
      module: a :class:`StyleVelocity`.
      params: its parameters.
      x: ``[N, H, W, C]`` latents.
      source: the style id of ``x``, in ``0..K-1``.
      target: the style id to produce.
      solver: the :class:`~jaxdiff.flows.FlowODE` solver of both legs.
      num_steps: steps of each leg.
      w: guidance scale (1: the conditional velocity alone).
      batch_size: images per compiled call (the last batch zero-padded).

    Returns:
      ``(z, y, nfe, seconds, compile_seconds)``: the noise codes and results ``[N, H, W,
      C]``, model calls per image (both legs), run and compile wall time.
    """
    from jaxdiff.flows import FlowODE
    from jaxdiff.nets import bind
    from jaxdiff.samplers import sample
    from jaxdiff.schedules.flow import FlowSchedule

    schedule = FlowSchedule.create(num_train_timesteps=1)  # the model is told t in [0, 1]
    legs = [
        FlowODE(solver=solver, num_steps=num_steps, direction=d) for d in ("invert", "generate")
    ]

    def run(params, x, w):
        model = bind(module, params)
        null = jnp.full((x.shape[0],), module.num_styles, jnp.int32)
        out = [x]
        for ode, style in zip(legs, (source, target), strict=True):
            ids = jnp.full((x.shape[0],), style, jnp.int32)
            res = sample(
                jax.random.key(0),
                ode,
                schedule,
                model,
                out[-1],
                context=ids,
                uncond_context=null,
                guidance_scale=w,
            )
            out.append(res.samples)
        return out[1], out[2]

    x = np.asarray(x, np.float32)
    b = min(batch_size, len(x))
    padded = np.concatenate([x, np.zeros((-len(x) % b, *x.shape[1:]), x.dtype)])
    tick = time.perf_counter()
    compiled = jax.jit(run).lower(params, padded[:b], jnp.float32(w)).compile()
    compile_seconds, tick = time.perf_counter() - tick, time.perf_counter()
    parts = [compiled(params, padded[i : i + b], jnp.float32(w)) for i in range(0, len(x), b)]
    z, y = (np.concatenate(a)[: len(x)] for a in zip(*jax.block_until_ready(parts), strict=True))
    nfe = sum(ode.num_model_calls for ode in legs)
    return z, y, nfe, time.perf_counter() - tick, compile_seconds


def _codec(card: dict, batch_size: int):
    """``(encode, decode)`` between images and the run's latents (identity for pixels)."""
    from jaxdiff.flows import vae_encode_fn
    from jaxdiff.flows.latent_files import encode_batched

    if card["latents"] == "pixel":
        return (lambda x: x), (lambda z: z)
    module, params = _load_vae(card["vae"], "the run's data.vae")
    scale, shift = card["scaling_factor"], card["shift_factor"]
    mean = vae_encode_fn(module, params)
    back = jax.jit(
        lambda z: module.apply({"params": params}, z / scale + shift, method=module.decode)
    )
    return (
        lambda x: (encode_batched(mean, x, batch_size) - shift) * scale,
        lambda z: encode_batched(back, z, batch_size),
    )


def _check_style(field: str, value: int, k: int) -> int:
    if not 0 <= value < k:
        raise ValueError(f"{field} {value} is not a style of this model; allowed: 0..{k - 1}")
    return value


def _inputs(arg: str, out_arg: str) -> list[tuple[Path, Path]]:
    """``[(input image, output png)]`` of ``--input`` / ``--output`` (a file or a folder)."""
    from jaxdiff.data.style_folders import _SUFFIXES

    src, out = Path(arg), Path(out_arg)
    if src.is_dir():
        files = sorted(
            p
            for p in src.iterdir()
            if p.is_file() and p.suffix.lower() in _SUFFIXES and not p.name.startswith(".")
        )
        if not files:
            raise ValueError(f"--input {arg} holds no *.png, *.jpg or *.jpeg image")
        if out.exists() and not out.is_dir():
            raise ValueError(f"--output {out_arg} must be a folder when --input is a folder")
        names = [p.stem + ".png" for p in files]
        if len(set(names)) < len(names):
            raise ValueError(f"--input {arg} holds images of one name with two suffixes")
        return [(p, out / n) for p, n in zip(files, names, strict=True)]
    if not src.is_file():
        raise FileNotFoundError(f"--input {arg}: no such image file or folder")
    if out.suffix.lower() != ".png" or out.is_dir():
        raise ValueError(
            f"--output {out_arg} must be a .png file path (or a folder with a folder --input)"
        )
    return [(src, out)]


def _read(path: Path, shape: tuple) -> np.ndarray:
    """One image in [-1, 1], checked as :func:`~jaxdiff.data.load_style_folders` does."""
    from jaxdiff.data.style_folders import read_image

    with _argument("--input"):
        arr = read_image(path, None)
    if arr.shape != shape:
        raise ValueError(
            f"--input {path}: image has (height, width, channels) = {arr.shape}; the model "
            f"at --checkpoint takes {shape}"
        )
    return (arr * 2.0 - 1.0).astype(np.float32)


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    from jaxdiff.data.style_folders import _PNG_MODES

    pixels = np.rint((np.clip(image, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    img = Image.fromarray(
        pixels[..., 0] if pixels.shape[-1] == 1 else pixels, _PNG_MODES[pixels.shape[-1]]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def run_transfer(args) -> int:
    """``jaxdiff style transfer``: every argument checked before any work; exit code."""
    from jaxdiff._validation import check_int_range
    from jaxdiff.cli.console import Console
    from jaxdiff.cli.run_checkpoint import TrainCheckpoint, restore_train_params
    from jaxdiff.flows import TABLEAUX

    say = Console()
    if args.solver not in TABLEAUX:
        raise ValueError(f"--solver {args.solver!r} is unknown; allowed: {', '.join(TABLEAUX)}")
    check_int_range("--num-steps", args.num_steps, 1, 100_000)
    check_int_range("--batch-size", args.batch_size, 1)
    if not np.isfinite(args.guidance_scale):
        raise ValueError(f"--guidance-scale {args.guidance_scale} must be finite")
    card, module, step_dir = read_card(args.checkpoint)
    k = module.num_styles
    source = _check_style("--source-style", args.source_style, k)
    target = _check_style("--target-style", args.target_style, k)
    pairs = _inputs(args.input, args.output)
    images = np.stack([_read(src, tuple(card["image_shape"])) for src, _ in pairs])
    say(f"{len(images)} image(s) {images.shape[1:]}; restoring {step_dir}")
    checkpoint = TrainCheckpoint(step_dir.parent.parent, step_dir, int(step_dir.name))
    with _argument("--checkpoint"):
        params = restore_train_params(checkpoint)
    encode, decode = _codec(card, args.batch_size)
    _, y, nfe, seconds, compiling = transfer_latents(
        module,
        params,
        encode(images),
        source,
        target,
        solver=args.solver,
        num_steps=args.num_steps,
        w=args.guidance_scale,
        batch_size=args.batch_size,
    )
    y = decode(y)
    for (_, dst), image in zip(pairs, y, strict=True):
        _write_png(dst, image)
    say(
        f"style {source} -> {target}, {args.solver} x {args.num_steps} steps: NFE "
        f"{nfe // 2} invert + {nfe // 2} generate = {nfe}; {seconds:.3f}s for {len(y)} image(s) "
        f"(+ {compiling:.1f}s compiling); wrote {args.output}"
    )
    return 0


def run_preprocess(args) -> int:
    """``jaxdiff style preprocess``: ``raw_data/style_k/*`` -> latent ``.npz``; exit code."""
    from jaxdiff.cli.console import Console
    from jaxdiff.data.style_folders import load_style_folders

    say = Console()
    size = args.image_size
    with _argument("--input"):
        images, styles = load_style_folders(args.input, image_size=size, resize=size is not None)
    say(f"{len(images)} images {images.shape[1:]} in {int(styles.max()) + 1} styles")
    path = write_latents(images, styles, args.output, vae=args.vae, overwrite=args.overwrite)
    say(f"wrote {path} ({'pixels' if args.vae is None else 'VAE latents of ' + args.vae})")
    return 0


def card_of(model_cfg: IsoNextConfig, num_styles: int, image_shape, latents, data: dict) -> dict:
    """The card of a run (see :func:`read_card`) from its model, data and latents.

    ``latents``: a :class:`~jaxdiff.flows.StyleLatents` (its metadata's factors are used).
    """
    meta = latents.metadata
    return {
        "isonext": dataclasses.asdict(model_cfg),
        "num_styles": num_styles,
        "image_shape": list(image_shape),
        "latent_shape": list(latents.latents.shape[1:]),
        "latents": data["latents"],
        "vae": None if data["vae"] is None else str(Path(data["vae"]).absolute()),
        "scaling_factor": meta["scaling_factor"],
        "shift_factor": meta["shift_factor"],
    }
