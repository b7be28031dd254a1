"""Demo mode's caps on runs (core.runs.engine): per session and in all, a global limit on runs at once with the
rest queued in one line, the session recorded and carried into the work, the run history bounded."""
from __future__ import annotations

import threading
import time

import pytest

from core import runs
from waits import RUN_S
from core.base import demo, store
from core.runs import engine


@pytest.fixture
def demo_on(monkeypatch):
    monkeypatch.setenv(demo.ENV, "1")
    release = threading.Event()
    yield release
    release.set()  # every waiting run of the test ends
    for rec in runs.list_runs(statuses=runs.ACTIVE):
        runs.wait(rec["id"], timeout=RUN_S)


def _waiting(release: threading.Event):
    def work(ctx, cfg):
        while not release.is_set():
            ctx.check()
            time.sleep(0.02)
        return {"session": demo.current_session()}
    return work


def _until(cond, what: str, ceiling: float = RUN_S) -> None:
    deadline = time.monotonic() + ceiling
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not within {ceiling:.0f} s"
        time.sleep(0.05)


def test_a_session_past_its_cap_and_a_seventh_run_are_refused_and_nothing_is_written(demo_on):
    with demo.session_scope("alice"):
        alice = [runs.submit("demo-test", {}, _waiting(demo_on)) for _ in range(engine.DEMO_SESSION_ACTIVE_RUNS)]
        before = len(store.all_records("runs"))
        with pytest.raises(demo.DemoRefused, match="per session"):
            runs.submit("demo-test", {}, _waiting(demo_on))
        assert len(store.all_records("runs")) == before
    with demo.session_scope("bob"):
        bob = [runs.submit("demo-test", {}, _waiting(demo_on)) for _ in range(engine.DEMO_SESSION_ACTIVE_RUNS)]
    assert len(alice + bob) == engine.DEMO_ACTIVE_RUNS == 6
    with demo.session_scope("carol"), pytest.raises(demo.DemoRefused, match="6 runs queued or running"):
        runs.submit("demo-test", {}, _waiting(demo_on))
    assert len(store.all_records("runs")) == 6
    assert {runs.get(r)[demo.SESSION_FIELD] for r in alice} == {"alice"}


def test_only_two_runs_work_at_once_and_the_rest_wait_in_one_line_with_their_place(demo_on):
    with demo.session_scope("alice"):
        ids = [runs.submit(kind, {}, _waiting(demo_on)) for kind in ("demo-a", "demo-b", "demo-c")]
    with demo.session_scope("bob"):
        ids.append(runs.submit("demo-d", {}, _waiting(demo_on)))
    _until(lambda: [runs.get(r)["status"] for r in ids[:2]] == ["running"] * 2, "two running")
    assert [runs.get(r)["status"] for r in ids[2:]] == ["queued", "queued"]  # other kinds too: one global line
    assert [runs.get(r)["queue_position"] for r in ids[2:]] == [[1, 2], [2, 2]]
    runs.cancel(ids[0])
    _until(lambda: runs.get(ids[2])["status"] == "running", "the first in line started")
    assert runs.get(ids[3])["queue_position"] == [1, 1]
    demo_on.set()
    done = [runs.wait(r, timeout=RUN_S) for r in ids[1:]]
    assert [r["result"]["session"] for r in done] == ["alice", "alice", "bob"]  # the work ran as its session


def test_the_run_history_is_bounded_in_demo_mode_and_active_runs_are_kept(demo_on, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_MAX_RUN_RECORDS", 4)
    old = []
    for k in range(6):
        old.append(runs.wait(runs.submit("demo-old", {}, lambda ctx, cfg: {}), timeout=RUN_S)["id"])
        (runs.run_dir(old[-1])).mkdir(parents=True, exist_ok=True)
    # every submit pruned: the newest 4 finished ones remain, with their folders; older folders are gone
    assert {r["id"] for r in runs.list_runs()} == set(old[-4:])
    assert not runs.run_dir(old[0]).exists() and runs.run_dir(old[-1]).exists()
    active = runs.submit("demo-live", {}, _waiting(demo_on))
    assert active in {r["id"] for r in runs.list_runs()} and len(runs.list_runs()) == 4


def test_locally_without_the_flag_nothing_is_capped(monkeypatch):
    monkeypatch.setenv(demo.ENV, "0")
    release = threading.Event()
    ids = [runs.submit(f"local-{k}", {}, _waiting(release)) for k in range(8)]
    _until(lambda: all(runs.get(r)["status"] == "running" for r in ids), "all eight running at once")
    assert all(demo.SESSION_FIELD not in runs.get(r) for r in ids)
    release.set()
    assert all(runs.wait(r, timeout=RUN_S)["status"] == "done" for r in ids)
    assert len(runs.list_runs()) == 8
