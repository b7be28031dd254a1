import threading
import time

import pytest

from core import runs, store


def _ok(ctx, cfg):
    for i in range(3):
        ctx.progress((i + 1) / 3, f"step {i}", {"i": i})
    return {"answer": cfg["x"] * 2}


def test_job_runs_to_done_with_result_progress_and_history():
    job_id = runs.submit("test", {"x": 21}, _ok, title="double")
    job = runs.wait(job_id, timeout=10)
    assert job["status"] == "done" and job["result"] == {"answer": 42}
    assert job["progress"] == 1.0 and [h["i"] for h in job["history"]] == [0, 1, 2]
    assert job["title"] == "double"


def test_crash_marks_the_job_failed_with_its_message():
    def boom(ctx, cfg):
        raise RuntimeError("disk on fire")

    job = runs.wait(runs.submit("test", {}, boom), timeout=10)
    assert job["status"] == "failed" and "disk on fire" in job["error"]


def test_cancel_stops_a_running_job():
    started = threading.Event()

    def slow(ctx, cfg):
        started.set()
        while True:
            ctx.check()
            time.sleep(0.01)

    job_id = runs.submit("test-slow", {}, slow)
    assert started.wait(5)
    assert runs.cancel(job_id)
    assert runs.wait(job_id, timeout=10)["status"] == "cancelled"


def test_cancel_of_a_queued_job_never_runs_it():
    gate = threading.Event()
    ran = []

    def blocker(ctx, cfg):
        gate.wait(10)
        return {}

    def second(ctx, cfg):
        ran.append(1)
        return {}

    first = runs.submit("serial", {}, blocker)
    queued = runs.submit("serial", {}, second)  # kinds without a limit run one at a time
    time.sleep(0.3)
    assert runs.get(queued)["status"] == "queued"
    runs.cancel(queued)
    assert runs.wait(queued, timeout=5)["status"] == "cancelled"
    gate.set()
    assert runs.wait(first, timeout=5)["status"] == "done"
    assert ran == []


def test_at_most_five_evaluations_run_at_once_and_the_rest_queue():
    gate = threading.Event()
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def work(ctx, cfg):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        gate.wait(10)
        with lock:
            state["now"] -= 1
        return {}

    ids = [runs.submit("evaluate", {"i": i}, work) for i in range(7)]
    deadline = time.monotonic() + 10
    while state["now"] < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    statuses = [runs.get(i)["status"] for i in ids]
    assert statuses.count("running") == 5 and statuses.count("queued") == 2
    gate.set()
    assert all(runs.wait(i, timeout=10)["status"] == "done" for i in ids)
    assert state["max"] == 5


def test_jobs_left_running_by_another_process_become_interrupted():
    store.insert("runs", {"id": "old-1", "kind": "train", "title": "t", "status": "running", "progress": 0.4,
                          "created": 1.0, "owner": "some-dead-process"})
    store.insert("runs", {"id": "old-2", "kind": "train", "title": "t", "status": "done", "progress": 1.0,
                          "created": 1.0, "owner": "some-dead-process"})
    assert runs.recover_interrupted() == 1
    assert runs.get("old-1")["status"] == "interrupted"
    assert runs.get("old-2")["status"] == "done"


def test_list_jobs_filters_and_sorts_newest_first():
    a = runs.wait(runs.submit("k1", {"x": 1}, _ok), timeout=10)
    time.sleep(0.01)
    b = runs.wait(runs.submit("k2", {"x": 1}, _ok), timeout=10)
    assert [j["id"] for j in runs.list_runs()][:2] == [b["id"], a["id"]]
    assert [j["id"] for j in runs.list_runs("k1")] == [a["id"]]
    assert {a["id"], b["id"]}.isdisjoint(j["id"] for j in runs.list_runs(statuses=("failed", "queued")))
