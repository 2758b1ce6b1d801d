"""Name-keyed registry of vote aggregators (timm's ``_registry.py`` pattern)."""
from __future__ import annotations

from typing import Iterator, Mapping


class Registry(Mapping[str, type]):
    """A read-only mapping name -> class whose lookup of an unknown name lists the known ones."""

    def __init__(self, kind: str):
        self._kind = kind
        self._items: dict[str, type] = {}

    def register(self, cls: type) -> type:
        name = getattr(cls, "name", "")
        if not name:
            raise ValueError(f"{cls.__name__} has no registry name")
        if name in self._items and self._items[name] is not cls:
            raise ValueError(f"{self._kind} {name!r} is already registered")
        self._items[name] = cls
        return cls

    def __getitem__(self, name: str) -> type:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self._kind} {name!r}; known: {', '.join(sorted(self._items))}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self._kind}: {', '.join(sorted(self._items))})"

    def create(self, name: str, **params):
        return self[name](**params)
