"""``bind``: a Flax module and its parameters as the model callables jaxdiff takes.

Two call conventions meet a network (DESIGN.md, convention 5):

* the samplers' ``model_fn(x, t, context) -> prediction``, which must be hashable (it
  is a static argument of the compiled sampling run): ``bind(module, params)``;
* the training engine's ``apply_fn(params, x, t, context)``:
  ``bind(module).apply_fn``.

Both call ``module.apply({"params": params}, x, t, context, **apply_kwargs)`` with
``t`` broadcast to ``[B]``, so a module written for one works with the other.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

__all__ = ["BoundModel", "bind"]


@dataclasses.dataclass(frozen=True, eq=False)
class BoundModel:
    """A module with (optionally) its parameters; hashable by identity.

    Attributes:
      module: the Flax module; called as ``module(x, t, context, **apply_kwargs)``.
      params: its ``params`` collection, or None (then only :meth:`apply_fn` works).
      apply_kwargs: extra keyword arguments for every call (e.g. ``class_labels``).
    """

    module: nn.Module
    params: Any = None
    apply_kwargs: dict = dataclasses.field(default_factory=dict)

    def apply_fn(self, params, x, t, context=None):
        """The engine's ``apply_fn(params, x [B, ...], t [B] or scalar, context)``."""
        t = jnp.broadcast_to(jnp.asarray(t), (jnp.shape(x)[0],))
        return self.module.apply({"params": params}, x, t, context, **self.apply_kwargs)

    def __call__(self, x, t, context=None):
        """The samplers' ``model_fn(x [B, ...], t [B], context) -> prediction``."""
        if self.params is None:
            raise ValueError(
                "this BoundModel has no params: use bind(module, params) to call it as a "
                "model, or .apply_fn(params, x, t, context)"
            )
        return self.apply_fn(self.params, x, t, context)


def bind(module: nn.Module, params=None, **apply_kwargs) -> BoundModel:
    """Bind ``module`` (and ``params``) into a model callable.

    Args:
      module: a Flax linen module taking ``(x, t, context)`` positionally.
      params: the module's ``params`` collection (the inner dict, not
        ``{"params": ...}``), or None for the engine form only.
      **apply_kwargs: passed to every ``module.apply`` call.

    Returns:
      A :class:`BoundModel`: call it as ``model(x, t, context)`` (samplers), or use
      ``.apply_fn`` (training).

    Raises:
      TypeError: ``module`` is not a Flax module.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a flax.linen.Module, got {type(module).__name__}")
    if isinstance(params, dict) and set(params) == {"params"}:
        raise ValueError(
            "params must be the inner 'params' collection, got {'params': ...}; pass "
            "variables['params']"
        )
    return BoundModel(module, params, dict(apply_kwargs))
