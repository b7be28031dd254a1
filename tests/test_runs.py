import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from core.base import store
from core.data import datasets
from core.learning import models, registry
from core import runs
from core.analysis.anchor_run import AnchorRun
from core.analysis.evaluate_run import EvaluateRun
from core.data.build_run import BuildRun
from tests.run_support import cancelled_training, finished
from waits import PAGE_S, RUN_S, wait_until


def _ok(ctx, cfg):
    for i in range(3):
        ctx.progress((i + 1) / 3, f"step {i}", {"i": i})
    return {"answer": cfg["x"] * 2}


def test_job_runs_to_done_with_result_progress_and_history():
    job_id = runs.submit("test", {"x": 21}, _ok, title="double")
    job = finished(job_id)
    assert job["status"] == "done" and job["result"] == {"answer": 42}
    assert job["progress"] == 1.0 and [h["i"] for h in job["history"]] == [0, 1, 2]
    assert job["title"] == "double"


def test_crash_marks_the_job_failed_with_its_message():
    def boom(ctx, cfg):
        raise RuntimeError("disk on fire")

    job = finished(runs.submit("test", {}, boom))
    assert job["status"] == "failed" and "disk on fire" in job["error"]


def test_cancel_stops_a_running_job():
    started = threading.Event()

    def slow(ctx, cfg):
        started.set()
        while True:
            ctx.check()
            time.sleep(0.01)

    job_id = runs.submit("test-slow", {}, slow)
    assert started.wait(PAGE_S)
    assert runs.cancel(job_id)
    assert finished(job_id)["status"] == "cancelled"


def test_cancel_of_a_queued_job_never_runs_it():
    started, gate = threading.Event(), threading.Event()
    ran = []

    def blocker(ctx, cfg):
        started.set()
        gate.wait(RUN_S)  # until the test lets it go (set in the finally below, whatever happens)
        return {}

    def second(ctx, cfg):
        ran.append(1)
        return {}

    first = runs.submit("serial", {}, blocker)
    queued = runs.submit("serial", {}, second)  # kinds without a limit run one at a time
    try:
        assert started.wait(PAGE_S)  # the first holds the kind's one slot: the second can only wait
        assert runs.get(queued)["status"] == "queued"
        runs.cancel(queued)
        assert finished(queued)["status"] == "cancelled"
    finally:
        gate.set()
    assert finished(first)["status"] == "done"
    assert ran == []


def test_at_most_five_evaluations_run_at_once_and_the_rest_queue():
    gate = threading.Event()
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def work(ctx, cfg):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        gate.wait(RUN_S)  # until the test lets them go (set in the finally below, whatever happens)
        with lock:
            state["now"] -= 1
        return {}

    ids = [runs.submit("evaluate", {"i": i}, work) for i in range(7)]
    try:
        # Five in their work, all five recorded as running; a sixth starting at any moment before the gate opens
        # would show in state["max"] below, so no pause is needed to give it the chance.
        wait_until(lambda: state["now"] >= 5, what="five evaluations at work")
        statuses = wait_until(lambda: (s := [runs.get(i)["status"] for i in ids]).count("running") >= 5 and s,
                              what="five evaluations recorded as running")
        assert statuses.count("running") == 5 and statuses.count("queued") == 2, statuses
    finally:
        gate.set()
    assert all(finished(i)["status"] == "done" for i in ids)
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
    a = finished(runs.submit("k1", {"x": 1}, _ok))
    wait_until(lambda: time.time() > a["created"], what="the clock to pass the first run's creation")  # distinct
    b = finished(runs.submit("k2", {"x": 1}, _ok))
    assert [j["id"] for j in runs.list_runs()][:2] == [b["id"], a["id"]]
    assert [j["id"] for j in runs.list_runs("k1")] == [a["id"]]
    assert {a["id"], b["id"]}.isdisjoint(j["id"] for j in runs.list_runs(statuses=("failed", "queued")))


def test_progress_ticks_go_to_the_run_folder_not_the_store():
    started, release = threading.Event(), threading.Event()

    def work(ctx, cfg):
        ctx.progress(0.5, "halfway")
        started.set()
        release.wait(RUN_S)  # until the test lets it go (set in the finally below, whatever happens)
        return {}

    run_id = runs.submit("tick", {}, work)
    try:
        assert started.wait(PAGE_S)  # ctx.progress returned: the tick is written (or would have been, to the store)
        table = store.table_path("runs").read_bytes()
        rec = runs.get(run_id)
        assert rec["progress"] == 0.5 and rec["message"] == "halfway" and rec["status"] == "running"
        assert (runs.run_dir(run_id) / "progress.json").is_file()
        assert b"halfway" not in table  # the store was not rewritten for the tick
    finally:
        release.set()
    assert finished(run_id)["status"] == "done"


def test_start_refuses_unknown_kinds_and_configs_and_registers_nothing():
    with pytest.raises(ValueError,
                       match="unknown run kind 'nope'; valid: train, evaluate, anchor, build, import, embed, issues"):
        runs.start("nope", {})
    with pytest.raises(ValueError, match="unknown fields"):
        runs.start("evaluate", {"model": "m", "dataset": "Sample48", "colour": "red"})
    with pytest.raises(ValueError, match="a evaluate run takes a EvaluateRun"):
        runs.start("evaluate", AnchorRun(report="r", index=0))
    with pytest.raises(ValueError, match="no model named 'ghost'"):
        runs.start("evaluate", {"model": "ghost", "dataset": "Sample48", "split": "test"})
    assert runs.list_runs() == []


def test_a_run_record_carries_its_version_config_and_input_fingerprints():
    torch.manual_seed(0)
    m = models.build_model("published", 48)
    registry.register("m48", models.make_checkpoint(
        m, architecture="published", class_ids=list(range(48)), class_names=[f"c{i}" for i in range(48)],
        dataset="Sample48", dataset_fingerprint="x", parent=None, mode="scratch", epochs=1, history=[],
        metrics={}, config={}))
    run_id = runs.start("evaluate", {"model": "m48", "dataset": "Sample48", "split": "val"})
    rec = finished(run_id)
    assert rec["status"] == "done" and rec["version"] == runs.RECORD_VERSION
    assert rec["config"] == {"model": "m48", "dataset": "Sample48", "split": "val", "classes": "model",
                             "tta": False}
    assert rec["inputs"]["dataset"] == {"name": "Sample48", "version": datasets.get_dataset("Sample48").fingerprint}
    sha = rec["inputs"]["model"]["sha256"]
    assert sha == hashlib.sha256(registry.get_model("m48").path.read_bytes()).hexdigest()[:16]
    assert runs.config_from_json("evaluate", rec["config"]) == EvaluateRun("m48", "Sample48", "val", "model")


def test_a_build_run_checks_its_source_and_names():
    with pytest.raises(ValueError, match="does not exist"):
        runs.start("build", BuildRun(source="/no/such/folder"))
    with pytest.raises(ValueError, match="unknown datasets"):
        runs.start("build", {"source": ".", "names": ["GTSRB", "Imaginary"]})


def test_training_and_evaluation_are_pure_computation_without_runs_or_the_store():
    import subprocess
    import sys
    code = ("import sys, core.learning.training, core.analysis.evaluation; "
            "print(sorted(m for m in ('core.runs', 'core.base.store', 'tinydb', 'streamlit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=RUN_S,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_time_left_is_a_straight_line_from_the_pace_so_far():
    rec = {"status": "running", "started": 1000.0, "progress": 0.25}
    assert runs.time_left(rec, now=1010.0) == pytest.approx(30.0)
    assert runs.time_left(dict(rec, progress=0.01), now=1010.0) is None  # too early to tell
    assert runs.time_left(rec, now=1001.0) is None                       # under 2 s of work
    assert runs.time_left(dict(rec, status="done"), now=1010.0) is None
    assert runs.time_left({"status": "running", "progress": 0.5}, now=1010.0) is None  # never started
    resumed = {"status": "running", "started": 1000.0, "progress": 0.6, "progress_start": 0.5}
    assert runs.time_left(resumed, now=1010.0) == pytest.approx(40.0)  # 10 % in 10 s, 40 % to go


def test_batch_points_feed_the_live_curve_not_the_history():
    def work(ctx, cfg):
        for i in range(1, 6):
            ctx.progress(i / 10, "batch", {"batch": True, "epoch": i / 5, "loss": 1.0 / i, "train_acc": i / 5})
        ctx.progress(0.5, "epoch 1 done", {"epoch": 1, "loss": 0.4})
        return {}

    run_id = runs.submit("curve", {}, work)
    rec = finished(run_id)
    assert rec["history"] == [{"epoch": 1, "loss": 0.4}]
    points = runs.curve_points(run_id)
    assert [p["epoch"] for p in points] == [0.2, 0.4, 0.6, 0.8, 1.0] and "batch" not in points[0]
    assert runs.curve_points("no-such-run") == []


def test_two_resumes_of_one_run_cannot_both_win(monkeypatch):
    run_id = cancelled_training("twice", epochs=30)
    runs.resume(run_id)
    with pytest.raises(ValueError, match="already|still"):
        runs.resume(run_id)
    runs.cancel(run_id)
    finished(run_id)


@dataclass(frozen=True)
class Toy:
    """A run kind of this test module: registering it touches no engine file."""
    n: int
    words: tuple[str, ...] = ()

    def check(self) -> dict:
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        return {"n": self.n}

    def title(self) -> str:
        return f"toy {self.n}"


def _run_toy(ctx, cfg: Toy) -> dict:
    ctx.progress(0.5, "halfway", {"step": 1})
    return {"double": 2 * cfg.n, "words": list(cfg.words)}


@pytest.fixture
def own_kinds(monkeypatch):
    """The kinds table as it is, restored after the test (toy kinds do not leak into other tests)."""
    monkeypatch.setattr(runs.KINDS, "table", dict(runs.KINDS.table))


def test_a_kind_registered_outside_the_engine_runs_like_the_built_in_ones(own_kinds):
    runs.register_kind("toy", Toy, _run_toy, limit=2)
    assert runs.kind_names()[-1] == "toy" and runs.get_kind("toy").limit == 2
    rec = finished(runs.start("toy", Toy(21, ("a",))))
    assert rec["status"] == "done" and rec["result"] == {"double": 42, "words": ["a"]}
    assert rec["title"] == "toy 21" and rec["inputs"] == {"n": 21} and rec["history"] == [{"step": 1}]
    from_json = finished(runs.start("toy", {"n": 2, "words": ["x", "y"]}))
    assert runs.config_from_json("toy", from_json["config"]) == Toy(2, ("x", "y"))
    with pytest.raises(ValueError, match="n must be >= 0"):
        runs.start("toy", Toy(-1))
    assert [r["id"] for r in runs.list_runs("toy")] == [from_json["id"], rec["id"]]
    with pytest.raises(ValueError, match="only training runs can be resumed"):
        runs.resume(rec["id"])


def test_a_kind_name_is_taken_once(own_kinds):
    @dataclass(frozen=True)
    class Other:
        def check(self) -> dict:
            return {}

        def title(self) -> str:
            return "other"

    runs.register_kind("toy", Toy, _run_toy)
    runs.register_kind("toy", Toy, _run_toy, limit=3)  # the same class again (a reloaded module): replaced
    assert runs.get_kind("toy").limit == 3
    with pytest.raises(ValueError, match="registered already"):
        runs.register_kind("toy", Other, _run_toy)


@dataclass(frozen=True)
class Steps:
    total: int

    def check(self) -> dict:
        return {}

    def title(self) -> str:
        return f"count to {self.total}"


def _run_steps(ctx, cfg: Steps) -> dict:
    """Counts to ``total``, saving its count after every step; the first attempt crashes after step 2."""
    state = runs.run_dir(ctx.run_id) / "count.json"
    done = json.loads(state.read_text()) if ctx.resuming else 0
    for i in range(done + 1, cfg.total + 1):
        ctx.progress(i / cfg.total, f"step {i}", {"step": i})
        state.write_text(json.dumps(i))
        if i == 2 and not ctx.resuming:
            raise RuntimeError("power cut")
    return {"counted": cfg.total, "resumed_from": done}


def _steps_point(rec: dict, cfg: Steps, inputs: dict) -> runs.ResumePoint:
    done = json.loads((runs.run_dir(rec["id"]) / "count.json").read_text())
    return runs.ResumePoint(progress=done / cfg.total, message=f"after step {done}",
                            history=rec["history"][:done], curve=[])


def test_the_engine_resumes_any_kind_that_registers_resume_hooks(own_kinds):
    runs.register_kind("steps", Steps, _run_steps, resume=runs.Resume(
        "counting", lambda rec: (runs.run_dir(rec["id"]) / "count.json").is_file(), _steps_point))
    rec = finished(runs.start("steps", Steps(5)))
    assert rec["status"] == "failed" and runs.resumable(rec)
    runs.resume(rec["id"])
    rec = finished(rec["id"])
    assert rec["status"] == "done" and rec["result"] == {"counted": 5, "resumed_from": 2} and rec["resumed"] == 1
    assert [h["step"] for h in rec["history"]] == [1, 2, 3, 4, 5]
    assert not runs.resumable(rec)


def test_the_engine_runs_a_kind_with_no_domain_module_loaded(data_root):
    code = ("import sys\nfrom dataclasses import dataclass\nfrom core import runs\n"
            "@dataclass(frozen=True)\nclass Ping:\n"
            "    def check(self):\n        return {}\n"
            "    def title(self):\n        return 'ping'\n"
            "runs.register_kind('ping', Ping, lambda ctx, cfg: {'pong': True})\n"
            f"rec = runs.wait(runs.start('ping', Ping()), timeout={RUN_S})\n"
            "domain = sorted(m for m in sys.modules if m.split('.')[:2] in (['core', 'data'], ['core', 'learning'],"
            " ['core', 'analysis'], ['core', 'curation']))\n"
            "print(rec['status'], rec['result'], domain, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=RUN_S,
                         cwd=str(Path(__file__).resolve().parent.parent),
                         env=dict(os.environ, TSW_DATA_ROOT=str(data_root)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done {'pong': True} [] False"
