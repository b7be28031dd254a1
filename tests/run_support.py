"""Helpers for tests that need a real run in a given state, or wait for one to end."""
from __future__ import annotations

from core import runs
from core.learning.train_run import RESUME_FILE, TrainRun
from waits import RUN_S, wait_until


def finished(run_id: str, *, timeout: float = RUN_S) -> dict:
    """The record of ``run_id`` once it has left queued/running; fails, naming the run, if not within ``timeout`` s."""
    rec = runs.wait(run_id, timeout=timeout)
    assert rec["status"] not in runs.ACTIVE, f"run {run_id} ({rec['kind']}) still {rec['status']} after {timeout:.0f} s"
    return rec


def cancelled_training(name: str, epochs: int = 8) -> str:
    """A training run on the sample stopped (cancelled) after at least one finished epoch: resumable."""
    from core.learning import training
    cfg = training.TrainConfig(mode="scratch", epochs=epochs, batch_size=64, augment=False, seed=0,
                               max_train_images=128)
    run_id = runs.start("train", TrainRun(cfg, dataset="Sample48", name=name))
    wait_until(lambda: (runs.run_dir(run_id) / RESUME_FILE).is_file(), what=f"a resumable state of run {run_id}")
    runs.cancel(run_id)
    assert finished(run_id)["status"] == "cancelled"
    return run_id
