"""Data issues of a dataset, each a ranked list with its reason: likely mislabelled images, near-duplicates across
splits (leakage), outliers.

- **Mislabelled**: self-confidence ranking (the default of cleanlab's ``get_label_quality_scores``, written here in
  two lines rather than adding the dependency): the model's probability for the image's own label, lowest first.
- **Leakage**: val and test images whose perceptual descriptor (:func:`core.data.duplicates.descriptors`, the one the
  import's leakage check uses) is within :data:`core.data.duplicates.NEAR_DUPLICATE` of a train image.
- **Outliers**: the model's novelty score (:mod:`core.analysis.novelty`, ``fused``), highest first: images unlike any the
  model learnt from, whatever their label.

A result depends on these finders and on the novelty method set: :func:`issues_version` says which, and a result of
another version is found again rather than shown.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.data import datasets
from core.data.duplicates import NEAR_DUPLICATE, descriptors
from core.analysis import novelty
from core.analysis.novelty import DEFAULT_METHOD, Detector, layer_outputs
from core.base.progress import ProgressFn, StopFn, check, silent
from core.base.registries import set_version

LIMIT = 48
#: Version of the finders below (raise it when one computes differently).
FINDERS_VERSION = 1
#: The version of results found before results recorded it (finders 1, the novelty set's first version).
UNSTAMPED_VERSION = "b04497cb"


def issues_version() -> str:
    """Version of what a result depends on besides its model and dataset: the finders, their settings and the
    novelty method set (the outliers)."""
    return set_version([("finders", FINDERS_VERSION), ("near_duplicate", NEAR_DUPLICATE), ("limit", LIMIT),
                        ("outlier_method", DEFAULT_METHOD), ("novelty", novelty.methods_version())])


@dataclass
class DataIssues:
    """Ranked rows ``{"file", "split", "class_id", "score", "reason"}`` (leaks also ``"near"``), worst first."""

    mislabelled: list[dict] = field(default_factory=list)
    leaks: list[dict] = field(default_factory=list)
    outliers: list[dict] = field(default_factory=list)


def find_issues(model, ckpt: dict, info: datasets.DatasetInfo, *, split: str, detector: Detector | None = None,
                limit: int = LIMIT, progress: ProgressFn | None = None,
                should_stop: StopFn | None = None) -> DataIssues:
    """Issues of one split (mislabelled, outliers) and of val/test against train (leakage)."""
    if split not in datasets.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(datasets.SPLITS)}")
    progress = progress or silent
    arrays = datasets.load_split(info, split)
    if len(arrays) == 0:
        raise ValueError(f"{info.name}/{split} is empty; choose another split")
    ids = [int(c) for c in ckpt["class_ids"]]
    names = [str(n) for n in ckpt["class_names"]]
    progress(0.1, f"the model's view of {len(arrays):,} images")
    out = layer_outputs(model, arrays.images, should_stop=should_stop)
    probs = np.exp(out["logits"] - out["logits"].max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    issues = DataIssues(mislabelled=_mislabelled(arrays, probs, ids, names, split, limit))
    if detector is not None:
        scores = detector.scores(model, arrays.images, (DEFAULT_METHOD,), should_stop=should_stop)[DEFAULT_METHOD]
        issues.outliers = [{"file": arrays.files[i], "split": split, "class_id": int(arrays.labels[i]),
                            "score": round(float(scores[i]), 3),
                            "reason": f"novelty {scores[i]:.2f} (95 % of known images stay below "
                                      f"{detector.thresholds[DEFAULT_METHOD]:.2f})"}
                           for i in np.argsort(-scores)[:limit]]
    check(should_stop)
    progress(0.6, "near-duplicates across splits")
    issues.leaks = leaks(info, limit=limit, should_stop=should_stop)
    return issues


def _mislabelled(arrays, probs: np.ndarray, ids: list[int], names: list[str], split: str, limit: int) -> list[dict]:
    lookup = {c: k for k, c in enumerate(ids)}
    known = np.asarray([int(c) in lookup for c in arrays.labels])
    rows = np.flatnonzero(known)
    own = probs[rows, [lookup[int(arrays.labels[r])] for r in rows]]
    out = []
    for k in np.argsort(own)[:limit]:
        r, top = rows[k], int(probs[rows[k]].argmax())
        out.append({"file": arrays.files[r], "split": split, "class_id": int(arrays.labels[r]),
                    "score": round(float(own[k]), 4),
                    "reason": f"labelled {arrays.labels[r]}, the model gives that {own[k]:.0%} and predicts "
                              f"{ids[top]}: {names[top]} ({probs[r, top]:.0%})"})
    return out


def leaks(info: datasets.DatasetInfo, *, limit: int = LIMIT, should_stop: StopFn | None = None) -> list[dict]:
    """Val and test images that look like a train image (descriptor cosine >= NEAR_DUPLICATE), most similar first."""
    train = datasets.load_split(info, "train")
    bank = descriptors(train.images)
    found = []
    for split in ("val", "test"):
        other = datasets.load_split(info, split)
        desc = descriptors(other.images)
        for s in range(0, len(desc), 1024):
            check(should_stop)
            sims = desc[s:s + 1024] @ bank.T
            best = sims.argmax(1)
            for k in np.flatnonzero(sims[np.arange(len(best)), best] >= NEAR_DUPLICATE):
                i, j = s + k, best[k]
                found.append({"file": other.files[i], "split": split, "class_id": int(other.labels[i]),
                              "near": train.files[j], "score": round(float(sims[k, j]), 4),
                              "reason": f"looks like train image {train.files[j]} (class {train.labels[j]}, "
                                        f"similarity {sims[k, j]:.3f})"})
    return sorted(found, key=lambda r: -r["score"])[:limit]
