"""The store: small TinyDB JSON files under ``<data root>/store/``, one file per table.

One file per table keeps hot data away from big data: registering a model or a report does not rewrite the runs,
and a run's progress ticks do not touch the store at all (they go to a small file in the run's folder, see
:mod:`core.runs`). User images live in their workspace's own file (:mod:`core.data.workspaces`), never here.

Every read-modify-write holds one re-entrant lock (threads of this process) plus an ``fcntl`` lock on the table's
side file (other processes, e.g. the CLI next to the app). Files are replaced atomically, so a crash mid-write
leaves the previous version intact. A data root from before the split (one ``store.json``) is read once and its
tables copied into their own files.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from core.base import config
from core.base.files import atomic_write_json, file_lock

TABLES = ("runs", "models", "reports")
#: Tables of the single-file store of earlier versions, and the table each became.
LEGACY_TABLES = {"jobs": "runs", "models": "models", "reports": "reports"}


class AtomicJSONStorage(Storage):
    """TinyDB storage that reads the whole file and writes it back atomically (compact JSON: big tables)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> dict | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        return json.loads(text)

    def write(self, data: dict) -> None:
        atomic_write_json(self.path, data)

    def close(self) -> None:
        pass


def table_path(table: str) -> Path:
    _check_table(table)
    return config.store_dir() / f"{table}.json"


@contextlib.contextmanager
def locked(table: str) -> Iterator[Any]:
    """Hold the table's lock and yield its TinyDB table (every operation on it reads and writes its file)."""
    path = table_path(table)
    with file_lock(path.with_suffix(".lock")):
        if not path.exists():
            _migrate_legacy(table, path)
        yield TinyDB(path, storage=AtomicJSONStorage).table(table)


def _migrate_legacy(table: str, path: Path) -> None:
    legacy = config.data_root() / "store.json"
    if not legacy.is_file():
        return
    try:
        old = json.loads(legacy.read_text(encoding="utf-8") or "{}")
    except ValueError:
        return
    docs = [doc for name, target in LEGACY_TABLES.items() if target == table for doc in old.get(name, {}).values()]
    if docs:
        TinyDB(path, storage=AtomicJSONStorage).table(table).insert_multiple(docs)


def insert(table: str, doc: dict) -> int:
    with locked(table) as t:
        return t.insert(doc)


def insert_many(table: str, docs: list[dict]) -> list[int]:
    """Insert ``docs`` in one write."""
    with locked(table) as t:
        return t.insert_multiple(docs)


def upsert(table: str, doc: dict, *, key: str) -> None:
    """Insert ``doc`` or replace the fields of the record whose ``key`` field equals ``doc[key]``."""
    with locked(table) as t:
        t.upsert(doc, Query()[key] == doc[key])


def update(table: str, fields: dict, *, key: str, value: Any) -> int:
    """Set ``fields`` on records with ``record[key] == value``; returns how many changed."""
    with locked(table) as t:
        return len(t.update(fields, Query()[key] == value))


def modify(table: str, fn: Callable[[dict], dict | None], *, key: str, value: Any) -> dict | None:
    """Read-modify-write one record under the lock. ``fn`` gets a copy and returns the new record (or None)."""
    with locked(table) as t:
        doc = t.get(Query()[key] == value)
        if doc is None:
            return None
        new = fn(dict(doc))
        if new is not None:
            t.update(new, doc_ids=[doc.doc_id])
        return new


def get(table: str, *, key: str, value: Any) -> dict | None:
    with locked(table) as t:
        doc = t.get(Query()[key] == value)
        return dict(doc) if doc is not None else None


def all_records(table: str) -> list[dict]:
    with locked(table) as t:
        return [dict(d) for d in t.all()]


def remove(table: str, *, key: str, value: Any) -> int:
    with locked(table) as t:
        return len(t.remove(Query()[key] == value))


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"unknown store table {table!r}; valid tables: {', '.join(TABLES)}")
