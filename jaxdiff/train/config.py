"""Training hyper-parameters (ATLAS's ``TrainingConfig``, one frozen dataclass).

Field names follow ATLAS (``batch_size``, ``micro_batch_size``, ``learning_rate``,
``gradient_clip_norm``, ``epochs``, ``mixed_precision``, ``log_interval``,
``checkpoint_interval`` ...). Everything here is a *training-only* setting: none of it
enters the run-directory hash (:func:`jaxdiff.train.checkpoint.config_hash`), so a run
can be resumed with more steps or another learning rate, as in Counting Flows.
"""

from __future__ import annotations

import dataclasses

from jaxdiff._validation import check_bool, check_choice, check_int_range, check_real

__all__ = ["MAX_SEED", "MIXED_PRECISION", "TrainingConfig"]

MIXED_PRECISION = ("no", "bf16")
# jax.random.key keeps 32 bits of an int seed unless x64 is on: 2**32 gives seed 0's key
MAX_SEED = 2**32 - 1


def _check_fraction(name: str, value, *, include_one: bool) -> float:
    """``value`` as a float in ``[0, 1]`` (``include_one``) or ``[0, 1)``, else raise."""
    value = check_real(name, value, 0.0)
    if value > 1.0 or (value == 1.0 and not include_one):
        allowed = "[0, 1]" if include_one else "[0, 1)"
        raise ValueError(f"{name}={value} is out of range; allowed: {name} in {allowed}")
    return value


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of :func:`jaxdiff.train.fit` (hashable, so usable as a static arg).

    Attributes:
      batch_size: examples per optimiser step (global, over all devices).
      micro_batch_size: examples per forward/backward pass; ``None`` or ``batch_size``
        means no accumulation, a divisor of ``batch_size`` accumulates
        ``batch_size // micro_batch_size`` gradients per step.
      learning_rate: peak AdamW learning rate.
      weight_decay: decoupled AdamW weight decay (Loshchilov & Hutter 2019).
      adam_b1: AdamW ``beta_1``.
      adam_b2: AdamW ``beta_2``.
      adam_eps: AdamW ``epsilon``.
      warmup_steps: linear warm-up from 0 to ``learning_rate``.
      min_lr_ratio: the cosine decay ends at ``min_lr_ratio * learning_rate``, in
        ``[0, 1]``.
      gradient_clip_norm: global-norm clipping threshold (a number >= 0); ``None`` or 0
        disables it. Switching clipping on or off changes the optimiser state's
        structure, so a run cannot resume across that change
        (:class:`~jaxdiff.train.checkpoint_checks.CheckpointMismatchError`); changing
        the threshold can.
      num_steps: total optimiser steps; ``None`` to derive from ``epochs``.
      epochs: passes over a dataset of known size (used when ``num_steps`` is None).
      mixed_precision: ``"no"`` (float32) or ``"bf16"`` (bfloat16 compute, float32
        master parameters and gradients). ATLAS's ``True``/``False`` map to
        ``"bf16"``/``"no"``.
      ema_decay: decay of the parameter EMA, in ``[0, 1)``; 0 makes it track the params.
      log_interval: steps between metric records (jsonl and progress bar).
      checkpoint_interval: steps between checkpoints (a final one is always written).
      keep_checkpoints: how many checkpoints to keep (orbax ``max_to_keep``).
      async_checkpointing: save in a background thread (orbax's async save).
      seed: seed that CLIs and facades turn into the ``key`` given to ``fit``, an int
        in ``[0, MAX_SEED]`` (larger ones would collide in ``jax.random.key``).
      progress: ``None`` shows a bar only on a terminal; True/False force it.

    Every field is checked at construction: numbers given as strings or bools and bools
    given as anything but ``True``/``False`` raise ``TypeError``; values out of range
    raise ``ValueError``; both name the field.
    """

    batch_size: int = 32
    micro_batch_size: int | None = None
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    gradient_clip_norm: float | None = 1.0
    num_steps: int | None = 1000
    epochs: int | None = None
    mixed_precision: str = "no"
    ema_decay: float = 0.999
    log_interval: int = 100
    checkpoint_interval: int = 1000
    keep_checkpoints: int = 3
    async_checkpointing: bool = True
    seed: int = 0
    progress: bool | None = None

    def __post_init__(self):
        check_int_range("batch_size", self.batch_size, 1)
        if self.micro_batch_size is not None:
            check_int_range("micro_batch_size", self.micro_batch_size, 1, self.batch_size)
            if self.batch_size % self.micro_batch_size:
                raise ValueError(
                    f"micro_batch_size={self.micro_batch_size} must divide "
                    f"batch_size={self.batch_size}"
                )
        mp = self.mixed_precision
        if isinstance(mp, bool):  # ATLAS: mixed_precision=True
            object.__setattr__(self, "mixed_precision", "bf16" if mp else "no")
        else:
            object.__setattr__(
                self, "mixed_precision", check_choice("mixed_precision", mp, MIXED_PRECISION)
            )
        for name in ("learning_rate", "weight_decay", "adam_eps"):
            check_real(name, getattr(self, name), 0.0)
        for name in ("adam_b1", "adam_b2", "ema_decay"):
            _check_fraction(name, getattr(self, name), include_one=False)
        _check_fraction("min_lr_ratio", self.min_lr_ratio, include_one=True)
        if self.gradient_clip_norm is not None:
            check_real("gradient_clip_norm", self.gradient_clip_norm, 0.0)
        check_int_range("warmup_steps", self.warmup_steps, 0)
        if self.num_steps is None and self.epochs is None:
            raise ValueError("give num_steps or epochs (both are None)")
        if self.num_steps is not None:
            check_int_range("num_steps", self.num_steps, 1)
        if self.epochs is not None:
            check_int_range("epochs", self.epochs, 1)
        check_int_range("log_interval", self.log_interval, 1)
        check_int_range("checkpoint_interval", self.checkpoint_interval, 1)
        check_int_range("keep_checkpoints", self.keep_checkpoints, 1)
        check_bool("async_checkpointing", self.async_checkpointing)
        check_int_range("seed", self.seed, 0, MAX_SEED)
        if self.progress is not None:
            check_bool("progress", self.progress)

    @property
    def num_micro_batches(self) -> int:
        """Gradient-accumulation factor ``batch_size // micro_batch_size`` (1 = none)."""
        return self.batch_size // (self.micro_batch_size or self.batch_size)

    def total_steps(self, steps_per_epoch: int | None = None) -> int:
        """Number of optimiser steps: ``num_steps``, else ``epochs * steps_per_epoch``."""
        if self.num_steps is not None:
            return self.num_steps
        if steps_per_epoch is None:
            raise ValueError("num_steps is None: epochs needs steps_per_epoch (dataset size)")
        return self.epochs * check_int_range("steps_per_epoch", steps_per_epoch, 1)
