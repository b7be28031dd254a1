"""Run records in the store (table ``runs``), read with their latest progress tick::

    {id, kind, version, title, config, inputs, status, progress, message, result, error, history,
     created, updated, started, finished, owner}

``inputs`` holds the fingerprints of what the run reads (a model file's hash, a dataset's version), so a result
can always say which exact inputs produced it.
"""
from __future__ import annotations

import json
import time
from typing import Any

from core.base import store
from core.runs.context import run_dir
from core.runs.queue import position

#: Version of the run record's shape; records of older versions are still listed.
RECORD_VERSION = 2
#: Statuses of a run still in progress; the others are "done", "failed", "cancelled" and "interrupted".
ACTIVE = ("queued", "running")


def set_fields(run_id: str, **values: Any) -> None:
    """Change fields of a run's record (and its ``updated`` time)."""
    values["updated"] = time.time()
    store.update("runs", values, key="id", value=run_id)


def get(run_id: str) -> dict | None:
    rec = store.get("runs", key="id", value=run_id)
    return _with_progress(rec) if rec else None


def list_runs(kind: str | None = None, *, statuses: tuple[str, ...] | None = None) -> list[dict]:
    """Run records, newest first."""
    recs = [r for r in store.all_records("runs") if (kind is None or r["kind"] == kind)
            and (statuses is None or r["status"] in statuses)]
    return [_with_progress(r) for r in sorted(recs, key=lambda r: r["created"], reverse=True)]


def _with_progress(rec: dict) -> dict:
    """An active run's record with its latest progress tick from the run folder and its time left, or, while it
    waits in this process's queue, its place in line (``queue_position``: ``[place, of]``)."""
    if rec["status"] == "queued":
        place = position(rec["id"])
        rec["queue_position"] = list(place) if place else None
    if rec["status"] == "running":
        try:
            tick = json.loads((run_dir(rec["id"]) / "progress.json").read_text(encoding="utf-8"))
            if tick["updated"] >= rec.get("updated", 0):
                rec.update(progress=tick["progress"], message=tick["message"] or rec.get("message"))
        except (OSError, ValueError, KeyError):
            pass
        rec["seconds_left"] = time_left(rec)
    return rec


def time_left(rec: dict, *, now: float | None = None) -> float | None:
    """Seconds a running run still needs at the pace it has kept so far; None until there is a pace to go by.

    A straight-line estimate from the time since it started and its progress fraction (progress at least 2 %
    and 2 s of work, so the first ticks do not promise nonsense).
    """
    started, fraction = rec.get("started"), float(rec.get("progress") or 0.0)
    first = float(rec.get("progress_start") or 0.0)  # a resumed run starts part-way
    if rec.get("status") != "running" or not started or fraction - first < 0.02 or fraction >= 1.0:
        return None
    elapsed = (time.time() if now is None else now) - started
    if elapsed < 2.0:
        return None
    return elapsed * (1.0 - fraction) / (fraction - first)
