"""The store at scale: a run's progress write and a 1,000-image batch insert with 50,000 image records present.

    python bench/bench_store.py [--images 50000] [--runs 1000] [--models 200] [--repeat 20]

Builds a throw-away data root: a workspace derived from the embedded sample holding ``--images`` added-image
records, ``--runs`` run records (with training-sized configs and histories) and ``--models`` model records. Then
times, each as median and max over ``--repeat`` tries:

- a run's progress tick (what every running job does several times a second; goal <= 20 ms),
- a run's history entry (once an epoch: a write to the runs table),
- a 1,000-record batch insert into the workspace (overlay commit only; goal <= 1 s),
- the same batch as a user makes it: 1,000 new 48x48 images encoded and written, then committed (goal <= 1 s),
- reading the workspace's header (what every dataset picker does) and its full index.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402

from core.base import store
from core.data import datasets, workspace_changes, workspaces
from core.learning import training
from core import runs  # noqa: E402

BASE = "Sample48"


def timed(fn, repeat: int) -> tuple[float, float]:
    """(median, max) wall seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times)


def fill(n_images: int, n_runs: int, n_models: int) -> None:
    """Synthetic records in bulk (one commit each): the layout is the real one, the contents are stand-ins."""
    workspaces.derive(BASE, "Bench")
    one = np.zeros((48, 48, 3), np.uint8)
    rel, sha = workspace_changes._write_image(workspaces.workspace_dir("Bench"), one)  # every record names one file
    for start in range(0, n_images, 1000):  # as users add them: a batch at a time
        with workspace_changes.change("Bench") as ch:
            ch.add_records([{"split": ("train", "val", "test")[i % 3], "class_id": i % 48, "file": rel,
                             "sha256": sha, "source": f"upload_{i:06d}.jpg", "orig_w": 48, "orig_h": 48,
                             "added": time.time(), "batch": f"b{i // 1000}",
                             "recipe": {"groups": ["blur", "noise"], "seed": i}, "parent": None}
                            for i in range(start, min(start + 1000, n_images))])
    cfg = {"train": asdict(training.TrainConfig()), "dataset": BASE, "name": "m", "base": None}
    history = [{"epoch": e, "phase": "all", "loss": 0.1, "train_acc": 0.9, "val_acc": 0.9, "lr": 1e-3,
                "steps": 300, "seconds": 40.0} for e in range(20)]
    store.insert_many("runs", [{"id": f"train-{i}", "kind": "train", "version": runs.RECORD_VERSION,
                                "title": "t", "config": cfg, "inputs": {}, "status": "done", "progress": 1.0,
                                "message": "done", "result": {"model": f"m{i}"}, "error": None,
                                "history": history if i % 5 == 0 else [], "created": float(i), "updated": float(i),
                                "owner": "old"} for i in range(n_runs)])
    store.insert_many("models", [{"name": f"m{i}", "path": f"/x/m{i}.pt", "architecture": "bn_stn",
                                  "num_classes": 48, "dataset": BASE, "parent": None, "mode": "scratch",
                                  "epochs": 10, "metrics": {}, "created": "", "shipped": False,
                                  "history": history} for i in range(n_models)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    os.environ["TSW_DATA_ROOT"] = tempfile.mkdtemp(prefix="bench-store-")
    t0 = time.perf_counter()
    fill(args.images, args.runs, args.models)
    print(f"setup: {args.images:,} image records, {args.runs:,} runs, {args.models} models "
          f"in {time.perf_counter() - t0:.1f} s; runs table {store.table_path('runs').stat().st_size / 1e6:.1f} MB, "
          f"workspace records {sum(p.stat().st_size for p in (workspaces.workspace_dir('Bench') / 'segments').iterdir()) / 1e6:.1f} MB")

    run_id = runs.submit("bench", {}, lambda ctx, cfg: {})
    runs.wait(run_id)
    ctx = runs.RunContext(run_id)

    def tick():
        ctx._last_write = 0.0  # force the write the throttle would skip
        ctx.progress(0.5, "epoch 3/10 (all): batch 120/276")

    rng = np.random.default_rng(0)
    batches = iter(range(10**9))

    def insert_records():
        k = next(batches)
        with workspace_changes.change("Bench") as ch:
            ch.add_records([{"split": "train", "class_id": i % 48, "file": "added/x.png", "sha256": f"{k}-{i}",
                             "source": f"new_{k}_{i}.png", "orig_w": 48, "orig_h": 48, "added": time.time()}
                            for i in range(1000)])

    def insert_images():
        imgs = list(rng.integers(0, 256, (1000, 48, 48, 3), dtype=np.uint8))
        workspace_changes.add_images("Bench", imgs, split="train", class_id=1,
                                     sources=[f"u{i}.png" for i in range(1000)])

    ws = lambda: datasets.get_dataset("Bench")  # noqa: E731
    rows = [
        ("run progress tick", timed(tick, args.repeat), 0.020),
        ("run history entry (runs table write)", timed(lambda: ctx.progress(0.5, "", {"epoch": 1}), args.repeat), None),
        ("1,000-record batch insert (workspace commit)", timed(insert_records, max(3, args.repeat // 4)), 1.0),
        ("1,000 new 48x48 images encoded, written, committed", timed(insert_images, max(3, args.repeat // 4)), 1.0),
        ("dataset list entry (workspace header)", timed(ws, args.repeat), None),
        ("workspace index (all rows)", timed(lambda: datasets.read_index(ws()), 3), None),
    ]
    n_now = len(workspaces.read_rows(ws())) - sum(datasets.get_dataset(BASE).split_size(s) for s in datasets.SPLITS)
    print(f"{n_now:,} added-image records at the end")
    print(f"{'what':55s} {'median':>10s} {'max':>10s} {'goal':>8s}")
    for name, (med, mx), goal in rows:
        ok = "" if goal is None else ("ok" if med <= goal else "MISSED")
        print(f"{name:55s} {med * 1000:8.1f}ms {mx * 1000:8.1f}ms {'' if goal is None else f'{goal * 1000:.0f}ms':>8s} {ok}")


if __name__ == "__main__":
    main()
