"""Curation at scale: a 1,000-upload import with variants and smart segregation; Added images with 50,000 records.

    python bench/bench_curation.py [--uploads 1000] [--variants 5] [--records 50000] [--model benchmark]

Runs in a throw-away data root, on a workspace derived from the embedded sample:

1. ``--uploads`` synthetic 64 x 64 sign-like PNGs (decoded from bytes, as uploads are), each kept plus
   ``--variants`` augmented copies (2 groups), destination train + val by smart segregation with the model's
   features, leakage and duplicate checks included, written as one change (goal <= 60 s for 1,000 x 5 on 2 cores);
2. a workspace holding ``--records`` added-image records: the Added images page's data for one page of 48, from
   the workspace files (first view after a change) and from the page's cache (goal <= 1 s per page).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.base import config
from core.data import datasets, uploads, workspace_changes, workspaces
from core.learning import models
from core.curation import added as curation_added, importing as curation  # noqa: E402
from core.data.images import encode_png  # noqa: E402


def sign(seed: int, size: int = 64) -> np.ndarray:
    """A coloured disc with a bar on a gradient background, different for every seed."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = rng.integers(40, 200, 3)
    cv2.circle(img, (int(rng.integers(24, 40)), int(rng.integers(24, 40))), int(rng.integers(14, 24)),
               tuple(int(v) for v in rng.integers(120, 256, 3)), -1)
    cv2.rectangle(img, (16, int(rng.integers(26, 34))), (48, int(rng.integers(36, 42))),
                  tuple(int(v) for v in rng.integers(0, 80, 3)), -1)
    return img


def bench_import(n: int, n_variants: int, model_name: str) -> None:
    workspaces.derive("Sample48", "BenchImport")
    cid = workspace_changes.add_class("BenchImport", "Bench sign")
    files = [(f"upload_{i:05d}.png", encode_png(sign(i))) for i in range(n)]
    model = models.model_from_checkpoint(models.load_checkpoint(config.ARTIFACTS_DIR / f"{model_name}.pt"))
    t0 = time.perf_counter()
    found = [u for name, data in files for u in uploads.read_bytes(name, data)]
    t_read = time.perf_counter() - t0
    settings = curation.ImportSettings(dataset="BenchImport", class_id=cid, groups=("shift_rotate", "noise"),
                                       variants=n_variants, to="trainval", val_ratio=0.2)
    result = curation.import_images(found, settings, model=model)
    total = time.perf_counter() - t0
    print(f"import: {n:,} uploads x (1 + {n_variants}) = {result['added']:,} images {result['by_split']}, "
          f"{len(result['errors'])} refused, {len(result['leaks'])} leaks")
    print(f"  read and decode {t_read:.1f} s; total {total:.1f} s (goal <= 60 s for 1,000 x 5)")


def bench_added_page(n_records: int) -> None:
    workspaces.derive("Sample48", "BenchAdded")
    rel, sha = workspace_changes._write_image(workspaces.workspace_dir("BenchAdded"), sign(0))
    for start in range(0, n_records, 1000):
        with workspace_changes.change("BenchAdded") as ch:
            ch.add_records([{"split": ("train", "val", "test")[i % 3], "class_id": i % 48, "file": rel, "sha256": sha,
                             "source": f"u{i}.png", "upload": f"u{i}.png", "batch": f"b{i // 1000}",
                             "recipe": {"groups": ["noise"], "seed": i, "variant": 1} if i % 2 else None,
                             "parent": None, "added": time.time()} for i in range(start, min(start + 1000, n_records))])
    info = datasets.get_dataset("BenchAdded")
    t0 = time.perf_counter()
    records = workspaces.current_added(info)
    page = curation_added.list_added(records, class_id=7, split="val", augmented=True, page=2, page_size=48)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p in range(1, 6):
        curation_added.list_added(records, page=p, page_size=48)
    cached = (time.perf_counter() - t0) / 5
    print(f"added images: {len(records):,} records; a filtered page ({page.total:,} match, page {page.page}/"
          f"{page.pages}) from the workspace files {first * 1000:.0f} ms; a page from the cached records "
          f"{cached * 1000:.0f} ms (goal <= 1 s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uploads", type=int, default=1000)
    ap.add_argument("--variants", type=int, default=5)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--model", default="benchmark", help="a shipped model in artifacts/")
    args = ap.parse_args()
    os.environ["TSW_DATA_ROOT"] = tempfile.mkdtemp(prefix="bench-curation-")
    bench_import(args.uploads, args.variants, args.model)
    bench_added_page(args.records)


if __name__ == "__main__":
    main()
