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
from core.data.built import SplitArrays  # noqa: E402
from core.learning import models  # noqa: E402
from core.learning.inference import predict_proba  # noqa: E402


def predict(dataset: str, split: str, paths: list[str]) -> tuple[SplitArrays, np.ndarray, list[np.ndarray]]:
    """The split, the models' class ids and each model's probabilities (N, K), each model run once; ValueError
    unless the models share their classes (a committee needs that)."""
    if not paths:
        raise ValueError("give at least one model")
    arrays = datasets.load_split(dataset, split)
    probs, ids = [], None
    for p in paths:
        ckpt = models.load_checkpoint(Path(p))
        if ids is not None and list(ckpt["class_ids"]) != list(ids):
            raise ValueError(f"{p} has other classes than {paths[0]}: a committee needs the same classes")
        ids = np.array(ckpt["class_ids"])
        probs.append(predict_proba(models.model_from_checkpoint(ckpt), arrays.images))
    return arrays, ids, probs


def accuracies(dataset: str, split: str, paths: list[str]) -> dict[str, float]:
    """Percent correct of each model and of their committee (the models must share their classes)."""
    return scores(*predict(dataset, split, paths), paths)


def scores(arrays: SplitArrays, ids: np.ndarray, probs: list[np.ndarray], paths: list[str]) -> dict[str, float]:
    """:func:`accuracies` from :func:`predict`'s output."""
    out = {p: round(100 * float((ids[pr.argmax(1)] == arrays.labels).mean()), 3) for p, pr in zip(paths, probs)}
    out["committee"] = round(100 * float((ids[np.mean(probs, 0).argmax(1)] == arrays.labels).mean()), 3)
    return out


def against_first(arrays: SplitArrays, ids: np.ndarray, probs: list[np.ndarray], paths: list[str],
                  tracks: dict[str, str]) -> dict[str, str]:
    """Per later model, as text: its disagreements with the first, McNemar's p and, where ``tracks`` (file ->
    track id) covers the split, the p of the test that counts each track once."""
    right = [ids[pr.argmax(1)] == arrays.labels for pr in probs]
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
    dataset, split, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    predicted = predict(dataset, split, paths)
    for name, acc in scores(*predicted, paths).items():
        print(f"{name}: {acc:.3f} %")
    for name, text in against_first(*predicted, paths, model_diff.split_tracks(dataset, split)).items():
        print(f"{name}: {text}")
