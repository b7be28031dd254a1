"""How a model trained from a base model compares with that base on the same images: old-class against new-class
accuracy before and after, the change of every class, and what regressed (classes that lost more than
:data:`REGRESSION_POINTS` points; images the base got right and the new model gets wrong, by image id).

Old classes are the base model's; new classes are the dataset's others. The comparison runs on the dataset's
test split, or on val when it has no test images (:func:`comparison_split`); the split it used is recorded.

:func:`compare_predictions` works on arrays (class ids in, a JSON-ready dict out); :func:`compare_models` runs
both checkpoints over a split first (:mod:`core.learning.inference`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from core.base.progress import ProgressFn, silent
from core.data.datasets import DatasetInfo, load_split
from core.learning.inference import predict_proba
from core.learning.models import model_from_checkpoint

#: A class "regressed" when its accuracy fell by more than this many percentage points.
REGRESSION_POINTS = 1.0
#: Regressed images kept in the result (the count of all of them is kept too).
MAX_REGRESSED_IMAGES = 200
#: Version of the result's layout (pages and the CLI read it).
FORMAT = 1


def comparison_split(info: DatasetInfo) -> str:
    """The split a comparison runs on: ``test``, or ``val`` when the dataset has no test images."""
    for split in ("test", "val"):
        if info.split_size(split) > 0:
            return split
    raise ValueError(f"dataset {info.name} has no test or val images to compare the models on; add some "
                     "(Add images page) or skip the comparison")


def compare_models(base: dict, new: dict, info: DatasetInfo, *, split: str | None = None,
                   progress: ProgressFn | None = None) -> dict:
    """Run checkpoints ``base`` and ``new`` over ``split`` of ``info`` (default: :func:`comparison_split`) and
    compare them (:func:`compare_predictions`); the result also names the dataset and its version."""
    split = split or comparison_split(info)
    progress = progress or silent
    arrays = load_split(info, split)
    if len(arrays) == 0:
        raise ValueError(f"{info.name}/{split} is empty; compare on a split with images")
    preds = []
    for k, ckpt in enumerate((base, new)):
        progress(k / 2, f"comparing with the base model on {len(arrays):,} {split} images")
        proba = predict_proba(model_from_checkpoint(ckpt), arrays.images)
        preds.append(np.asarray(ckpt["class_ids"], np.int64)[proba.argmax(1)])
    names = {**{int(c): n for c, n in zip(base["class_ids"], base["class_names"])},
             **{int(c): n for c, n in zip(new["class_ids"], new["class_names"])}, **info.classes}
    out = compare_predictions(arrays.labels, preds[0], preds[1], old_ids=base["class_ids"], files=arrays.files,
                              class_names=names)
    return {"split": split, "dataset": info.name, "dataset_version": info.fingerprint, **out}


def compare_predictions(labels: np.ndarray, before: np.ndarray, after: np.ndarray, *, old_ids: Sequence[int],
                        files: Sequence[str], class_names: dict[int, str] | None = None,
                        regression_points: float = REGRESSION_POINTS,
                        max_images: int = MAX_REGRESSED_IMAGES) -> dict:
    """Compare two models' predictions on the same images.

    Parameters
    ----------
    labels, before, after : np.ndarray (N,) int
        True class ids, and the class ids the base model (``before``) and the new one (``after``) predict.
    old_ids : the base model's class ids; the labels' other classes are the new ones.
    files : (N,) image ids (the split's relative files).
    class_names : class id -> name, for the result's ``name`` fields.

    Returns
    -------
    dict
        ``old_classes`` / ``new_classes`` / ``all``: ``{classes, images, correct_before, correct_after, before,
        after}`` (accuracies in [0, 1]; ``None`` for a group without images); ``per_class``: one row per class
        with images ``{class_id, name, old, images, before, after, delta_points}``; ``regressions``: the old
        classes whose accuracy fell by more than ``regression_points``, worst first; ``regressed_images``: up to
        ``max_images`` images the base got right and the new model gets wrong, ``{file, class_id, before,
        after}``, and ``regressed_images_total``.
    """
    labels, before, after = (np.asarray(a, np.int64).ravel() for a in (labels, before, after))
    if not len(labels) == len(before) == len(after) == len(files):
        raise ValueError(f"labels, predictions and files must be as long: got {len(labels)}, {len(before)}, "
                         f"{len(after)} and {len(files)}")
    return _compute(labels, before, after, set(int(c) for c in old_ids), list(files), class_names or {},
                    regression_points, max_images)


def _group(mask: np.ndarray, labels: np.ndarray, ok_before: np.ndarray, ok_after: np.ndarray) -> dict:
    n = int(mask.sum())
    cb, ca = int(ok_before[mask].sum()), int(ok_after[mask].sum())
    return {"classes": len(set(labels[mask].tolist())), "images": n, "correct_before": cb, "correct_after": ca,
            "before": cb / n if n else None, "after": ca / n if n else None}


def _compute(labels: np.ndarray, before: np.ndarray, after: np.ndarray, old: set[int], files: list[str],
             names: dict[int, str], points: float, max_images: int) -> dict:
    ok_before, ok_after = before == labels, after == labels
    is_old = np.isin(labels, sorted(old))

    def name(c: int) -> str:
        return names.get(c, f"class {c}")

    per_class = []
    for c in sorted(set(labels.tolist())):
        m = labels == c
        b, a = float(ok_before[m].mean()), float(ok_after[m].mean())
        per_class.append({"class_id": c, "name": name(c), "old": c in old, "images": int(m.sum()), "before": b,
                          "after": a, "delta_points": round(100 * (a - b), 2)})
    regressions = sorted((r for r in per_class if r["old"] and r["delta_points"] < -points),
                         key=lambda r: (r["delta_points"], r["class_id"]))
    lost = np.flatnonzero(ok_before & ~ok_after)
    images = [{"file": files[i], "class_id": int(labels[i]), "name": name(int(labels[i])),
               "before": int(before[i]), "before_name": name(int(before[i])),
               "after": int(after[i]), "after_name": name(int(after[i]))} for i in lost[:max_images]]
    return {"format": FORMAT, "images": len(labels), "regression_points": points,
            "old_classes": _group(is_old, labels, ok_before, ok_after),
            "new_classes": _group(~is_old, labels, ok_before, ok_after),
            "all": _group(np.ones_like(is_old), labels, ok_before, ok_after),
            "per_class": per_class, "regressions": regressions, "regressed_images": images,
            "regressed_images_total": len(lost)}
