"""Build bridges, slack samplers and datasets from plain config dicts (the Hydra app's YAML).

Each dict names its kind in ``type``; the other keys are the constructor's keyword
arguments, so ``{"type": "bessel", "lam_p": 4.0, "lam_m": 4.0}`` is ``BesselM(4.0, 4.0)``.
The names are ``jaxdiff._registry.Registry`` tables (``SLACK_SAMPLERS``, ``BRIDGES``,
``DATASETS``); unknown types and unknown keys raise a ValueError naming them and what is
allowed.
"""

from __future__ import annotations

import inspect

from jaxdiff._registry import Registry
from jaxdiff._validation import did_you_mean
from jaxdiff.counting.bridge import SkellamBridge
from jaxdiff.counting.constrained import ConstrainedSkellamBridge, ReflectedSkellamBridge
from jaxdiff.counting.data import BetaBinomialDataset, PoissonMixtureDataset
from jaxdiff.counting.slack import BesselM, ConstantM, PoissonM

__all__ = ["BRIDGES", "DATASETS", "SLACK_SAMPLERS", "build_bridge", "build_dataset", "build_slack"]

SLACK_SAMPLERS = Registry("slack_sampler.type")
SLACK_SAMPLERS.register("constant", ConstantM)
SLACK_SAMPLERS.register("poisson", PoissonM)
SLACK_SAMPLERS.register("bessel", BesselM)
BRIDGES = Registry("bridge.type")
BRIDGES.register("skellam", SkellamBridge)
BRIDGES.register("constrained", ConstrainedSkellamBridge)
BRIDGES.register("reflected", ReflectedSkellamBridge)
DATASETS = Registry("dataset.type")
DATASETS.register("poisson_mixture", PoissonMixtureDataset)
DATASETS.register("beta_binomial", BetaBinomialDataset)


def _split(field: str, cfg, registry: Registry):
    if not isinstance(cfg, dict):
        raise TypeError(f"{field} must be a dict with a 'type' entry, got {type(cfg).__name__}")
    if "type" not in cfg:
        raise ValueError(f"{field} needs a 'type' entry, one of {sorted(registry)}")
    kind = registry.canonical(cfg["type"])
    kwargs = {k: v for k, v in cfg.items() if k != "type"}
    cls = registry.get(kind)
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            dotted = [f"{field}.{k}" for k in unknown]
            hint = did_you_mean(dotted[0], [f"{field}.{k}" for k in params])
            raise ValueError(
                f"unknown keys {dotted} for {field}.type={kind!r}{hint}; allowed: {sorted(params)}"
            )
    return cls, kwargs


def _tuples(kwargs: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def build_slack(cfg: dict):
    """A slack sampler (``ConstantM``, ``PoissonM`` or ``BesselM``) from its config."""
    cls, kwargs = _split("slack_sampler", cfg, SLACK_SAMPLERS)
    return cls(**kwargs)


def build_bridge(cfg: dict, slack_cfg: dict):
    """A bridge (``skellam``, ``constrained`` or ``reflected``) with its slack sampler.

    Extra keys go to the weight schedule (``concentration``, ``steepness``).
    """
    cls, kwargs = _split("bridge", cfg, BRIDGES)
    return cls(build_slack(slack_cfg), **kwargs)


def build_dataset(cfg: dict):
    """A count dataset (``poisson_mixture`` or ``beta_binomial``) from its config."""
    cls, kwargs = _split("dataset", cfg, DATASETS)
    return cls(**_tuples(kwargs))
