"""Reading a workspace split against reading its base, side by side.

    python bench/bench_workspace.py [--base GTSRB] [--split train] [--repeat 5]

Derives a throw-away workspace from ``--base`` (default: GTSRB if built, else the embedded sample), then times
``datasets.load_split`` (decoded caches warm, median of ``--repeat``):

1. the base split,
2. the untouched workspace split (the base's arrays as they are),
3. the workspace after a change (100 images moved out, 200 added): its first read assembles the split from the
   base's cache plus the added files and caches it; later reads load that cache.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402

from core.base import config
from core.data import datasets, workspace_changes, workspaces  # noqa: E402


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base")
    ap.add_argument("--split", default="train", choices=datasets.SPLITS)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    names = {d.name for d in datasets.list_datasets() if d.kind == "built"}
    base_name = args.base or ("GTSRB" if "GTSRB" in names else "Sample48")
    base = datasets.get_dataset(base_name)
    datasets.load_split(base, args.split)  # warm the base's decoded cache (in the real data root)
    ws_name = f"bench-{os.getpid()}"
    workspaces.derive(base_name, ws_name)
    try:
        ws = datasets.get_dataset(ws_name)
        t_base = median_time(lambda: datasets.load_split(base, args.split), args.repeat)
        t_ws = median_time(lambda: datasets.load_split(ws, args.split), args.repeat)
        files = [r["file"] for r in datasets.read_index(ws, args.split)]
        other = "val" if args.split != "val" else "train"
        workspace_changes.move_images(ws_name, files[:100], split=other)
        images = list(np.random.default_rng(0).integers(0, 256, (200, 48, 48, 3), dtype=np.uint8))
        workspace_changes.add_images(ws_name, images, split=args.split, class_id=min(base.classes),
                                     sources=[f"u{i}.png" for i in range(200)])
        changed = datasets.get_dataset(ws_name)
        t0 = time.perf_counter()
        n = len(datasets.load_split(changed, args.split))
        t_first = time.perf_counter() - t0
        t_changed = median_time(lambda: datasets.load_split(changed, args.split), args.repeat)
    finally:
        workspaces.delete(ws_name)
    print(f"{base_name}/{args.split}: {base.split_size(args.split):,} images in the base, {n:,} in the changed "
          f"workspace (data root {config.data_root()})")
    print(f"{'read':48s} {'seconds':>8s} {'vs base':>8s}")
    for what, t in [("base split", t_base), ("workspace, untouched", t_ws),
                    ("workspace after a change, first read (assemble)", t_first),
                    ("workspace after a change, cached", t_changed)]:
        print(f"{what:48s} {t:8.3f} {t / t_base:7.2f}x")


if __name__ == "__main__":
    main()
