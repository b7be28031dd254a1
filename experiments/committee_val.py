"""Accuracy of models alone and as a committee (probabilities averaged) on one split of a dataset: how the teachers
of a distillation are chosen (on validation splits only). Prints numbers only: each model's accuracy, and against
the first model the disagreements with McNemar's p and, where the split has track ids, the p of the test that counts
each track once (``core.analysis.model_diff``; read that one on a split made by track).

    TSW_DATA_ROOT=... python experiments/committee_val.py GTSRB val artifacts/benchmark.pt other.pt
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.analysis import model_diff  # noqa: E402
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


def against_first(dataset: str, split: str, paths: list[str]) -> dict[str, str]:
    """Per later model: its disagreements with the first, McNemar's p and the track-level p (where there are
    tracks), as text."""
    arrays = datasets.load_split(dataset, split)
    tracks = model_diff.split_tracks(dataset, split)
    right = []
    for p in paths:
        ckpt = models.load_checkpoint(Path(p))
        ids = np.array(ckpt["class_ids"])
        right.append(ids[predict_proba(models.model_from_checkpoint(ckpt), arrays.images).argmax(1)] == arrays.labels)
    out = {}
    for p, r in zip(paths[1:], right[1:]):
        first_only, this_only = right[0] & ~r, r & ~right[0]
        text = (f"vs first: first right only {int(first_only.sum())}, this right only {int(this_only.sum())}, "
                f"McNemar p {model_diff.mcnemar_exact(int(first_only.sum()), int(this_only.sum())):.3g}")
        by_track, n_tracks = model_diff.track_differences(arrays.files, first_only, this_only, tracks)
        if n_tracks:
            text += f", by track ({n_tracks} tracks) p {model_diff.sign_flip_p(by_track):.3g}"
        out[p] = text
    return out


if __name__ == "__main__":
    for name, acc in accuracies(sys.argv[1], sys.argv[2], sys.argv[3:]).items():
        print(f"{name}: {acc:.3f} %")
    for name, text in against_first(sys.argv[1], sys.argv[2], sys.argv[3:]).items():
        print(f"{name}: {text}")
