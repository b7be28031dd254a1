"""Background jobs: a record in the store, a worker thread, a progress callback, cancel.

A job is a *run* (FiftyOne-style): ``{id, kind, config, status, progress, message, result, error, history,
created, updated, owner}`` registered before work starts. Workers never touch streamlit; pages only read the
store. Per-kind limits (5 evaluations at once) queue the rest. A job left ``queued``/``running`` by a process
that is gone is marked ``interrupted`` by :func:`recover_interrupted` when the app starts.
"""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from core import config, store
from core.inference import Cancelled

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
#: Most jobs of a kind running at once; kinds not listed run one at a time.
LIMITS = {"evaluate": config.MAX_CONCURRENT_EVALUATIONS, "anchor": 2, "embed": 2}
#: Seconds between progress writes to the store (the file is rewritten on every write).
PROGRESS_INTERVAL_S = 0.4
#: This process; a job owned by another process id cannot still be running here.
OWNER = f"{uuid.uuid4().hex[:12]}"

_semaphores: dict[str, threading.Semaphore] = {}
_cancel_events: dict[str, threading.Event] = {}
_threads: dict[str, threading.Thread] = {}
_guard = threading.Lock()


@dataclass
class JobContext:
    """Handed to a runner: report progress, check for cancel, append history entries."""

    job_id: str
    _last_write: float = 0.0

    def progress(self, fraction: float, message: str = "", entry: dict | None = None) -> None:
        now = time.monotonic()
        if entry is None and fraction < 1.0 and now - self._last_write < PROGRESS_INTERVAL_S:
            return
        self._last_write = now

        def upd(doc: dict) -> dict:
            doc["progress"] = float(min(max(fraction, 0.0), 1.0))
            if message:
                doc["message"] = message
            if entry is not None:
                doc["history"] = list(doc.get("history") or []) + [entry]
            doc["updated"] = time.time()
            return doc

        store.modify("jobs", upd, key="id", value=self.job_id)

    def should_stop(self) -> bool:
        ev = _cancel_events.get(self.job_id)
        return ev is not None and ev.is_set()

    def check(self) -> None:
        if self.should_stop():
            raise Cancelled("cancelled by request")


Runner = Callable[[JobContext, dict], dict]


def submit(kind: str, cfg: dict, runner: Runner, *, title: str = "") -> str:
    """Register a job and start its worker thread; returns the job id."""
    job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    now = time.time()
    store.insert("jobs", {"id": job_id, "kind": kind, "title": title or kind, "config": cfg, "status": "queued",
                          "progress": 0.0, "message": "queued", "result": None, "error": None, "history": [],
                          "created": now, "updated": now, "owner": OWNER})
    with _guard:
        sem = _semaphores.setdefault(kind, threading.Semaphore(LIMITS.get(kind, 1)))
        _cancel_events[job_id] = threading.Event()
    t = threading.Thread(target=_work, args=(job_id, kind, cfg, runner, sem), name=f"job-{job_id}", daemon=True)
    _threads[job_id] = t
    t.start()
    return job_id


def _set(job_id: str, **fields: Any) -> None:
    fields["updated"] = time.time()
    store.update("jobs", fields, key="id", value=job_id)


def _work(job_id: str, kind: str, cfg: dict, runner: Runner, sem: threading.Semaphore) -> None:
    ctx = JobContext(job_id)
    acquired = False
    try:
        while not (acquired := sem.acquire(timeout=0.2)):
            if ctx.should_stop():
                _set(job_id, status="cancelled", message="cancelled before it started")
                return
        if ctx.should_stop():
            _set(job_id, status="cancelled", message="cancelled before it started")
            return
        _set(job_id, status="running", message="started", started=time.time())
        result = runner(ctx, cfg)
        _set(job_id, status="done", progress=1.0, message="done", result=result, finished=time.time())
    except Cancelled:
        _set(job_id, status="cancelled", message="cancelled; nothing was saved", finished=time.time())
    except Exception as e:  # a crash marks the job failed with its message
        _set(job_id, status="failed", message=f"failed: {e}", error=f"{type(e).__name__}: {e}",
             traceback=traceback.format_exc(limit=8), finished=time.time())
    finally:
        if acquired:
            sem.release()
        _cancel_events.pop(job_id, None)


def cancel(job_id: str) -> bool:
    """Ask a queued or running job of this process to stop; returns whether it was active here."""
    ev = _cancel_events.get(job_id)
    if ev is None:
        return False
    ev.set()
    _set(job_id, message="cancelling...")
    return True


def get(job_id: str) -> dict | None:
    return store.get("jobs", key="id", value=job_id)


def list_jobs(kind: str | None = None, *, statuses: tuple[str, ...] | None = None) -> list[dict]:
    """Jobs, newest first."""
    jobs = [j for j in store.all_records("jobs") if (kind is None or j["kind"] == kind)
            and (statuses is None or j["status"] in statuses)]
    return sorted(jobs, key=lambda j: j["created"], reverse=True)


def wait(job_id: str, *, timeout: float = 600.0, poll: float = 0.1) -> dict:
    """Block until the job leaves queued/running (for the CLI and tests)."""
    deadline = time.monotonic() + timeout
    t = _threads.get(job_id)
    if t is not None:
        t.join(timeout)
    while True:
        job = get(job_id)
        if job is None:
            raise ValueError(f"no job {job_id!r}")
        if job["status"] not in ACTIVE or time.monotonic() > deadline:
            return job
        time.sleep(poll)


def recover_interrupted() -> int:
    """Mark jobs that a previous process left queued or running as interrupted; returns how many."""
    n = 0
    for job in store.all_records("jobs"):
        if job["status"] in ACTIVE and job.get("owner") != OWNER:
            _set(job["id"], status="interrupted", message="interrupted: the app stopped while this job ran")
            n += 1
    return n
