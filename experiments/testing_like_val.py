"""Accuracy on a validation split transformed the way the Testing dataset's test split is made: a split to choose
48-class candidates on for the Testing goal (issue 25) without looking at a test split. Prints numbers only.

Testing's test split is GTSRB_48's test with the seven augmentation groups at ``TESTING_P`` (0.3), plus
``TESTING_EXTRA`` copies of test images at ``TESTING_EXTRA_P`` (0.4) (``core/data/builds.py``). Here GTSRB_48's val
split (by track) is transformed both ways, with several seeds, and the two accuracies are weighted as in Testing's
test split. The transformed copies are made once and shared by every model.

    TSW_DATA_ROOT=... python experiments/testing_like_val.py [--seeds 3] [--committee] artifacts/robust48.pt other.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.data import builds, datasets  # noqa: E402
from core.data.augment import augment_images  # noqa: E402
from core.learning import models  # noqa: E402
from core.learning.inference import predict_proba  # noqa: E402


def transformed_copies(images: np.ndarray, seeds: int) -> list[tuple[float, np.ndarray]]:
    """(probability, transformed copy) for each probability Testing's test uses and each seed."""
    return [(p, augment_images(images, p=p, seed=1000 * k + round(100 * p)))
            for k in range(seeds) for p in (builds.TESTING_P, builds.TESTING_EXTRA_P)]


def testing_like(paths: list[str], seeds: int = 3, dataset: str = "GTSRB_48",
                 committee: bool = False) -> dict[str, dict[str, float]]:
    """Per model (and, with ``committee``, for their probabilities averaged; the models must then share their
    classes): percent correct at each probability (mean over seeds) and weighted as Testing's test split."""
    info = datasets.get_dataset(dataset)
    val, n_test = datasets.load_split(info, "val"), info.split_size("test")  # the test split's size, nothing else
    n_extra = min(builds.TESTING_EXTRA, n_test)
    weights = {builds.TESTING_P: n_test / (n_test + n_extra), builds.TESTING_EXTRA_P: n_extra / (n_test + n_extra)}
    copies = transformed_copies(val.images, seeds)
    probs, ids = {}, None
    for path in paths:
        ckpt = models.load_checkpoint(Path(path))
        if ids is not None and list(ckpt["class_ids"]) != list(ids):
            raise ValueError(f"{path} has other classes than {paths[0]}: a committee needs the same classes")
        ids, model = np.array(ckpt["class_ids"]), models.model_from_checkpoint(ckpt)
        probs[path] = [predict_proba(model, images) for _, images in copies]
    if committee:
        probs["committee"] = [np.mean([probs[p][i] for p in paths], 0) for i in range(len(copies))]
    out = {}
    for name, per_copy in probs.items():
        acc = {p: [] for p in weights}
        for (p, _), proba in zip(copies, per_copy):
            acc[p].append(100 * float((ids[proba.argmax(1)] == val.labels).mean()))
        row = {f"p {p}": float(np.mean(v)) for p, v in acc.items()}
        row["testing-like"] = sum(w * float(np.mean(acc[p])) for p, w in weights.items())
        row["sd over seeds"] = float(np.std([sum(w * acc[p][k] for p, w in weights.items())
                                             for k in range(seeds)], ddof=1)) if seeds > 1 else float("nan")
        out[name] = row
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--committee", action="store_true", help="also score the models' averaged probabilities")
    args = ap.parse_args()
    for name, row in testing_like(args.models, args.seeds, committee=args.committee).items():
        print(name + ": " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
