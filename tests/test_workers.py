"""Runs of registered kinds in worker processes (the product's default, ``core.runs.workers``) and the FIFO queue
in front of them. Every wait is on a run's status or a file, with generous ceilings."""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core import runs
from waits import RUN_S
from core.runs import workers
from core.runs.queue import Slots

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def probe_kind(monkeypatch):
    """The ``probe`` kind registered (tests/worker_kinds.py), runs in worker processes; the kinds table restored
    after the test."""
    monkeypatch.setenv(workers.MODE_ENV, "process")
    monkeypatch.setattr(runs.KINDS, "table", dict(runs.KINDS.table))
    sys.modules.pop("worker_kinds", None)
    return importlib.import_module("worker_kinds")


def _wait_for(cond, what: str, ceiling: float = RUN_S) -> None:
    deadline = time.monotonic() + ceiling
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not within {ceiling:.0f} s"
        time.sleep(0.05)


def test_a_registered_kind_runs_in_a_lower_priority_worker_process_with_bounded_threads(probe_kind, data_root):
    rec = runs.wait(runs.start("probe", probe_kind.Probe()), timeout=RUN_S)
    assert rec["status"] == "done", rec
    out = rec["result"]
    assert out["pid"] != os.getpid()  # not this process
    assert out["nice"] >= os.nice(0) + workers.WORKER_NICE or out["nice"] == 19
    assert 1 <= out["threads"] <= (os.cpu_count() or 1)
    assert out["data_root"] == str(data_root.resolve())  # the data root of the moment it started
    assert rec["history"] == [{"step": 1}] and rec["progress"] == 1.0


def test_the_data_root_of_the_moment_a_run_starts_travels_to_its_worker(probe_kind, tmp_path, monkeypatch):
    first = runs.wait(runs.start("probe", probe_kind.Probe()), timeout=RUN_S)
    other = tmp_path / "other-root"
    monkeypatch.setenv("TSW_DATA_ROOT", str(other))
    second = runs.wait(runs.start("probe", probe_kind.Probe()), timeout=RUN_S)
    assert second["result"]["data_root"] == str(other.resolve()) != first["result"]["data_root"]


def test_cancel_reaches_the_worker_process_and_the_run_ends_cancelled(probe_kind, tmp_path):
    pid_file = tmp_path / "pid"
    run_id = runs.start("probe", probe_kind.Probe("wait", str(pid_file)))
    _wait_for(pid_file.is_file, "the worker started")
    assert runs.cancellable(run_id)
    _wait_for(lambda: runs.get(run_id)["progress"] == 0.5, "a progress tick from the worker")
    runs.cancel(run_id)
    rec = runs.wait(run_id, timeout=RUN_S)
    assert rec["status"] == "cancelled" and "no model or report" in rec["message"]
    pid = int(pid_file.read_text())
    _wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
              "the worker process ended")


def test_a_worker_that_dies_or_raises_marks_its_run_failed(probe_kind):
    died = runs.wait(runs.start("probe", probe_kind.Probe("exit")), timeout=RUN_S)
    assert died["status"] == "failed" and "exit code 7" in died["error"]
    raised = runs.wait(runs.start("probe", probe_kind.Probe("fail")), timeout=RUN_S)
    assert raised["status"] == "failed" and raised["error"] == "RuntimeError: probe failed on purpose"
    assert "run_probe" in raised["traceback"]


def test_a_worker_stops_when_the_app_that_started_it_is_killed(tmp_path, data_root):
    """The parent is SIGKILLed: its worker ends too, and the next process marks the run interrupted."""
    pid_file = tmp_path / "pid"
    code = ("import sys, time; sys.path.insert(0, 'tests'); import core.kinds, worker_kinds; from core import runs;"
            f"runs.start('probe', worker_kinds.Probe('wait', {str(pid_file)!r})); time.sleep(600)")
    env = dict(os.environ, TSW_RUN_WORKERS="process", TSW_DATA_ROOT=str(data_root))
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT, env=env)
    try:
        _wait_for(pid_file.is_file, "the worker started")
        worker = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait(RUN_S)
        _wait_for(lambda: not Path(f"/proc/{worker}").exists(), "the orphaned worker ended")
    finally:
        if parent.poll() is None:
            parent.kill()
    assert runs.recover_interrupted() == 1
    (rec,) = runs.list_runs("probe")
    assert rec["status"] == "interrupted"


def test_the_queue_is_first_come_first_served_within_each_limit_and_tells_a_place_in_line():
    slots = Slots()
    assert slots.acquire("a", "eval", 1, lambda: False)
    started = []

    def take(run_id, kind):
        if slots.acquire(run_id, kind, 1, lambda: False):
            started.append(run_id)
    waiters = [threading.Thread(target=take, args=(rid, "eval")) for rid in ("b", "c")]
    for t in waiters:
        t.start()
        _wait_for(lambda: slots.position(t._args[0]) is not None, "queued")
    assert slots.position("b") == (1, 2) and slots.position("c") == (2, 2)
    assert slots.acquire("t", "train", 1, lambda: False)  # another kind: its own limit, no waiting
    slots.release("eval")
    _wait_for(lambda: started == ["b"], "b started first")
    assert slots.position("c") == (1, 1)
    slots.release("eval")
    _wait_for(lambda: started == ["b", "c"], "then c")
    for t in waiters:
        t.join(RUN_S)
    assert slots.position("c") is None and slots.running() == 2  # c and the training


def test_a_global_limit_queues_every_kind_in_one_line_and_a_cancelled_waiter_leaves_it():
    slots = Slots()
    slots.global_limit = 1
    assert slots.acquire("a", "eval", 5, lambda: False)
    stop = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: result.update(ok=slots.acquire("b", "train", 1, stop.is_set)))
    t.start()
    _wait_for(lambda: slots.position("b") == (1, 1), "b waits behind the global limit")
    stop.set()
    t.join(RUN_S)
    assert result == {"ok": False} and slots.position("b") is None and slots.running() == 1


def test_an_unknown_worker_mode_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv(workers.MODE_ENV, "fibers")
    with pytest.raises(ValueError, match="process, thread"):
        workers.mode()


def test_a_queued_run_shows_its_place_in_line(probe_kind, tmp_path):
    """The probe kind runs two at once: the third waits, first in line, and its record says so."""
    ids = [runs.start("probe", probe_kind.Probe("wait", str(tmp_path / f"pid{i}"))) for i in range(3)]
    _wait_for(lambda: (tmp_path / "pid0").is_file() and (tmp_path / "pid1").is_file(), "two workers started")
    third = runs.get(ids[2])
    assert third["status"] == "queued" and third["queue_position"] == [1, 1]
    assert runs.get(ids[0]).get("queue_position") is None
    for run_id in reversed(ids):  # the queued one first: it must never start
        runs.cancel(run_id)
    assert [runs.wait(r, timeout=RUN_S)["status"] for r in ids] == ["cancelled"] * 3
    assert not (tmp_path / "pid2").exists()  # it never started


def test_the_run_status_line_shows_a_queued_runs_place_in_line():
    from streamlit.testing.v1 import AppTest

    def app():
        import sys
        sys.path.insert(0, ".")
        from ui.widgets import run_status
        run_status({"status": "queued", "title": "evaluate benchmark", "message": "queued", "progress": 0.0,
                    "queue_position": [2, 3]})

    at = AppTest.from_function(app, default_timeout=RUN_S).run()
    assert not at.exception, at.exception
    assert "2 of 3 in line" in at.get("progress")[0].proto.text


def test_without_a_forkserver_runs_work_in_threads(monkeypatch):
    """Windows has no forkserver start method: the product falls back to threads instead of failing every run."""
    import multiprocessing
    monkeypatch.setenv(workers.MODE_ENV, "process")
    assert workers.mode() == "process"
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert workers.mode() == "thread"


def test_a_cancel_as_the_worker_starts_ends_the_run_cancelled_not_failed(probe_kind, tmp_path):
    """Found by CI: a cancel that reached a worker before it had installed its signal handler killed it, and the
    run showed "failed"."""
    for k in range(3):
        run_id = runs.start("probe", probe_kind.Probe("wait", str(tmp_path / f"pid{k}")))
        runs.cancel(run_id)  # at once: while queued, as it gets its slot, or as its worker starts
        rec = runs.wait(run_id, timeout=RUN_S)
        assert rec["status"] == "cancelled", rec
