"""Run records in the store (table ``runs``), read with their latest progress tick::

    {id, kind, version, title, config, inputs, status, progress, message, result, error, history,
     created, updated, started, finished, owner}

``inputs`` holds the fingerprints of what the run reads (a model file's hash, a dataset's version), so a result
can always say which exact inputs produced it.
"""
from __future__ import annotations

import json
import threading
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
        tick_time = None
        try:
            tick = json.loads((run_dir(rec["id"]) / "progress.json").read_text(encoding="utf-8"))
            if tick["updated"] >= rec.get("updated", 0):
                rec.update(progress=tick["progress"], message=tick["message"] or rec.get("message"))
                tick_time = float(tick["updated"])
        except (OSError, ValueError, KeyError):
            pass
        rec["pace"] = _observe(rec["id"], tick_time, float(rec.get("progress") or 0.0))
        rec["seconds_left"] = time_left(rec)
    else:
        with _pace_lock:
            _paces.pop(rec["id"], None)
    return rec


#: An estimate needs the run to have moved this much (fraction) over at least this many seconds of ticks seen.
MIN_PACE_PROGRESS = 0.03
MIN_PACE_SECONDS = 3.0
#: The pace is measured over about the last this-many seconds of ticks, so a run that changes speed is followed.
PACE_WINDOW_S = 60.0
#: Progress ticks (time, fraction) this process has seen of each running run.
_paces: dict[str, list[tuple[float, float]]] = {}
_pace_lock = threading.Lock()


def _observe(run_id: str, tick_time: float | None, fraction: float) -> list[tuple[float, float]]:
    """Note a run's latest tick; returns its ticks seen, oldest first, one per fraction (the latest: a run that
    waited at a fraction, loading images, starts its pace when it moves on). A fraction that went back (a
    resumed run) starts them again."""
    with _pace_lock:
        seen = _paces.setdefault(run_id, [])
        if tick_time is None:  # no tick newer than the record: nothing new about its pace
            return list(seen)
        if seen and fraction < seen[-1][1]:
            seen.clear()
        if not seen or tick_time > seen[-1][0]:
            if seen and fraction == seen[-1][1]:
                seen.pop()  # no progress since: the pace starts when it moves again (a stall is no pace)
            seen.append((tick_time, fraction))
        while len(seen) > 2 and seen[-1][0] - seen[1][0] >= PACE_WINDOW_S:
            seen.pop(0)  # keep just over a window
        return list(seen)


def time_left(rec: dict, *, now: float | None = None) -> float | None:
    """Seconds a running run still needs; None until there is a measured pace to go by.

    With ``pace`` (the run's progress ticks ``[(time, fraction), ...]`` as this process saw them), the pace is the
    progress made between the oldest and the newest tick, which leaves out the time before the first tick seen
    (a worker starting, images loading), which a straight line from the start counts as work. It
    needs :data:`MIN_PACE_PROGRESS` of progress over :data:`MIN_PACE_SECONDS`. Without ``pace`` (a bare record),
    a straight line from the time since it started (at least 2 % and 2 s of work).
    """
    started, fraction = rec.get("started"), float(rec.get("progress") or 0.0)
    if rec.get("status") != "running" or not started or fraction >= 1.0:
        return None
    pace = rec.get("pace")
    if pace is not None:
        if len(pace) < 2:
            return None
        (t0, f0), (t1, f1) = pace[0], pace[-1]
        if t1 - t0 < MIN_PACE_SECONDS or f1 - f0 < MIN_PACE_PROGRESS:
            return None
        return (1.0 - f1) * (t1 - t0) / (f1 - f0)
    first = float(rec.get("progress_start") or 0.0)  # a resumed run starts part-way
    if fraction - first < 0.02:
        return None
    elapsed = (time.time() if now is None else now) - started
    if elapsed < 2.0:
        return None
    return elapsed * (1.0 - fraction) / (fraction - first)
