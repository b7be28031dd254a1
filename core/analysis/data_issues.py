"""Data issues of a dataset split, each a ranked list of findings with a reason: likely mislabelled images,
near-duplicates across splits (leakage), outliers.

- **Mislabelled**: confident learning (:mod:`core.analysis.label_issues`) on out-of-sample probabilities: a training
  split by K-fold logistic regression on the model's frozen penultimate features (the model itself has learnt
  those labels, wrong ones included); a held-out split (val, test) by the model's probabilities as they are.
  Each finding has the given label, the suggested one and the self-confidence (its score, lowest first); how many
  there are is what the method finds.
- **Leakage**: per split pair (train-val, train-test, val-test) that involves the split, the images of the split
  whose perceptual descriptor (:func:`core.data.duplicates.descriptors`, the one the import's leakage check uses) is
  within :data:`core.data.duplicates.NEAR_DUPLICATE` of an image of the other split, with that image.
- **Outliers**: the images the model's novelty score (:mod:`core.analysis.novelty`, ``fused``) puts above its
  threshold (outside what 99 % of the model's validation images score), highest first. A model whose training
  dataset is not here is calibrated on the examined dataset itself (:func:`outlier_detector`), so every model gets
  outliers.

A result depends on these finders and on the novelty method set: :func:`issues_version` says which, and a result of
another version is found again rather than shown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.analysis import label_issues, novelty
from core.analysis.novelty import DEFAULT_METHOD, Detector, layer_outputs
from core.base.progress import ProgressFn, StopFn, check, silent
from core.base.registries import set_version
from core.data import datasets
from core.data.duplicates import NEAR_DUPLICATE, descriptors
from core.learning import registry

#: Most findings a result keeps per list (the page shows a page of them at a time).
STORE_LIMIT = 5000
#: Version of the finders below (raise it when one computes differently).
FINDERS_VERSION = 2
#: The version of results found before results recorded it (finders 1, the novelty set's first version).
UNSTAMPED_VERSION = "b04497cb"
#: Split pairs checked for leakage, earlier split first.
PAIRS = (("train", "val"), ("train", "test"), ("val", "test"))
#: Fewest validation images the fallback outlier calibration needs (the rest of the split is its bank).
MIN_CALIBRATION = 20


def issues_version() -> str:
    """Version of what a result depends on besides its model and dataset: the finders, their settings and the
    novelty method set and the share of validation images its thresholds accept (the outliers)."""
    return set_version([("finders", FINDERS_VERSION), ("near_duplicate", NEAR_DUPLICATE), ("limit", STORE_LIMIT),
                        ("folds", label_issues.FOLDS), ("outlier_method", DEFAULT_METHOD),
                        ("novelty", novelty.methods_version()), ("accept", novelty.THRESHOLD_ACCEPT)])


@dataclass
class DataIssues:
    """Ranked findings, worst first. Every row has ``file`` (the image's id in its dataset and in workspaces derived
    from it), ``split``, ``class_id`` (its given label), ``score`` and ``reason``; mislabelled rows also
    ``suggested`` (a class id); leaks ``near``, ``near_split``, ``near_class_id`` and ``pair``.
    ``outlier_note`` says why there is no outlier ranking, when there is none."""

    mislabelled: list[dict] = field(default_factory=list)
    leaks: list[dict] = field(default_factory=list)
    outliers: list[dict] = field(default_factory=list)
    outlier_note: str = ""


def class_label(info: datasets.DatasetInfo, class_id: int, names: dict[int, str] | None = None) -> str:
    """``"14: Stop"``: a class id with its name (the dataset's, else ``names``')."""
    name = info.classes.get(int(class_id)) or (names or {}).get(int(class_id))
    return f"{class_id}: {name}" if name else str(class_id)


def find_issues(model, ckpt: dict, info: datasets.DatasetInfo, *, split: str, detector: Detector | None = None,
                seed: int = 0, progress: ProgressFn | None = None,
                should_stop: StopFn | None = None) -> DataIssues:
    """Issues of one split: mislabelled, outliers, and leaks between it and the other splits."""
    if split not in datasets.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(datasets.SPLITS)}")
    progress = progress or silent
    arrays = datasets.load_split(info, split)
    if len(arrays) == 0:
        raise ValueError(f"{info.name}/{split} is empty; choose another split")
    progress(0.05, f"the model's view of {len(arrays):,} images")
    out = layer_outputs(model, arrays.images, should_stop=should_stop)
    progress(0.4, "likely mislabelled images")
    issues = DataIssues(mislabelled=mislabelled(arrays, out, ckpt, info, split=split, seed=seed,
                                                should_stop=should_stop))
    if detector is not None:
        scores = detector.scores(model, arrays.images, (DEFAULT_METHOD,), outputs=out,
                                 should_stop=should_stop)[DEFAULT_METHOD]
        limit = detector.thresholds[DEFAULT_METHOD]
        order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > limit][:STORE_LIMIT]
        issues.outliers = [{"file": arrays.files[i], "split": split, "class_id": int(arrays.labels[i]),
                            "score": round(float(scores[i]), 3),
                            "reason": f"novelty {scores[i]:.2f} ({detector.accept:.0%} of known images stay "
                                      f"below {limit:.2f})"}
                           for i in order]
    check(should_stop)
    progress(0.7, "near-duplicates across splits")
    issues.leaks = leaks(info, split=split, should_stop=should_stop)
    return issues


def mislabelled(arrays: datasets.SplitArrays, outputs: dict[str, np.ndarray], ckpt: dict,
                info: datasets.DatasetInfo, *, split: str, seed: int = 0,
                should_stop: StopFn | None = None) -> list[dict]:
    """Confident-learning findings of one split from the model's layer outputs (:func:`layer_outputs`): a train
    split cross-validated on the penultimate features, a held-out split (or a train split too small to fold) on the
    model's probabilities."""
    names = {int(c): str(n) for c, n in zip(ckpt["class_ids"], ckpt["class_names"])}
    if split == "train" and len(arrays) >= 2 * label_issues.FOLDS:  # a tiny one: too few images to hold out
        rows = np.arange(len(arrays))
        probs, columns = label_issues.cross_validated_probs(outputs["pen"], arrays.labels, seed=seed,
                                                            should_stop=should_stop)
        how = "a classifier that never saw this image's label"
    else:
        columns = np.asarray([int(c) for c in ckpt["class_ids"]])
        lookup = {int(c): k for k, c in enumerate(columns)}
        rows = np.flatnonzero([int(c) in lookup for c in arrays.labels])  # labels the model knows
        logits = outputs["logits"][rows]
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        how = "the model"
    col = {int(c): k for k, c in enumerate(columns)}
    given = np.asarray([col[int(arrays.labels[r])] for r in rows], np.int64)
    found, suggested = label_issues.find_label_issues(given, probs)
    out = []
    for k, s in zip(found[:STORE_LIMIT], suggested[:STORE_LIMIT]):
        r, label, to = rows[k], int(arrays.labels[rows[k]]), int(columns[s])
        own = probs[k, given[k]]
        out.append({"file": arrays.files[r], "split": split, "class_id": label, "suggested": to,
                    "score": round(float(own), 4),
                    "reason": f"labelled {class_label(info, label, names)}: {how} gives that {own * 100:.1f} % "
                              f"and suggests {class_label(info, to, names)} ({probs[k, s] * 100:.1f} %)"})
    return out


def leaks(info: datasets.DatasetInfo, *, split: str, should_stop: StopFn | None = None) -> list[dict]:
    """Images of ``split`` that look like an image of another split (descriptor cosine >= NEAR_DUPLICATE), per
    pair of :data:`PAIRS` involving ``split``, most similar first; each with its nearest image there."""
    mine = datasets.load_split(info, split)
    if len(mine) == 0:
        return []
    own = descriptors(mine.images)
    found = []
    for pair in (p for p in PAIRS if split in p):
        other_split = pair[1] if pair[0] == split else pair[0]
        other = datasets.load_split(info, other_split)
        if len(other) == 0:
            continue
        bank = descriptors(other.images)
        for s in range(0, len(own), 1024):
            check(should_stop)
            sims = own[s:s + 1024] @ bank.T
            best = sims.argmax(1)
            for k in np.flatnonzero(sims[np.arange(len(best)), best] >= NEAR_DUPLICATE):
                i, j = s + k, int(best[k])
                found.append({"file": mine.files[i], "split": split, "class_id": int(mine.labels[i]),
                              "near": other.files[j], "near_split": other_split,
                              "near_class_id": int(other.labels[j]), "pair": "-".join(pair),
                              "score": round(float(sims[k, j]), 4),
                              "reason": f"looks like {other_split} image {Path(other.files[j]).name} "
                                        f"({class_label(info, int(other.labels[j]))}), similarity "
                                        f"{sims[k, j]:.3f}"})
    return sorted(found, key=lambda r: -r["score"])[:STORE_LIMIT]


def outlier_detector(model_path: Path, model, ckpt: dict, info: datasets.DatasetInfo, *,
                     should_stop: StopFn | None = None) -> tuple[Detector | None, str]:
    """The model's novelty detector (:func:`core.analysis.novelty.load_or_fit`); when the dataset it was trained on
    is not here, one calibrated on ``info`` itself: its train images of the model's classes as the bank, its val
    images (else a seeded share of train) for the thresholds. Returns ``(detector, note)``; ``(None, why)`` when
    neither can be had."""
    try:
        return novelty.load_or_fit(model_path, model, ckpt, should_stop=should_stop), ""
    except ValueError as e:
        missing = str(e)
    ids = [int(c) for c in ckpt["class_ids"]]
    lookup = {c: i for i, c in enumerate(ids)}
    train, val = (datasets.load_split(info, s, classes=ids) for s in ("train", "val"))
    if len(val) < MIN_CALIBRATION:  # no val split to calibrate on: hold out a seeded quarter of train
        order = np.random.default_rng(0).permutation(len(train))
        cut = len(train) // 4
        keep = np.sort(order[cut:])
        val_images, bank, labels = train.images[order[:cut]], train.images[keep], train.labels[keep]
    else:
        val_images, bank, labels = val.images, train.images, train.labels
    try:
        det = novelty.fit(model, bank, np.asarray([lookup[int(c)] for c in labels]), val_images,
                          model_version=registry.file_version(model_path), should_stop=should_stop)
    except ValueError as e:
        return None, f"No outlier ranking: {missing}; and {info.name} is too small to calibrate on ({e})."
    return det, (f"The model's training dataset is not here, so its novelty check was calibrated on "
                 f"{info.name} itself.")
