"""The run engine: register a run's record before its work starts, run it in a worker, queue it behind its kind's
limit, cancel it, recover and resume it. It knows no domain: kinds register themselves
(:mod:`core.runs.registration`) next to the code they run.

``start(kind, cfg)`` validates the config, registers the record and starts a worker thread that never touches
streamlit; the thread waits its turn in the FIFO queue (:mod:`core.runs.queue`: per-kind limits, 5 evaluations
at once, the rest queued with a visible place in line) and then runs the work in a worker process of lower
priority (:mod:`core.runs.workers`), so heavy runs never starve the pages. A run left ``queued``/``running`` by a
process that is gone (the record's ``owner`` names host, pid and the process's start time, so the app and the CLI can
share one store) is marked ``interrupted`` by :func:`recover_interrupted`. A kind with :class:`Resume` hooks (a
training saves its state after every epoch) can be continued under the same id with :func:`resume`.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import asdict
from typing import Callable

from core.base import demo, store
from core.base.run_history import prune_runs
from core.base.progress import ProgressFn
from core.runs.context import RunContext, cancel_events
from core.runs import workers
from core.runs.owner import OWNER, owner_alive
from core.runs.queue import QUEUE
from core.runs.records import ACTIVE, RECORD_VERSION, get, set_fields
from core.runs.registration import KINDS, concurrency_limit, config_from_json, find_kind, get_kind

Runner = Callable[[RunContext, dict], dict]

_threads: dict[str, threading.Thread] = {}
#: The public demo (:mod:`core.base.demo`): runs of all sessions that work at once (the rest queue, with their
#: place in line shown), runs queued or running in all (more are refused), and per session.
DEMO_RUNS_AT_ONCE = 2
DEMO_ACTIVE_RUNS = 6
DEMO_SESSION_ACTIVE_RUNS = 3
_guard = threading.Lock()


def start(kind: str, cfg, *, foreground: bool = False, echo: ProgressFn | None = None) -> str:
    """Validate ``cfg`` (the kind's config dataclass, or its JSON dict), register the run, start its worker.

    ``foreground`` runs the work in this thread and returns when it ends (the CLI), telling ``echo`` every
    tick. Raises ValueError with the fix for an impossible request; nothing is registered then. Returns the run
    id.
    """
    spec = get_kind(kind)
    if isinstance(cfg, dict):
        cfg = config_from_json(kind, cfg)
    if not isinstance(cfg, spec.config):
        raise ValueError(f"a {kind} run takes a {spec.config.__name__}, got {type(cfg).__name__}")
    inputs = cfg.check()
    return submit(kind, asdict(cfg), lambda ctx, _: spec.runner(ctx, cfg), title=cfg.title(), inputs=inputs,
                  foreground=foreground, echo=echo, _registered=True)


def submit(kind: str, cfg: dict, runner: Runner, *, title: str = "", inputs: dict | None = None,
           foreground: bool = False, echo: ProgressFn | None = None, _registered: bool = False) -> str:
    """Register a run of any runner and start its worker thread; returns the run id. :func:`start` is the
    checked way in for registered kinds; this is for work that is its own config (tests, tools)."""
    run_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    with _guard:  # the demo's counts and the new record in one step: two clicks cannot both take the last place
        session = _check_demo_caps()
        now = time.time()
        store.insert("runs", {"id": run_id, "kind": kind, "version": RECORD_VERSION, "title": title or kind,
                              "config": cfg, "inputs": inputs or {}, "status": "queued", "progress": 0.0,
                              "message": "queued", "result": None, "error": None, "history": [], "created": now,
                              "updated": now, "owner": OWNER, **({demo.SESSION_FIELD: session} if session else {})})
    if demo.enabled():
        prune_runs(keep=demo.DEMO_MAX_RUN_RECORDS)
    _launch(RunContext(run_id, echo=echo), kind, cfg, runner, foreground, _registered)
    return run_id


def _check_demo_caps() -> str | None:
    """In demo mode, refuse (:class:`core.base.demo.DemoRefused`) a run past the caps on active runs, in all and
    for this session; returns the session to record on the run (None outside demo mode or a session)."""
    if not demo.enabled():
        return None
    session = demo.current_session()
    active = [r for r in store.all_records("runs") if r["status"] in ACTIVE and owner_alive(r.get("owner"))]
    if len(active) >= DEMO_ACTIVE_RUNS:
        raise demo.DemoRefused(f"this public demo has {len(active)} runs queued or running, its limit; nothing "
                               "was started: try again when one of them finishes")
    mine = [r for r in active if session and r.get(demo.SESSION_FIELD) == session]
    if len(mine) >= DEMO_SESSION_ACTIVE_RUNS:
        raise demo.DemoRefused(f"you have {len(mine)} runs queued or running, this public demo's limit per "
                               "session; nothing was started: wait for one to finish, or cancel one")
    return session


def _launch(ctx: RunContext, kind: str, cfg: dict, runner: Runner, foreground: bool, registered: bool) -> None:
    with _guard:
        cancel_events[ctx.run_id] = threading.Event()
        QUEUE.global_limit = DEMO_RUNS_AT_ONCE if demo.enabled() else None
    if foreground:
        _work(ctx, kind, cfg, runner, in_process=False)
        return
    in_process = registered and workers.mode() == "process"  # a registered kind's work: a worker process
    t = threading.Thread(target=_work, args=(ctx, kind, cfg, runner, in_process), name=f"run-{ctx.run_id}",
                         daemon=True)
    _threads[ctx.run_id] = t
    t.start()


def _work(ctx: RunContext, kind: str, cfg: dict, runner: Runner, in_process: bool) -> None:
    """Wait in the queue, then run the work here or in a worker process (registered kinds, see
    :mod:`core.runs.workers`)."""
    run_id = ctx.run_id
    acquired = False
    try:
        acquired = QUEUE.acquire(run_id, kind, concurrency_limit(kind), ctx.should_stop)
        if not acquired or ctx.should_stop():  # cancelled while it waited, or as it got its slot
            set_fields(run_id, status="cancelled", message="cancelled before it started")
            return
        if in_process:
            workers.run_in_process(ctx, kind, get_kind(kind).runner.__module__, cfg,
                                   workers.worker_threads(QUEUE.running()))
        else:
            workers.execute(ctx, lambda c: runner(c, cfg))
    finally:
        if acquired:
            QUEUE.release(kind)
        cancel_events.pop(run_id, None)


def cancellable(run_id: str) -> bool:
    """Whether this process runs it (a run of another process, a CLI training, stops there: Ctrl-C)."""
    return run_id in cancel_events


def cancel(run_id: str) -> bool:
    """Ask a queued or running run of this process to stop; returns whether it was active here."""
    ev = cancel_events.get(run_id)
    if ev is None:
        return False
    ev.set()
    set_fields(run_id, message="cancelling...")
    return True


def wait(run_id: str, *, timeout: float = 600.0, poll: float = 0.1) -> dict:
    """Block until the run leaves queued/running (for the CLI and tests)."""
    deadline = time.monotonic() + timeout
    t = _threads.get(run_id)
    if t is not None:
        t.join(timeout)
    while True:
        rec = get(run_id)
        if rec is None:
            raise ValueError(f"no run {run_id!r}")
        if rec["status"] not in ACTIVE or time.monotonic() > deadline:
            return rec
        time.sleep(poll)


def _has_state(rec: dict) -> bool:
    spec = find_kind(rec["kind"])
    return spec is not None and spec.resume is not None and spec.resume.has_state(rec)


def resumable(rec: dict) -> bool:
    """Whether :func:`resume` can continue this run: one of a resumable kind, stopped after saving a state."""
    return rec["status"] in ("interrupted", "failed", "cancelled") and _has_state(rec)


def resume(run_id: str, *, foreground: bool = False, echo: ProgressFn | None = None) -> str:
    """Continue an interrupted (or failed, or cancelled) run of a resumable kind from its saved state.

    The run keeps its id, config and inputs; its history goes back to the saved state's (a training, on the same
    machine and thread count, ends with the model an uninterrupted run would have made). Raises ValueError with
    the reason when it cannot be resumed.
    """
    rec = store.get("runs", key="id", value=run_id)
    if rec is None:
        raise ValueError(f"no run {run_id!r}; list them with `python -m core runs list`")
    spec = find_kind(rec["kind"])
    if spec is None or spec.resume is None:
        what = " and ".join(k.resume.what for k in KINDS.table.values() if k.resume) or "no"
        raise ValueError(f"{run_id} is a {rec['kind']} run; only {what} runs can be resumed (start it again)")
    if rec["status"] == "done":
        raise ValueError(f"{run_id} finished already; nothing to resume")
    if rec["status"] in ACTIVE and owner_alive(rec.get("owner")):
        raise ValueError(f"{run_id} is still {rec['status']} in process {rec.get('owner')}")
    cfg = config_from_json(rec["kind"], rec["config"])
    point = spec.resume.prepare(rec, cfg, cfg.check())

    def claim(doc: dict) -> dict:  # check and take the run in one locked step: two resumes cannot both win
        if doc["status"] in ACTIVE and owner_alive(doc.get("owner")):
            raise ValueError(f"{run_id} is already {doc['status']} in process {doc.get('owner')}")
        doc.update(status="queued", message=point.message, history=point.history, error=None,
                   progress=point.progress, progress_start=point.progress, owner=OWNER,
                   resumed=int(doc.get("resumed") or 0) + 1, updated=time.time())
        return doc

    store.modify("runs", claim, key="id", value=run_id)
    ctx = RunContext(run_id, resuming=True, echo=echo)
    ctx._points = list(point.curve)  # the curve so far stays
    _launch(ctx, rec["kind"], rec["config"], lambda ctx, _: spec.runner(ctx, cfg), foreground, True)
    return run_id


def recover_interrupted() -> int:
    """Mark runs that a previous process left queued or running as interrupted; returns how many."""
    n = 0
    for rec in store.all_records("runs"):
        if rec["status"] in ACTIVE and not owner_alive(rec.get("owner")):
            hint = get_kind(rec["kind"]).resume.hint if _has_state(rec) else ""
            set_fields(rec["id"], status="interrupted",
                       message="interrupted: the process running it stopped" + (f"; {hint}" if hint else ""))
            n += 1
    return n
