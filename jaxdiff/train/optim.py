"""The optimiser: AdamW, linear warm-up + cosine decay, global-norm clipping (optax).

``clip_by_global_norm -> adamw(schedule)`` (Loshchilov & Hutter 2019, decoupled weight
decay; warm-up + cosine as in Goyal et al. 2017 and Loshchilov & Hutter 2017). The
parameter EMA lives in :mod:`jaxdiff.train.state` (it averages parameters, not updates).
Gradient accumulation over micro-batches is done inside the pure train step
(:mod:`jaxdiff.train.step`), so one call of the step is one optimiser step.
"""

from __future__ import annotations

import optax

from jaxdiff.train.config import TrainingConfig

__all__ = ["make_lr_schedule", "make_optimizer"]


def make_lr_schedule(config: TrainingConfig, num_steps: int) -> optax.Schedule:
    """Learning rate at optimiser step ``s`` (0-based).

    ``learning_rate * s / warmup_steps`` for ``s < warmup_steps``, then a cosine from
    ``learning_rate`` down to ``min_lr_ratio * learning_rate`` at ``num_steps``.
    """
    lr = config.learning_rate
    warmup = min(config.warmup_steps, num_steps)
    decay_steps = max(num_steps, warmup + 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup else lr,
        peak_value=lr,
        warmup_steps=warmup,
        decay_steps=decay_steps,
        end_value=config.min_lr_ratio * lr,
    )


def make_optimizer(config: TrainingConfig, num_steps: int) -> optax.GradientTransformation:
    """``optax.chain(clip_by_global_norm, adamw)`` configured from ``config``.

    Args:
      config: the training configuration.
      num_steps: total optimiser steps (the cosine's length).

    Returns:
      An ``optax.GradientTransformation`` (pure ``init``/``update``).
    """
    parts = []
    if config.gradient_clip_norm:
        parts.append(optax.clip_by_global_norm(config.gradient_clip_norm))
    parts.append(
        optax.adamw(
            make_lr_schedule(config, num_steps),
            b1=config.adam_b1,
            b2=config.adam_b2,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )
    )
    return optax.chain(*parts)
