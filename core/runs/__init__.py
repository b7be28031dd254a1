"""Runs: the one home of long work (FiftyOne-style runs), a framework that knows no domain.

A run is a record in the store registered before its work starts (:mod:`core.runs.records`); a worker thread
or a worker process (:mod:`core.runs.workers`) runs it, reporting progress through a :class:`RunContext`
(:mod:`core.runs.context`); the engine queues (:mod:`core.runs.queue`), cancels, recovers and resumes runs
(:mod:`core.runs.engine`). What can run is a table of kinds that register themselves
next to the code they run (:mod:`core.runs.registration`); :mod:`core.kinds` imports them all. Pages, the CLI and
tests use this package's names only: ``from core import runs; runs.start("evaluate", cfg)``.

May import: ``core.base`` only.
"""
from core.runs.context import MAX_CURVE_POINTS, PROGRESS_INTERVAL_S, RunContext, curve_points, run_dir
from core.runs.engine import cancel, cancellable, recover_interrupted, resumable, resume, start, submit, wait
from core.runs.owner import OWNER, owner_alive
from core.runs.records import ACTIVE, RECORD_VERSION, get, list_runs, time_left
from core.runs.queue import position as queue_position
from core.runs.workers import on_worker_start
from core.runs.registration import (KINDS, Resume, ResumePoint, RunConfig, RunKind, config_from_fields,
                                    config_from_json, find_kind, get_kind, kind_names,
                                    register_kind)

__all__ = ["ACTIVE", "KINDS", "MAX_CURVE_POINTS", "OWNER", "PROGRESS_INTERVAL_S", "RECORD_VERSION", "Resume",
           "ResumePoint", "RunConfig", "RunContext", "RunKind", "cancel", "cancellable", "config_from_fields",
           "config_from_json", "curve_points", "find_kind", "get", "get_kind", "kind_names", "list_runs",
           "on_worker_start", "owner_alive", "queue_position", "recover_interrupted", "register_kind", "resumable",
           "resume", "run_dir", "start", "submit", "time_left", "wait"]
