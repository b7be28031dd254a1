"""Where a run's work executes, and how its end is recorded.

A registered kind started by a long-lived process (the app) runs in a **worker process** of its own: forked from
a server process that has the kinds' modules imported already (``forkserver``, so a start costs a fork, not an
interpreter and torch), at a lower CPU priority (``nice`` +:data:`WORKER_NICE`) and with bounded torch threads.
Heavy runs then share the CPUs among themselves and never take the GIL or the cores from the server that draws
the pages. The worker writes the run's progress, history and end to the store exactly as a thread would; the
parent forwards a cancel (SIGTERM, turned into the run's cancel event) and marks the run failed if the worker
dies without recording an end. A worker whose parent is gone stops at once (the run shows ``interrupted`` to the
next app, and resumes like any interrupted run).

``TSW_RUN_WORKERS=thread`` keeps every run in a thread of the starting process (the tests' default, where a test
patches what a run calls); work given to :func:`core.runs.submit` (any callable) and foreground runs (the CLI,
itself one process per command) always run in the calling process.
"""
from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from typing import Callable

from core.base import demo
from core.base.progress import Cancelled
from core.runs.context import RunContext, cancel_events
from core.runs.owner import OWNER, owner_alive
from core.runs.records import ACTIVE, get, set_fields
from core.runs.registration import KINDS, config_from_json, get_kind

#: Environment variable choosing where registered kinds run: ``process`` (default) or ``thread``.
MODE_ENV = "TSW_RUN_WORKERS"
MODES = ("process", "thread")
#: How much lower a worker process's CPU priority is than the app's (Unix ``nice``; 19 is the lowest).
WORKER_NICE = 5
#: Environment variables a worker takes from its parent at the moment the run starts (the data root moves).
_ENV_PREFIXES = ("TSW_", "NO_ALBUMENTATIONS")



def _limit_torch(threads: int) -> None:
    """Bound torch's compute threads in a worker, where the kind's module loaded torch (the engine never imports
    it): heavy runs share the cores instead of each taking all of them."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


#: Called in each worker process before the run, with the number of compute threads it may use
#: (:func:`on_worker_start` adds more).
_SETUP: list[Callable[[int], None]] = [_limit_torch]
_mp_context = None
_mp_guard = threading.Lock()


def mode() -> str:
    """``process`` or ``thread`` (from :data:`MODE_ENV`; ``thread`` where the platform has no forkserver);
    ValueError naming the choices for anything else."""
    value = os.environ.get(MODE_ENV, "process").strip().lower() or "process"
    if value not in MODES:
        raise ValueError(f"{MODE_ENV}={value!r}: use one of {', '.join(MODES)}")
    if value == "process" and "forkserver" not in multiprocessing.get_all_start_methods():
        return "thread"  # Windows has no forkserver: runs work in threads there, as before
    return value


def on_worker_start(fn: Callable[[int], None]) -> Callable[[int], None]:
    """Register ``fn(threads)`` to run in every worker process before its run (e.g. ``torch.set_num_threads``)."""
    if fn not in _SETUP:
        _SETUP.append(fn)
    return fn


def worker_threads(running: int) -> int:
    """Compute threads for a worker that starts while ``running`` runs (itself included) hold a slot: the cores
    shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, running))


def execute(ctx: RunContext, work: Callable[[RunContext], dict]) -> None:
    """Run ``work`` (as the demo session that started the run, if any) and record its end in the run's record:
    done with its result, cancelled, interrupted (Ctrl-C, re-raised) or failed with the error and a short
    traceback."""
    run_id = ctx.run_id
    session = (get(run_id) or {}).get(demo.SESSION_FIELD)  # the demo session that started it, if any
    try:
        set_fields(run_id, status="running", message="started", started=time.time())
        with demo.session_scope(session):  # what it makes belongs to that session
            result = work(ctx)
        set_fields(run_id, status="done", progress=1.0, message="done", result=result, finished=time.time())
    except Cancelled:
        set_fields(run_id, status="cancelled", message="cancelled; no model or report was saved",
                   finished=time.time())
    except KeyboardInterrupt:  # Ctrl-C: resumable like a crash
        set_fields(run_id, status="interrupted", message="interrupted (Ctrl-C)", finished=time.time())
        raise
    except Exception as e:  # a crash marks the run failed with its message
        set_fields(run_id, status="failed", message=f"failed: {e}", error=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc(limit=8), finished=time.time())


def _context(modules: list[str]):
    global _mp_context
    with _mp_guard:
        if _mp_context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(modules)  # the kinds' modules (torch and all) imported once, then forked
            _mp_context = ctx
        return _mp_context


def run_in_process(ctx: RunContext, kind: str, module: str, cfg: dict, threads: int) -> None:
    """Run a registered kind's work in a worker process and wait for it, forwarding a cancel. ``module`` is the
    module that registers the kind (imported in the worker)."""
    preload = sorted({k.runner.__module__ for k in KINDS.table.values()} | {module})
    env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
    proc = _context(preload).Process(
        target=_worker_main, name=f"run-{ctx.run_id}", daemon=True,
        args=(ctx.run_id, kind, module, cfg, ctx.resuming, list(ctx._points), env, threads, OWNER))
    proc.start()
    signalled = False
    while proc.is_alive():
        ev = cancel_events.get(ctx.run_id)
        if ev is not None and ev.is_set() and not signalled:
            proc.terminate()  # SIGTERM: the worker sets its cancel event and stops at its next check
            signalled = True
        proc.join(0.2)
    rec = get(ctx.run_id)
    if rec is not None and rec["status"] in ACTIVE and signalled:  # cancelled before it could take the signal
        set_fields(ctx.run_id, status="cancelled", message="cancelled; no model or report was saved",
                   finished=time.time())
    elif rec is not None and rec["status"] in ACTIVE:  # it died without recording an end (killed, out of memory)
        set_fields(ctx.run_id, status="failed", message=f"failed: its worker process ended (exit code {proc.exitcode})",
                   error=f"worker process ended with exit code {proc.exitcode}", finished=time.time())


def _worker_main(run_id: str, kind: str, module: str, cfg: dict, resuming: bool, points: list, env: dict,
                 threads: int, parent: str) -> None:
    """A worker process: take the parent's settings, lower the priority, run the kind, record its end."""
    for key in [k for k in os.environ if k.startswith(_ENV_PREFIXES)]:
        os.environ.pop(key)
    os.environ.update(env)
    try:
        os.nice(WORKER_NICE)
    except (OSError, AttributeError):  # not allowed, or no nice (Windows): run at normal priority
        pass
    importlib.import_module(module)  # registers the kind (already imported where the server preloaded it)
    for setup in _SETUP:
        setup(threads)
    stop = threading.Event()
    cancel_events[run_id] = stop
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="parent-watch").start()
    spec = get_kind(kind)
    config = config_from_json(kind, cfg)
    ctx = RunContext(run_id, resuming=resuming)
    ctx._points = points
    execute(ctx, lambda c: spec.runner(c, config))


def _watch_parent(parent: str) -> None:
    """End this worker at once when the process that started it (``host:pid:start``) is gone (killed,
    restarted): the next app marks the run interrupted, and a training resumes from its last saved epoch."""
    while owner_alive(parent):
        time.sleep(1.0)
    os._exit(3)
