"""Likely label errors by confident learning (Northcutt et al. 2021, "Confident learning: estimating uncertainty
in dataset labels"), written here in a few functions rather than adding cleanlab for them.

- **Out-of-sample probabilities** (:func:`cross_validated_probs`): a model scores the images it learnt from
  confidently, their wrong labels included, so a training split is judged by K-fold logistic regression on the
  model's frozen penultimate features: each image gets probabilities from a classifier that never saw its label.
  Held-out splits (val, test) use the model's own probabilities as they are.
- **Per-class thresholds** (:func:`class_thresholds`): ``t_j`` = the mean probability of class ``j`` over the images
  labelled ``j`` (their mean self-confidence).
- **Issues** (:func:`find_label_issues`): an image is an issue when some class other than its label reaches its
  own threshold and, among the classes that do, has the highest probability. An image whose label has the highest
  probability and reaches its threshold is never one.
- **Ranking** (:func:`self_confidence`): the probability of the given label, lowest first.
"""
from __future__ import annotations

import numpy as np

from core.base.progress import StopFn, check

#: Folds of the cross-validation, and the logistic regression's inverse regularisation strength and iterations.
FOLDS = 5
LOGREG_C = 1.0
LOGREG_ITERATIONS = 300
#: Threshold of a class no image is labelled with (its mean self-confidence is undefined): a majority call.
UNSEEN_CLASS_THRESHOLD = 0.5


def _check(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, pred_probs = np.asarray(labels), np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2 or len(pred_probs) != len(labels):
        raise ValueError(f"pred_probs must be (N, K) with one row per label, got {pred_probs.shape} for "
                         f"{len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= pred_probs.shape[1]):
        raise ValueError(f"labels must be column indices 0..{pred_probs.shape[1] - 1}, got "
                         f"{labels.min()}..{labels.max()}")
    return labels.astype(np.int64), pred_probs


def self_confidence(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Label quality (N,): the probability of each image's given label (``labels`` are column indices of
    ``pred_probs`` (N, K)). Lower is more likely mislabelled."""
    labels, pred_probs = _check(labels, pred_probs)
    return pred_probs[np.arange(len(labels)), labels]


def class_thresholds(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Per-class thresholds (K,): the mean probability of class j over the images labelled j;
    :data:`UNSEEN_CLASS_THRESHOLD` for a class no image is labelled with."""
    labels, pred_probs = _check(labels, pred_probs)
    k = pred_probs.shape[1]
    sums = np.bincount(labels, weights=pred_probs[np.arange(len(labels)), labels], minlength=k)
    counts = np.bincount(labels, minlength=k)
    return np.where(counts > 0, sums / np.maximum(counts, 1), UNSEEN_CLASS_THRESHOLD)


def find_label_issues(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confident-learning issues. Returns ``(issues, suggested)``: indices (M,) of the images whose label is likely
    wrong, ranked by self-confidence (lowest first), and for each the suggested column (the class above its
    threshold with the highest probability)."""
    labels, pred_probs = _check(labels, pred_probs)
    above = pred_probs >= class_thresholds(labels, pred_probs)[None, :]
    # the confident class: the most probable of the classes that reach their threshold (-1: none does)
    masked = np.where(above, pred_probs, -1.0)
    confident = np.where(above.any(1), masked.argmax(1), -1)
    issue = (confident >= 0) & (confident != labels)
    idx = np.flatnonzero(issue)
    order = np.argsort(self_confidence(labels, pred_probs)[idx], kind="stable")
    return idx[order], confident[idx[order]]


def cross_validated_probs(features: np.ndarray, labels: np.ndarray, *, folds: int = FOLDS, seed: int = 0,
                          should_stop: StopFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-sample probabilities by K-fold logistic regression on ``features`` (N, D) (a model's frozen
    penultimate features) with ``labels`` (N,) any class ids. Returns ``(probs, classes)``: probs (N, C) over the
    sorted distinct ``classes`` (C,), each row from a classifier fitted without that image."""
    from sklearn.linear_model import LogisticRegression  # slow to import; only this finder needs it
    from sklearn.model_selection import KFold, StratifiedKFold
    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features must be (N, D) with one row per label, got {features.shape} for "
                         f"{len(labels)} labels")
    if folds < 2 or len(labels) < 2 * folds:
        raise ValueError(f"cross-validation needs folds >= 2 and at least {2 * folds} images, got folds={folds} "
                         f"and {len(labels)} images; judge a held-out split instead")
    classes, y = np.unique(labels, return_inverse=True)
    x = (features - features.mean(0)) / (features.std(0) + 1e-6)
    stratified = np.bincount(y).min() >= folds
    splitter = (StratifiedKFold if stratified else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    probs = np.zeros((len(y), len(classes)))
    for fit_idx, held_idx in splitter.split(x, y):
        check(should_stop)
        seen = np.unique(y[fit_idx])
        if len(seen) == 1:
            probs[np.ix_(held_idx, seen)] = 1.0
            continue
        clf = LogisticRegression(C=LOGREG_C, max_iter=LOGREG_ITERATIONS, random_state=seed)
        clf.fit(x[fit_idx], y[fit_idx])
        probs[np.ix_(held_idx, clf.classes_)] = clf.predict_proba(x[held_idx])
    return probs, classes
