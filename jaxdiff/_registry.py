"""One name -> object table for the library's boundary (configs, Hydra, facades).

Library functions take objects; a registry turns the names a user types into them
(DESIGN.md, house style 5). Names are case-insensitive (``str`` or ``enum.Enum``);
registering a name twice raises, and an unknown name raises ``ValueError`` listing the
choices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from jaxdiff._validation import check_choice

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A case-insensitive table of named objects.

    Args:
      field: the argument name users set to choose an entry (used in error messages,
        e.g. ``"schedule_type"``).

    Example::

        SCHEDULES = Registry("schedule_type")

        @SCHEDULES.register("linear")
        def linear(...): ...

        SCHEDULES.get("Linear")   # -> linear
    """

    def __init__(self, field: str):
        self.field = field
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Add ``obj`` under ``name``; without ``obj``, a decorator that adds its target.

        Raises:
          ValueError: ``name`` is already registered.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.field} name must be a non-empty str, got {name!r}")
        key = name.lower()

        def add(target: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.field}={name!r} is already registered")
            self._items[key] = target
            return target

        return add if obj is None else add(obj)

    def canonical(self, name) -> str:
        """The registered spelling of ``name`` (lower case), or raise listing the choices."""
        return check_choice(self.field, name, self._items)

    def get(self, name) -> T:
        """The object registered under ``name`` (case-insensitive).

        Raises:
          TypeError: ``name`` is not a str or enum.
          ValueError: ``name`` is unknown; the message lists the choices.
        """
        return self._items[self.canonical(name)]

    def names(self) -> tuple[str, ...]:
        """Registered names in registration order."""
        return tuple(self._items)

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.field!r}, {list(self._items)})"
