"""The queue in front of the workers: first come, first served, within each kind's limit (5 evaluations at once)
and an optional limit on all runs at once (the public demo's).

A run waits in :data:`QUEUE` until it is first in line among the runs it competes with (its own kind's, or every
kind's while a global limit is set) and a slot is free; :func:`position` tells a page where a queued run stands.
The queue is this process's (the app's); records in the store say ``queued`` for as long as a run waits here.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Callable


class Slots:
    """FIFO slots: per-kind limits plus an optional global limit."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[tuple[str, str]] = []  # (run id, kind), in arrival order
        self._running: Counter[str] = Counter()
        #: most runs of all kinds at once; None: only the per-kind limits
        self.global_limit: int | None = None

    def _competitors(self, kind: str) -> list[str]:
        glob = self.global_limit is not None
        return [rid for rid, k in self._waiting if glob or k == kind]

    def _may_start(self, run_id: str, kind: str, limit: int) -> bool:
        if self._competitors(kind)[:1] != [run_id] or self._running[kind] >= limit:
            return False
        return self.global_limit is None or sum(self._running.values()) < self.global_limit

    def acquire(self, run_id: str, kind: str, limit: int, should_stop: Callable[[], bool]) -> bool:
        """Wait for a slot; False when the run was cancelled while it waited (it leaves the queue)."""
        with self._cond:
            self._waiting.append((run_id, kind))
            try:
                while not self._may_start(run_id, kind, limit):
                    if should_stop():
                        return False
                    self._cond.wait(0.2)
                self._running[kind] += 1
                return True
            finally:
                self._waiting.remove((run_id, kind))
                self._cond.notify_all()

    def release(self, kind: str) -> None:
        with self._cond:
            self._running[kind] -= 1
            self._cond.notify_all()

    def position(self, run_id: str) -> tuple[int, int] | None:
        """``(place in line, runs in line)`` of a run waiting here, 1-based; None when it does not wait here."""
        with self._cond:
            kind = next((k for rid, k in self._waiting if rid == run_id), None)
            if kind is None:
                return None
            line = self._competitors(kind)
            return line.index(run_id) + 1, len(line)

    def running(self) -> int:
        """Runs holding a slot now (all kinds)."""
        with self._cond:
            return sum(self._running.values())


#: This process's queue.
QUEUE = Slots()


def position(run_id: str) -> tuple[int, int] | None:
    """Where a queued run of this process stands: ``(place, of)``; None when it is not waiting here."""
    return QUEUE.position(run_id)
