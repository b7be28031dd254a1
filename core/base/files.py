"""Atomic file writes and cross-process locks, shared by everything that writes under the data root.

A write goes to a temp file in the same folder, is flushed to disk, then replaces the target with ``os.replace``:
readers see the old file or the new one, never half of one, and a crash leaves the old one.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

#: One re-entrant lock per lock file for the threads of this process (``fcntl`` locks are per process).
_LOCKS: dict[str, "_HeldLock"] = {}
_LOCKS_GUARD = threading.Lock()


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


def atomic_write_json(path: Path, value: Any) -> None:
    """``value`` as compact JSON, written atomically (keys in insertion order: sorting 20 MB costs 2x)."""
    atomic_write_bytes(path, json.dumps(value, separators=(",", ":")).encode("utf-8"))


class _HeldLock:
    """A lock file's thread lock, and how deep its owner thread holds it (it takes the ``fcntl`` lock once)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.depth = 0


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) against this process's other threads and other
    processes. Re-entrant within a thread; different lock files do not block each other."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCKS_GUARD:
        held = _LOCKS.setdefault(str(path.resolve()), _HeldLock())
    with held.lock:
        held.depth += 1
        try:
            if held.depth > 1:  # this thread holds the file lock already
                yield
                return
            with open(path, "a+") as lockfile:
                fcntl.flock(lockfile, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lockfile, fcntl.LOCK_UN)
        finally:
            held.depth -= 1
