"""The training state pytree and the parameter EMA.

:class:`TrainState` holds everything a resumed run needs: the step, float32 master
parameters, the optax state, the EMA parameters and the base PRNG key. The key never
changes; step ``s`` uses ``fold_in(key, s)`` (:func:`step_key`), so randomness is a
pure function of the step and a run killed and resumed reproduces itself bit for bit.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxdiff._keys import as_key

__all__ = ["TrainState", "ema_update", "step_key"]


@struct.dataclass
class TrainState:
    """State of one training run.

    Attributes:
      step: int32 scalar, optimiser steps taken.
      params: float32 master parameters (a pytree).
      opt_state: the optax state.
      ema_params: exponential moving average of ``params``.
      key: typed PRNG key (constant; see :func:`step_key`).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any
    key: jax.Array

    @classmethod
    def create(cls, key, params, tx: optax.GradientTransformation) -> TrainState:
        """Step 0: float parameters copied as float32, ``ema_params = params``.

        The parameters are copied, so donating the state to the jitted step never
        invalidates the caller's arrays.

        Args:
          key: typed key (legacy ``uint32[2]`` accepted) driving all training noise;
            anything else raises ``TypeError``.
          params: initial parameters.
          tx: the optimiser.
        """
        params = jax.tree.map(
            lambda p: (
                jnp.array(p, jnp.float32)
                if jnp.issubdtype(jnp.asarray(p).dtype, jnp.floating)
                else jnp.array(p)
            ),
            params,
        )
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            ema_params=jax.tree.map(jnp.copy, params),
            key=jnp.copy(as_key(key)),
        )


def step_key(state: TrainState):
    """The key of the current step: ``fold_in(state.key, state.step)``."""
    return jax.random.fold_in(state.key, state.step)


def ema_update(ema_params, params, decay):
    """``decay * ema + (1 - decay) * params`` leaf-wise (Polyak averaging).

    This is ``optax.incremental_update(params, ema_params, step_size=1 - decay)``.
    """
    return optax.incremental_update(params, ema_params, 1.0 - decay)
