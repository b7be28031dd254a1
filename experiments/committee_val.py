"""Accuracy of models alone and as a committee (probabilities averaged) on one split of a dataset: how the teachers
of a distillation are chosen (on validation splits only). Prints numbers only.

    TSW_DATA_ROOT=... python experiments/committee_val.py GTSRB val artifacts/benchmark.pt other.pt
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.data import datasets  # noqa: E402
from core.learning import models  # noqa: E402
from core.learning.inference import predict_proba  # noqa: E402


def accuracies(dataset: str, split: str, paths: list[str]) -> dict[str, float]:
    """Percent correct of each model and of their committee (the models must share their classes)."""
    if not paths:
        raise ValueError("give at least one model")
    arrays = datasets.load_split(dataset, split)
    out, probs, ids = {}, [], None
    for p in paths:
        ckpt = models.load_checkpoint(Path(p))
        if ids is not None and list(ckpt["class_ids"]) != list(ids):
            raise ValueError(f"{p} has other classes than {paths[0]}: a committee needs the same classes")
        ids = np.array(ckpt["class_ids"])
        probs.append(predict_proba(models.model_from_checkpoint(ckpt), arrays.images))
        out[p] = round(100 * float((ids[probs[-1].argmax(1)] == arrays.labels).mean()), 3)
    out["committee"] = round(100 * float((ids[np.mean(probs, 0).argmax(1)] == arrays.labels).mean()), 3)
    return out


if __name__ == "__main__":
    for name, acc in accuracies(sys.argv[1], sys.argv[2], sys.argv[3:]).items():
        print(f"{name}: {acc:.3f} %")
