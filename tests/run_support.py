"""Helpers for tests that need a real run in a given state."""
from __future__ import annotations

import time

from core import runs
from core.learning.train_run import RESUME_FILE, TrainRun


def cancelled_training(name: str, epochs: int = 8) -> str:
    """A training run on the sample stopped (cancelled) after at least one finished epoch: resumable."""
    from core.learning import training
    cfg = training.TrainConfig(mode="scratch", epochs=epochs, batch_size=64, augment=False, seed=0,
                               max_train_images=128)
    run_id = runs.start("train", TrainRun(cfg, dataset="Sample48", name=name))
    deadline = time.monotonic() + 120
    while not (runs.run_dir(run_id) / RESUME_FILE).is_file():
        assert time.monotonic() < deadline, "no resumable state within 120 s"
        time.sleep(0.05)
    runs.cancel(run_id)
    assert runs.wait(run_id, timeout=60)["status"] == "cancelled"
    return run_id
