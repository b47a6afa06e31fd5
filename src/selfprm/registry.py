"""One generic name -> object registry: label sources, RL methods and studies all use it.

Like transformers' ``CONFIG_MAPPING_NAMES``, an entry may be given lazily as ``"module"`` or
``"module:attribute"``,
so listing the names (``selfprm --help``) imports nothing heavy; the module is imported the first
time the entry is asked for.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> objects of one kind (``kind`` appears in error messages)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T]:
        """``registry.register("x", obj)``, or ``@registry.register("x")`` as a decorator."""

        def add(o: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = o
            return o

        if obj is not None:
            add(obj)
        return add

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module"`` (the module) or ``"package.module:attribute"``, imported on
        the first :meth:`get`."""
        self.register(name, target)  # type: ignore[arg-type]

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = importlib.import_module(module)
            if attr:
                entry = getattr(entry, attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def check(self, names: Iterator[str] | tuple[str, ...] | list[str]) -> None:
        """Raise one ValueError naming every unknown name (before any work starts)."""
        unknown = sorted(set(names) - set(self._entries))
        if unknown:
            raise ValueError(f"unknown {self.kind}(s) {unknown}; available: {self.names()}")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
