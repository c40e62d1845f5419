"""Compare a provided state dict with the names and shapes a model expects.

:func:`check_state_dict` raises one :class:`StateDictMismatchError` that lists every
unknown, missing and mis-shaped entry at once, so a load is all or nothing: never a
silent partial load.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["StateDictMismatchError", "check_state_dict"]

_SHOWN = 20  # entries listed per category in the message


class StateDictMismatchError(ValueError):
    """A state dict does not match the model: see ``unknown``, ``missing``, ``mismatched``.

    Attributes:
        unknown: provided names the model does not have.
        missing: names the model needs that were not provided.
        mismatched: ``{name: (expected_shape, provided_shape)}``.
    """

    def __init__(self, unknown, missing, mismatched, what: str = "state dict"):
        self.unknown = sorted(unknown)
        self.missing = sorted(missing)
        self.mismatched = dict(sorted(mismatched.items()))
        lines = [
            f"{what} does not match the model: {len(self.unknown)} unknown, "
            f"{len(self.missing)} missing, {len(self.mismatched)} mis-shaped key(s)"
        ]
        if self.unknown:
            lines.append("unknown keys (not in the model):")
            lines += [f"  {k}" for k in self.unknown[:_SHOWN]]
            if len(self.unknown) > _SHOWN:
                lines.append(f"  ... and {len(self.unknown) - _SHOWN} more")
        if self.missing:
            lines.append("missing keys (the model needs them):")
            lines += [f"  {k}" for k in self.missing[:_SHOWN]]
            if len(self.missing) > _SHOWN:
                lines.append(f"  ... and {len(self.missing) - _SHOWN} more")
        if self.mismatched:
            lines.append("mis-shaped keys (expected vs provided):")
            items = list(self.mismatched.items())
            lines += [f"  {k}: expected {e}, got {g}" for k, (e, g) in items[:_SHOWN]]
            if len(items) > _SHOWN:
                lines.append(f"  ... and {len(items) - _SHOWN} more")
        super().__init__("\n".join(lines))


def check_state_dict(
    expected: Mapping[str, tuple[int, ...]],
    provided: Mapping[str, object],
    *,
    what: str = "state dict",
) -> None:
    """Raise :class:`StateDictMismatchError` unless names and shapes agree exactly.

    Args:
        expected: ``{name: shape}`` the model needs.
        provided: ``{name: array}`` (anything with ``.shape``, or array-like).
        what: how the message names the provided dict (e.g. the file it came from).
    """
    unknown = [k for k in provided if k not in expected]
    missing = [k for k in expected if k not in provided]
    mismatched = {}
    for name, shape in expected.items():
        if name in provided:
            value = provided[name]
            got = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
            if tuple(got) != tuple(shape):
                mismatched[name] = (tuple(shape), tuple(got))
    if unknown or missing or mismatched:
        raise StateDictMismatchError(unknown, missing, mismatched, what)
