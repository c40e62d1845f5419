"""jaxdiff: diffusion sampling, optimal transport and flow matching in one JAX stack.

The names users of the original noise-scheduler module know are importable from here;
the pure building blocks live in :mod:`jaxdiff.schedules` and :mod:`jaxdiff.samplers`.

Names and subpackages are imported on first access (PEP 562), so ``import jaxdiff``
(and with it the ``jaxdiff`` console script's ``--help``) does not import JAX.
"""

import importlib
import importlib.util
import pkgutil

__version__ = "0.1.0"  # a literal, so a source tree without install metadata has it too

#: Public name -> the module that defines it (imported when the name is first used).
_LAZY = {
    "AdvancedSamplingManager": "jaxdiff.samplers.manager",
    "NoiseScheduleType": "jaxdiff.schedules.config",
    "NoiseSchedulerConfig": "jaxdiff.schedules.config",
    "SamplingConfig": "jaxdiff.samplers.config",
    "SamplingMethod": "jaxdiff.samplers.config",
    "SamplingResult": "jaxdiff.samplers.manager",
    "create_advanced_sampling_manager": "jaxdiff.samplers.manager",
    "create_noise_scheduler": "jaxdiff.schedules.config",
    "create_sampler": "jaxdiff.samplers.manager",
}

__all__ = sorted(_LAZY)


def _is_subpackage(name: str) -> bool:
    public = name.isidentifier() and not name.startswith("_")
    return public and importlib.util.find_spec(f"{__name__}.{name}") is not None


def __getattr__(name: str):
    """A public name of ``__all__`` or a subpackage (``jaxdiff.ot``), imported now."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if _is_subpackage(name):
        return importlib.import_module(f"{__name__}.{name}")  # binds jaxdiff.<name> too
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    subpackages = (m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return sorted({*globals(), *_LAZY, *subpackages})
