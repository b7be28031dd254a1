"""Classification metrics from labels and predictions: class-wise (one-vs-rest) and overall.

Degenerate cases give defined, finite values, never NaN or inf:

* a ratio with a zero denominator (precision of a class never predicted, recall of a class absent from the
  truth, specificity with no negatives) is 0.0, as scikit-learn's ``zero_division=0``;
* likelihood ratios: ``plr = recall / (1 - specificity)`` and ``nlr = (1 - recall) / specificity``; a zero
  denominator gives :data:`LR_CAP` if the numerator is positive, else 0.0; every ratio is capped at LR_CAP;
* Matthews correlation with a zero denominator is 0.0 (scikit-learn's convention).

Macro averages run over the classes that occur in the truth or in the predictions (as scikit-learn's
``labels=None``); classes in ``labels`` that never occur anywhere are left out of the macro average.
"""
from __future__ import annotations

import numpy as np

METRIC_NAMES = ("accuracy", "precision", "recall", "specificity", "f1", "plr", "nlr", "bcr", "ber", "mcc")
METRIC_LABELS = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall / sensitivity / TPR",
    "specificity": "Specificity / TNR",
    "f1": "F1",
    "plr": "Positive likelihood ratio",
    "nlr": "Negative likelihood ratio",
    "bcr": "Balanced classification rate",
    "ber": "Balanced error rate / HTER",
    "mcc": "Matthews correlation",
}
#: Plain-language help for each per-class metric (column help in the report table).
METRIC_HELP = {
    "precision": "Of the images predicted as this class, the share that really are.",
    "recall": "Of the images of this class, the share the model finds.",
    "specificity": "Of the images of other classes, the share not predicted as this one.",
    "f1": "Harmonic mean of precision and recall: one number for how well the class is handled.",
    "accuracy": "One-vs-rest accuracy: dominated by the many other-class images, so close to 1 for every class.",
    "plr": "Positive likelihood ratio: how much a prediction of this class raises its odds (higher is better; "
           "\u221e when the class is never predicted wrongly).",
    "nlr": "Negative likelihood ratio: how much a prediction of another class lowers this class's odds "
           "(lower is better).",
    "bcr": "Balanced classification rate: the mean of recall and specificity.",
    "ber": "Balanced error rate: 1 - BCR.",
    "mcc": "Matthews correlation, -1 to 1: agreement between prediction and truth for this class.",
}

#: Per-class metrics where a low value is bad (shown ascending, worst first); for the rest high is bad.
LOWER_IS_WORSE = frozenset({"accuracy", "precision", "recall", "specificity", "f1", "plr", "bcr", "mcc"})
#: Value of a likelihood ratio whose denominator is zero (and the cap of every likelihood ratio).
LR_CAP = 1e6


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _ratio_capped(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.where(den > 0, _div(num, den), np.where(num > 0, LR_CAP, 0.0))
    return np.minimum(out, LR_CAP)


def confusion_matrix(y_true, y_pred, *, labels) -> np.ndarray:
    """Counts (K, K) int64: rows are true classes, columns predicted classes, both in ``labels`` order.

    Parameters
    ----------
    y_true, y_pred : array-like (N,) of class ids
    labels : sequence of K class ids
    """
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    labels = np.asarray(list(labels))
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} entries but y_pred has {len(y_pred)}; they must match")
    if len(y_true) == 0:
        raise ValueError("no samples: y_true and y_pred are empty")
    if len(labels) == 0 or len(np.unique(labels)) != len(labels):
        raise ValueError("labels must be a non-empty list of distinct class ids")
    lookup = {int(c): i for i, c in enumerate(labels)}
    unknown = sorted(set(map(int, np.unique(np.concatenate([y_true, y_pred])))) - set(lookup))
    if unknown:
        raise ValueError(f"class ids {unknown[:10]} occur in y_true/y_pred but not in labels; add them to labels")
    t = np.fromiter((lookup[int(v)] for v in y_true), np.int64, len(y_true))
    p = np.fromiter((lookup[int(v)] for v in y_pred), np.int64, len(y_pred))
    k = len(labels)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def per_class_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """One-vs-rest metrics per class from a confusion matrix (K, K); every value (K,) float64 (counts int64)."""
    cm = np.asarray(cm, np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.sum() == 0:
        raise ValueError(f"confusion matrix must be square and non-empty, got shape {cm.shape} with {cm.sum()} samples")
    n = cm.sum()
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    tn = n - tp - fp - fn
    recall = _div(tp, tp + fn)
    specificity = _div(tn, tn + fp)
    num = tp.astype(np.float64) * tn - fp.astype(np.float64) * fn
    den = np.sqrt((tp + fp).astype(np.float64) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "accuracy": _div(tp + tn, np.full(len(tp), n)),
        "precision": _div(tp, tp + fp),
        "recall": recall,
        "specificity": specificity,
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "plr": _ratio_capped(recall, 1 - specificity),
        "nlr": _ratio_capped(1 - recall, specificity),
        "bcr": (recall + specificity) / 2,
        "ber": 1 - (recall + specificity) / 2,
        "mcc": _div(num, den),
        "support": cm.sum(1), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    }


def overall_metrics(cm: np.ndarray) -> dict[str, float]:
    """Accuracy, macro averages (``macro_<metric>``), micro precision/recall/F1, multiclass MCC, n."""
    cm = np.asarray(cm, np.int64)
    pc = per_class_metrics(cm)
    present = (cm.sum(0) + cm.sum(1)) > 0
    n = int(cm.sum())
    out: dict[str, float] = {"n": n, "accuracy": float(np.trace(cm) / n)}
    for key in METRIC_NAMES:
        out[f"macro_{key}"] = float(pc[key][present].mean())
    tp, fp, fn = pc["tp"].sum(), pc["fp"].sum(), pc["fn"].sum()
    out["micro_precision"] = float(_div(tp, tp + fp))
    out["micro_recall"] = float(_div(tp, tp + fn))
    out["micro_f1"] = float(_div(2 * tp, 2 * tp + fp + fn))
    # Multiclass Matthews correlation (Gorodkin's R_K), the formula scikit-learn uses.
    t, p = cm.sum(1).astype(np.float64), cm.sum(0).astype(np.float64)
    c = float(np.trace(cm))
    cov_ytyp = c * n - float(t @ p)
    cov_ypyp = n * n - float(p @ p)
    cov_ytyt = n * n - float(t @ t)
    den = np.sqrt(cov_ytyt * cov_ypyp)
    out["mcc"] = float(cov_ytyp / den) if den > 0 else 0.0
    return out


def classification_report(y_true, y_pred, *, labels) -> dict:
    """JSON-ready report: labels, confusion (list of lists), per_class {id: {metric: float, support: int}}, overall."""
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    pc = per_class_metrics(cm)
    per_class = {}
    for i, cid in enumerate(labels):
        row = {k: float(pc[k][i]) for k in METRIC_NAMES}
        row["support"] = int(pc["support"][i])
        per_class[int(cid)] = row
    return {"labels": [int(c) for c in labels], "confusion": cm.tolist(), "per_class": per_class,
            "overall": overall_metrics(cm)}
