"""Extension points as records, the shape of torchvision's ``register_model``: one table per kind of item (metrics,
novelty methods, augmentation groups), one record per item registered next to its code, read by pages, CLI,
reports and tests alike. Adding an item touches no central file.

Every record has a ``name`` and a ``version`` (an int raised when the item's computation changes). A table's
:meth:`Registry.version` is a short hash of its sorted (name, version) pairs: saved artifacts that depend on the
table stamp it, so adding, removing or changing an item makes them stale and they are computed again.
"""
from __future__ import annotations

import hashlib
import json
from typing import Generic, Iterable, Protocol, TypeVar


class Record(Protocol):
    name: str
    version: int


R = TypeVar("R", bound=Record)


def set_version(pairs: Iterable[tuple[str, int | float | str]]) -> str:
    """8 hex digits from (name, version) pairs (a version: a number, or another set's version), whatever their
    order."""
    text = json.dumps(sorted([str(n), v] for n, v in pairs))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


class Registry(Generic[R]):
    """The records of one kind (``what``: "metric", "novelty method", ...) by name, in registration order.

    ``table`` is the plain dict behind it (tests may ``monkeypatch.setitem`` a toy record into it).
    """

    def __init__(self, what: str):
        self.what = what
        self.table: dict[str, R] = {}

    def add(self, record: R) -> R:
        if record.name in self.table:
            raise ValueError(f"{self.what} {record.name!r} is registered already; choose another name")
        self.table[record.name] = record
        return record

    def names(self) -> tuple[str, ...]:
        return tuple(self.table)

    def get(self, name: str) -> R:
        """The record of ``name``; ValueError listing the valid names for an unknown one."""
        try:
            return self.table[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.what} {name!r}; valid: {', '.join(self.table)}") from None

    def check(self, names: Iterable[str]) -> tuple[str, ...]:
        """``names`` as a tuple; ValueError listing the unknown ones and the valid ones."""
        names = tuple(names)
        unknown = sorted(set(names) - set(self.table))
        if unknown:
            raise ValueError(f"unknown {self.what}s {unknown}; valid: {', '.join(self.table)}")
        return names

    def version(self) -> str:
        """The table's version: changes when an item is added, removed or has its version raised."""
        return set_version((r.name, r.version) for r in self.table.values())
