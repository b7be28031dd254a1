"""Fault suite: real processes killed with SIGKILL (kill -9) in the middle of work.

Each test checks what a user relies on after a crash: the store still reads, the run shows as interrupted, no
partial model or report is registered, a workspace is either before or after a change (never half), and a killed
training resumes to the very model an uninterrupted run gives.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.analysis import reports
from core.base import config, store
from core.data import datasets, workspaces
from core.learning import models, registry
from core import runs
from core.learning.train_run import RESUME_FILE
from tests.run_support import finished
from waits import RUN_S

PROJECT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.faults


def _env(root: Path) -> dict:
    # One thread: the resumed model must match the uninterrupted one bit for bit (that holds per thread count).
    return dict(os.environ, TSW_DATA_ROOT=str(root), NO_ALBUMENTATIONS_UPDATE="1", OMP_NUM_THREADS="1")


def _spawn(args: list[str], root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=PROJECT, env=_env(root), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, ready, *, timeout: float = RUN_S) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` is true (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended before the kill: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"the moment to kill never came in {timeout:.0f} s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(RUN_S) == -signal.SIGKILL


def _only_run(kind: str) -> dict | None:
    found = runs.list_runs(kind)
    return found[0] if found else None


def _progress(run: dict | None) -> str:
    if run is None:
        return ""
    try:
        return json.loads((runs.run_dir(run["id"]) / "progress.json").read_text())["message"]
    except (OSError, ValueError, KeyError):
        return ""


TRAIN = ["-m", "core", "train", "--dataset", "Sample48", "--mode", "scratch", "--epochs", "6",
         "--max-train-images", "256", "--batch-size", "64", "--seed", "3", "--quiet"]


def test_kill_9_the_cli_during_a_training_epoch_then_resume_gives_the_same_model(data_root):
    proc = _spawn(TRAIN + ["--name", "killed"], data_root)

    def mid_training() -> bool:  # at least epoch 1 saved, the next under way
        run = _only_run("train")
        return run is not None and (runs.run_dir(run["id"]) / RESUME_FILE).is_file()

    _kill_when(proc, mid_training)
    run = _only_run("train")
    assert run["status"] == "running"                    # as the dead process left it
    assert runs.recover_interrupted() == 1                 # its owner is gone: interrupted
    run = runs.get(run["id"])
    assert run["status"] == "interrupted" and runs.resumable(run)
    assert "killed" not in [m.name for m in registry.list_models()]  # no partial model
    assert not list(config.models_dir().glob("killed*"))   # nor a file of one

    out = subprocess.run([sys.executable, "-m", "core", "train", "--resume-run", run["id"], "--quiet"],
                         cwd=PROJECT, env=_env(data_root), capture_output=True, text=True, timeout=RUN_S)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["run"] == run["id"]
    done = runs.get(run["id"])
    assert done["status"] == "done" and done["resumed"] == 1
    assert [h["epoch"] for h in done["history"]] == [1, 2, 3, 4, 5, 6]

    whole = subprocess.run([sys.executable, *TRAIN, "--name", "whole"], cwd=PROJECT, env=_env(data_root),
                           capture_output=True, text=True, timeout=RUN_S)
    assert whole.returncode == 0, whole.stderr[-2000:]
    a = models.load_checkpoint(registry.get_model("killed").path)["weights"]
    b = models.load_checkpoint(registry.get_model("whole").path)["weights"]
    assert all(torch.equal(a[k], b[k]) for k in a)         # bit-identical to the uninterrupted run


def _big_eval_setup(n: int = 2500) -> None:
    """A 10-class dataset with ``n`` test images and a model for it: an evaluation takes a few seconds."""
    from core.data.built import SplitToWrite, write_dataset
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n) % 10
    write_dataset("Big", {"test": SplitToWrite(list(imgs), labels, [f"t{i:05d}.png" for i in range(n)],
                                               ["synthetic"] * n, [""] * n, np.full((n, 2), 32))},
                  classes={i: f"class {i}" for i in range(10)}, source="synthetic", recipe="fault test")
    torch.manual_seed(0)
    net = models.build_model("published", 10)
    registry.register("ten", models.make_checkpoint(
        net, architecture="published", class_ids=list(range(10)), class_names=[f"class {i}" for i in range(10)],
        dataset="Big", dataset_fingerprint="x", parent=None, mode="scratch", epochs=1, history=[], metrics={},
        config={}))


def test_kill_9_during_an_evaluation_registers_no_report_and_the_store_still_reads(data_root):
    _big_eval_setup()
    app = ("import core.kinds\nfrom core import runs\n"
           "rid = runs.start('evaluate', {'model': 'ten', 'dataset': 'Big', 'split': 'test'})\n"
           "runs.wait(rid, timeout=600)\n")  # an app process: the run in a worker thread
    proc = _spawn(["-c", app], data_root)
    _kill_when(proc, lambda: _only_run("evaluate") is not None and _only_run("evaluate")["status"] == "running")
    run = _only_run("evaluate")
    assert runs.recover_interrupted() == 1 and runs.get(run["id"])["status"] == "interrupted"
    assert reports.list_reports() == []
    with pytest.raises(ValueError):
        reports.load_report(run["id"])
    assert not runs.resumable(runs.get(run["id"]))          # evaluations start again instead
    again = finished(runs.start("evaluate", {"model": "ten", "dataset": "Big", "split": "test"}))
    assert again["status"] == "done" and [r["id"] for r in reports.list_reports()] == [again["id"]]


def test_kill_9_during_store_writes_leaves_a_valid_store_with_every_finished_write(data_root):
    writer = ("import sys\nfrom core.base import store\n"
              "for i in range(100000):\n"
              "    store.insert('runs', {'id': f'r{i:06d}', 'kind': 'test', 'status': 'done', 'created': i})\n"
              "    print(i, flush=True)\n")
    proc = _spawn(["-c", writer], data_root)
    lines: list[str] = []
    while len(lines) < 40:  # let it write a while (40 acknowledged writes, however long they take), then kill it
        line = proc.stdout.readline()
        assert line, f"the writer ended after {len(lines)} writes: {proc.stderr.read()[-2000:]}"
        lines.append(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(RUN_S)
    recs = store.all_records("runs")                       # still valid JSON
    ids = sorted(r["id"] for r in recs)
    assert len(ids) >= 40 and ids == [f"r{i:06d}" for i in range(len(ids))]  # every acknowledged write, in order
    store.insert("runs", {"id": "after", "kind": "test", "status": "done", "created": 0})
    assert len(store.all_records("runs")) == len(ids) + 1


def test_kill_9_during_an_import_run_leaves_the_workspace_before_or_after_never_half(data_root):
    from conftest import smooth_images
    from core.data.images import encode_png
    workspaces.derive("Sample48", "Main")
    v0 = datasets.get_dataset("Main").fingerprint
    folder = data_root.parent / "uploads"
    folder.mkdir()
    for k, im in enumerate(smooth_images(60, 40, seed=5)):
        (folder / f"u{k:02d}.png").write_bytes(encode_png(im))
    app = ("import sys\nfrom pathlib import Path\nimport core.kinds\nfrom core import runs\n"
           "from core.curation.import_run import stage_uploads\n"
           f"files = [(p.name, p.read_bytes()) for p in sorted(Path({str(folder)!r}).glob('*.png'))]\n"
           "rid = runs.start('import', {'settings': {'dataset': 'Main', 'class_id': 14, 'to': 'test', 'variants': 2,\n"
           "                                         'groups': ['noise']},\n"
           "                            'paths': stage_uploads(files), 'staged': True})\n"
           "runs.wait(rid, timeout=600)\n")
    proc = _spawn(["-c", app], data_root)
    _kill_when(proc, lambda: _only_run("import") is not None and _only_run("import")["status"] == "running")
    info = datasets.get_dataset("Main")
    added = workspaces.current_added(info)
    before, after = info.fingerprint == v0 and not added, info.fingerprint != v0 and len(added) == 60 * 3
    assert before or after, (info.fingerprint, len(added))
    assert runs.recover_interrupted() == 1
    assert datasets.load_split(info, "test") is not None   # the workspace still reads
