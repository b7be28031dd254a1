"""The store: one TinyDB JSON file under the data root.

Every read-modify-write holds one re-entrant lock (threads of this process) plus an ``fcntl`` lock on a side
file (other processes, e.g. the CLI next to the app). The file is replaced atomically, so a crash mid-write
leaves the previous version intact.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from core import config

TABLES = ("classes", "datasets", "user_images", "models", "jobs", "reports")
_LOCK = threading.RLock()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; ours are ordinary files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class AtomicJSONStorage(Storage):
    """TinyDB storage that reads the whole file and writes it back atomically."""

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
        atomic_write_bytes(self.path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))

    def close(self) -> None:
        pass


@contextlib.contextmanager
def locked(path: Path | None = None) -> Iterator[TinyDB]:
    """Hold the store lock and yield an open TinyDB on the store file."""
    path = Path(path) if path else config.store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK:
        with open(path.with_suffix(".lock"), "a+") as lockfile:
            fcntl.flock(lockfile, fcntl.LOCK_EX)
            try:
                yield TinyDB(path, storage=AtomicJSONStorage)
            finally:
                fcntl.flock(lockfile, fcntl.LOCK_UN)


def insert(table: str, doc: dict) -> int:
    _check_table(table)
    with locked() as db:
        return db.table(table).insert(doc)


def upsert(table: str, doc: dict, *, key: str) -> None:
    """Insert ``doc`` or replace the fields of the record whose ``key`` field equals ``doc[key]``."""
    _check_table(table)
    with locked() as db:
        db.table(table).upsert(doc, Query()[key] == doc[key])


def update(table: str, fields: dict, *, key: str, value: Any) -> int:
    """Set ``fields`` on records with ``record[key] == value``; returns how many changed."""
    _check_table(table)
    with locked() as db:
        return len(db.table(table).update(fields, Query()[key] == value))


def modify(table: str, fn: Callable[[dict], dict | None], *, key: str, value: Any) -> dict | None:
    """Read-modify-write one record under the lock. ``fn`` gets a copy and returns the new record (or None)."""
    _check_table(table)
    with locked() as db:
        t = db.table(table)
        doc = t.get(Query()[key] == value)
        if doc is None:
            return None
        new = fn(dict(doc))
        if new is not None:
            t.update(new, doc_ids=[doc.doc_id])
        return new


def get(table: str, *, key: str, value: Any) -> dict | None:
    _check_table(table)
    with locked() as db:
        doc = db.table(table).get(Query()[key] == value)
        return dict(doc) if doc is not None else None


def all_records(table: str) -> list[dict]:
    _check_table(table)
    with locked() as db:
        return [dict(d) for d in db.table(table).all()]


def remove(table: str, *, key: str, value: Any) -> int:
    _check_table(table)
    with locked() as db:
        return len(db.table(table).remove(Query()[key] == value))


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"unknown store table {table!r}; valid tables: {', '.join(TABLES)}")
