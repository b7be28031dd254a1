"""Demo-mode quotas on what users write: bytes uploaded per session, and disk used by all workspaces.

Both apply only when :func:`core.base.demo.enabled` is true, and both refuse (:class:`core.base.demo.DemoRefused`)
before anything is written.

- **Uploads per session**: :func:`charge_uploads` counts a batch of uploads against the session's quota
  (:data:`core.base.demo.DEMO_SESSION_UPLOAD_BYTES`) and records it in a small ledger under the data root
  (``demo-uploads.json``, written atomically under a lock). A zip counts as the sum of its members' declared
  uncompressed sizes, read from its central directory without extracting anything; that bounds what reading it
  can produce, since :mod:`core.data.uploads` never inflates a member past its declared size. Ledger entries of
  sessions idle for longer than :data:`core.base.demo.DEMO_WORKSPACE_TTL_S` are dropped.
- **Workspaces on disk**: :func:`check_workspaces_disk` measures ``config.workspaces_dir()`` and refuses a write
  of ``extra`` bytes that would pass :data:`core.base.demo.DEMO_WORKSPACES_DISK_BYTES`.
"""
from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Sequence

from core.base import config, demo
from core.base.files import atomic_write_json, file_lock

LEDGER = "demo-uploads.json"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def upload_size(data: bytes) -> int:
    """Bytes an upload counts for: a zip's expanded size (declared sizes of its members), else its length."""
    if data[:4] in _ZIP_MAGIC:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                return max(len(data), sum(i.file_size for i in zf.infolist()))
        except (zipfile.BadZipFile, ValueError, OSError, EOFError):
            pass  # a damaged archive is refused when it is read; it counts as what it weighs
    return len(data)


def session_uploaded(session: str | None = None) -> int:
    """Bytes the session (default: the current one) has uploaded so far."""
    session = session if session is not None else demo.current_session()
    return int(_read_ledger().get(session or "", {}).get("bytes", 0))


def charge_uploads(items: Sequence[tuple[str, bytes]]) -> int:
    """Count a batch of uploads (name, bytes) against the current session's quota and record it; DemoRefused,
    with nothing recorded, when the batch would pass the quota or the workspaces are full. Returns the bytes
    charged (0 outside demo mode or outside a session)."""
    session = demo.current_session()
    if not demo.enabled() or not session:
        return 0
    check_workspaces_disk(0, what="these uploads")
    sizes = [(name, upload_size(bytes(data))) for name, data in items]
    total = sum(n for _, n in sizes)
    with file_lock(_ledger_path().with_suffix(".lock")):
        ledger = _read_ledger()
        used = int(ledger.get(session, {}).get("bytes", 0))
        if used + total > demo.DEMO_SESSION_UPLOAD_BYTES:
            raise demo.DemoRefused(_over_quota(sizes, used))
        now = time.time()
        ledger = {k: v for k, v in ledger.items() if now - v.get("updated", 0) < demo.DEMO_WORKSPACE_TTL_S}
        ledger[session] = {"bytes": used + total, "updated": now}
        atomic_write_json(_ledger_path(), ledger)
    return total


def _over_quota(sizes: list[tuple[str, int]], used: int) -> str:
    name, size = max(sizes, key=lambda s: s[1])
    left = max(0, demo.DEMO_SESSION_UPLOAD_BYTES - used)
    what = f"{name} ({demo.mib(size)})"
    if len(sizes) > 1:
        what = f"{len(sizes)} uploads of {demo.mib(sum(s for _, s in sizes))} in all (the largest: {what})"
    return (f"{what} would pass this public demo's upload quota of {demo.mib(demo.DEMO_SESSION_UPLOAD_BYTES)} per "
            f"session ({demo.mib(used)} used, {demo.mib(left)} left; a zip counts as its expanded size); nothing "
            "was written; upload fewer or smaller images")


def workspaces_disk_bytes() -> int:
    """Bytes of every file under the workspaces folder (symlinks not followed)."""
    total, stack = 0, [config.workspaces_dir()]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue  # a folder swept or deleted while we walked
    return total


def check_workspaces_disk(extra: int, *, what: str) -> None:
    """DemoRefused when writing ``extra`` more bytes would pass the cap on all workspaces (or they are full)."""
    if not demo.enabled():
        return
    used = workspaces_disk_bytes()
    cap = demo.DEMO_WORKSPACES_DISK_BYTES
    if used + extra <= cap and used < cap:
        return
    where = f"all workspaces of this public demo use {demo.mib(used)} of their {demo.mib(cap)}"
    head = f"{what} would take {demo.mib(extra)} more while {where}" if extra else f"{what}: {where}"
    raise demo.DemoRefused(f"{head}; nothing was written; add fewer images, or try again once older demo "
                           f"workspaces are swept ({demo.DEMO_WORKSPACE_TTL_S // 3600} hours after their creation)")


def _ledger_path() -> Path:
    return config.data_root() / LEDGER


def _read_ledger() -> dict:
    try:
        data = json.loads(_ledger_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
