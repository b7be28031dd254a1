"""Precision and recall of "likely a new class" flags on mixes of known and unseen classes.

    python bench/new_class_flags.py [--model benchmark] [--mixes 3]

Each mix: 10 images of each of 10 random GTSRB classes (official test set) plus up to 10 images (first copies) of
each of the 5 TSRD test classes GTSRB lacks (the new classes of GTSRB_48), grouped and flagged by
``core.analysis.embedding.detect_new_classes``. Image-level precision: share of images in flagged groups that are of a new
class; recall: share of new-class images that land in a flagged group.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.analysis import embedding, novelty
from core.base import config
from core.data import builds  # noqa: E402
from core.learning import models  # noqa: E402

NEW_TSRD = builds.NEW_TSRD_CLASSES  # GTSRB_48's new classes 43-47


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="benchmark")
    ap.add_argument("--mixes", type=int, default=3)
    ap.add_argument("--data", default=str(config.PROJECT_ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    path = config.ARTIFACTS_DIR / f"{args.model}.pt"
    ckpt = models.load_checkpoint(path)
    model = models.model_from_checkpoint(ckpt)
    det = novelty.load_or_fit(path, model, ckpt)
    g = np.load(Path(args.data) / "gtsrb" / "gtsrb_test_32.npz")
    t = np.load(Path(args.data) / "tsrd" / "tsrd_test_32.npz")
    for seed in range(args.mixes):
        rng = np.random.default_rng(seed)
        images, truth = [], []
        for c in rng.choice(43, 10, replace=False):
            images += list(g["images"][rng.choice(np.flatnonzero(g["labels"] == c), 10, replace=False)])
            truth += [0] * 10
        for c in NEW_TSRD:
            pool = np.flatnonzero((t["labels"] == c) & t["first_copy"])
            images += list(t["images"][rng.choice(pool, min(10, len(pool)), replace=False)])
            truth += [1] * min(10, len(pool))
        truth = np.asarray(truth)
        groups = embedding.detect_new_classes(model, det, ckpt["class_ids"], images)
        flagged = np.zeros(len(images), bool)
        for grp in groups:
            flagged[grp.members] |= grp.likely_new
        precision = (truth[flagged] == 1).mean() if flagged.any() else float("nan")
        print(f"mix {seed}: {len(images)} images, {len(groups)} groups, {sum(gr.likely_new for gr in groups)} "
              f"flagged; image precision {precision:.3f}, recall {flagged[truth == 1].mean():.3f}")


if __name__ == "__main__":
    main()
