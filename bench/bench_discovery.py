"""Discovery speed: a 5,000-image map, placing 100 new images, novelty scores for the official GTSRB test set.

    python bench/bench_discovery.py [--model benchmark] [--test-npz ../shared/data/gtsrb/gtsrb_test_32.npz]

The map's reference sample comes from GTSRB train if it is built (``python -m core datasets build``), else from
the embedded sample's splits together. Goals on 2 cores: map <= 10 s, placing 100 <= 1 s, scores <= 10 s.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402

from core.analysis import embedding, novelty
from core.base import config
from core.data import datasets
from core.learning import models  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="benchmark")
    ap.add_argument("--test-npz", default=str(config.PROJECT_ROOT.parent / "shared" / "data" / "gtsrb" /
                                              "gtsrb_test_32.npz"))
    args = ap.parse_args()
    path = config.ARTIFACTS_DIR / f"{args.model}.pt"
    ckpt = models.load_checkpoint(path)
    model = models.model_from_checkpoint(ckpt)
    built = {d.name for d in datasets.list_datasets() if d.kind == "built"}
    if "GTSRB" in built:
        split = datasets.load_split("GTSRB", "train")
        images, labels = split.images, split.labels
    else:
        parts = [datasets.load_split("Sample48", s) for s in datasets.SPLITS]
        images, labels = np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts])
    keep = embedding.stratified_sample(labels, embedding.MAP_SIZE, seed=0)
    t0 = time.perf_counter()
    ref = embedding.compute_map(model, ckpt["class_ids"], images[keep], labels[keep], [""] * len(keep), key={})
    t_map = time.perf_counter() - t0
    new = novelty.layer_outputs(model, images[:100])["pen"]
    t0 = time.perf_counter()
    placer = embedding.Placer(ref)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    placer.place(new)
    t_place = time.perf_counter() - t0
    det = novelty.load_or_fit(path, model, ckpt)
    test = np.load(args.test_npz)["images"]
    t0 = time.perf_counter()
    det.scores(model, test, (novelty.DEFAULT_METHOD,))
    t_fused = time.perf_counter() - t0
    t0 = time.perf_counter()
    det.scores(model, test, tuple(m for m in novelty.list_methods() if m != "odin"))
    t_all = time.perf_counter() - t0
    print(f"map of {len(keep):,} images (features + openTSNE): {t_map:.1f} s (goal <= 10 s)")
    print(f"placing 100 new images: {t_place:.2f} s (goal <= 1 s), after indexing the map once: {t_index:.2f} s")
    print(f"novelty scores, {len(test):,} test images: fused {t_fused:.1f} s (goal <= 10 s); msp, energy, "
          f"mahalanobis, knn, fused together {t_all:.1f} s")


if __name__ == "__main__":
    main()
