"""What a runner is handed (:class:`RunContext`: progress, cancel) and where a run keeps its files
(:func:`run_dir`).

Progress ticks go to ``<run dir>/progress.json`` (a tiny file, written atomically), not to the store: the store is
written only when a run changes state or adds a history entry. Live training-curve points ride along with the
ticks into ``<run dir>/curve.json``.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.base import config, store
from core.base.files import atomic_write_json
from core.base.progress import Cancelled, ProgressFn, is_batch_point

#: Seconds between progress-file writes of one run (each write is a small atomic file).
PROGRESS_INTERVAL_S = 0.25
#: Live training-curve points kept per run (10 an epoch: 200 epochs' worth).
MAX_CURVE_POINTS = 2000

#: Cancel requests of the runs this process runs (present while a run is queued or running here).
cancel_events: dict[str, threading.Event] = {}


def run_dir(run_id: str) -> Path:
    """The run's own folder (progress file and any files it produces besides models and reports)."""
    return config.runs_dir() / run_id


def curve_points(run_id: str) -> list[dict]:
    """A training run's live curve: ``{epoch (fractional), loss, train_acc}`` means over ~a tenth of an epoch."""
    try:
        return json.loads((run_dir(run_id) / "curve.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []


@dataclass
class RunContext:
    """Handed to a runner: report progress (the :class:`core.base.progress.ProgressFn` shape), check for cancel."""

    run_id: str
    #: a resumed run: the runner picks up its saved state
    resuming: bool = False
    #: also told every tick (the CLI prints them)
    echo: ProgressFn | None = None
    _last_write: float = 0.0
    _points: list = field(default_factory=list)

    def progress(self, fraction: float, message: str = "", entry: dict | None = None) -> None:
        fraction = float(min(max(fraction, 0.0), 1.0))
        if self.echo is not None:
            self.echo(fraction, message, entry)
        if is_batch_point(entry):  # live curve points ride along with the progress ticks
            self._points.append({k: v for k, v in entry.items() if k != "batch"})
            entry = None
        elif entry is not None:  # a history entry is worth a store write (once an epoch)
            self._add_history(entry)
        now = time.monotonic()
        if entry is None and fraction < 1.0 and now - self._last_write < PROGRESS_INTERVAL_S:
            return
        self._last_write = now
        if self._points:
            atomic_write_json(run_dir(self.run_id) / "curve.json", self._points[-MAX_CURVE_POINTS:])
        atomic_write_json(run_dir(self.run_id) / "progress.json",
                          {"progress": fraction, "message": message, "updated": time.time()})

    def _add_history(self, entry: dict) -> None:
        def add(doc: dict) -> dict:
            doc["history"] = list(doc.get("history") or []) + [entry]
            doc["updated"] = time.time()
            return doc
        store.modify("runs", add, key="id", value=self.run_id)

    def should_stop(self) -> bool:
        ev = cancel_events.get(self.run_id)
        return ev is not None and ev.is_set()

    def check(self) -> None:
        if self.should_stop():
            raise Cancelled("cancelled by request")
