"""Which process owns a run: ``host:pid:start``, so the app and the CLI can share one store and a run left
active by a process that is gone can be told from one still at work."""
from __future__ import annotations

import os
import socket
from pathlib import Path


def _start_time(pid: int) -> str:
    """A process's start time in clock ticks since boot (Linux ``/proc``); '' where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


#: This process as ``host:pid:start``: a pid alone could be reused by another process after a crash.
OWNER = f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def owner_alive(owner: str | None) -> bool:
    """Whether the process named by a record's ``owner`` still runs (True when that cannot be told: another
    host). Owners of older records (no host and pid) are taken as gone."""
    if owner == OWNER:
        return True
    parts = (owner or "").rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid, start = parts
    if host != socket.gethostname():
        return True
    now = _start_time(int(pid))
    if now or start:
        return now == start
    if os.name == "nt":  # os.kill(pid, 0) would end the process there; without /proc, say alive
        return True
    try:  # no /proc (macOS): the pid alone
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError):
        return False
