"""Classification metrics from labels and predictions: class-wise (one-vs-rest) and overall.

Each per-class metric is one record in a registry (:func:`register_metric` beside its function, read with
:func:`list_metrics` / :func:`get_metric`): its name, label, function of the one-vs-rest counts, which direction is
better, how it is shown and its help text. Reports, pages, the CLI and tests all read that one table; reports
record its version (:func:`metrics_version`). The overall metrics a report leads with (accuracy, macro F1, ...)
are a second, ordered table of records (:func:`register_headline`, read with :func:`list_headlines` /
:func:`get_headline`); it changes how reports are shown, not what they hold, so it has no part in that version.

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

from dataclasses import dataclass
from typing import Callable

import numpy as np

from core.base.registries import Registry

#: Value of a likelihood ratio whose denominator is zero (and the cap of every likelihood ratio).
LR_CAP = 1e6
#: How a metric's values are shown: a share of 1, a plain number, or a ratio capped at LR_CAP (shown as infinity).
FORMATS = ("percent", "number", "ratio")
#: The metric set's version recorded by reports saved before reports recorded it (these ten, each version 1).
UNSTAMPED_VERSION = "71419f44"


@dataclass(frozen=True)
class Counts:
    """One-vs-rest counts per class, each (K,) int64, and ``n`` the number of samples."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    n: int


@dataclass(frozen=True)
class Metric:
    """One per-class metric: ``compute(counts) -> (K,) float64``."""

    name: str
    label: str
    compute: Callable[[Counts], np.ndarray]
    higher_is_better: bool
    format: str
    help: str
    #: shown per class, report A against report B (:func:`core.analysis.reports.compare_reports`)
    compared: bool = False
    version: int = 1


#: The metrics (read it with list_metrics / get_metric; tests may put a toy record in its ``table``).
REGISTRY: Registry[Metric] = Registry("metric")
#: The per-class metric a chart of per-class values, or of their deltas, starts on.
DEFAULT_CHART_METRIC = "f1"


@dataclass(frozen=True)
class Headline:
    """One overall metric a report leads with: ``name`` is its key in :func:`overall_metrics`."""

    name: str
    label: str
    help: str
    #: shown for report B with its delta against report A when two reports are compared
    compared: bool = False
    version: int = 1


#: The headline overall metrics, in the order a report shows them (read it with list_headlines / get_headline).
HEADLINES: Registry[Headline] = Registry("headline metric")


def register_metric(name: str, *, label: str, higher_is_better: bool, format: str, help: str,
                    compared: bool = False, version: int = 1):
    """Decorator: register ``compute(counts) -> (K,)`` as metric ``name`` (see :class:`Metric`)."""
    if format not in FORMATS:
        raise ValueError(f"unknown metric format {format!r}; valid: {', '.join(FORMATS)}")

    def add(compute: Callable[[Counts], np.ndarray]) -> Callable[[Counts], np.ndarray]:
        REGISTRY.add(Metric(name, label, compute, higher_is_better, format, help, compared, version))
        return compute
    return add


def list_metrics() -> tuple[str, ...]:
    """Names of the per-class metrics, in the order reports list them."""
    return REGISTRY.names()


def get_metric(name: str) -> Metric:
    """The record of metric ``name``; ValueError listing the valid names for an unknown one."""
    return REGISTRY.get(name)


def register_headline(name: str, *, label: str, help: str, compared: bool = False) -> Headline:
    """Add overall metric ``name`` (a key of :func:`overall_metrics`) to the headline, after the ones before it."""
    return HEADLINES.add(Headline(name, label, help, compared))


def list_headlines(*, compared: bool | None = None) -> tuple[str, ...]:
    """Names of the headline overall metrics in display order; ``compared=True``: only those shown in comparisons."""
    return tuple(n for n in HEADLINES.names() if compared is None or HEADLINES.get(n).compared == compared)


def get_headline(name: str) -> Headline:
    """The record of headline metric ``name``; ValueError listing the valid names for an unknown one."""
    return HEADLINES.get(name)


def list_compared() -> tuple[str, ...]:
    """Names of the per-class metrics marked ``compared`` (report A against report B), in report order."""
    return tuple(n for n in list_metrics() if get_metric(n).compared)


def metrics_version() -> str:
    """Version of the metric set (changes when a metric is added, removed or has its version raised)."""
    return REGISTRY.version()


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _ratio_capped(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.where(den > 0, _div(num, den), np.where(num > 0, LR_CAP, 0.0))
    return np.minimum(out, LR_CAP)


# -- the metrics, in report order ----------------------------------------------------------------------------------

@register_metric("accuracy", label="Accuracy", higher_is_better=True, format="percent",
                 help="One-vs-rest accuracy: dominated by the many other-class images, so close to 1 for every "
                      "class.")
def accuracy(c: Counts) -> np.ndarray:
    return _div(c.tp + c.tn, np.full(len(c.tp), c.n))


@register_metric("precision", label="Precision", higher_is_better=True, format="percent", compared=True,
                 help="Of the images predicted as this class, the share that really are.")
def precision(c: Counts) -> np.ndarray:
    return _div(c.tp, c.tp + c.fp)


@register_metric("recall", label="Recall / sensitivity / TPR", higher_is_better=True, format="percent",
                 compared=True, help="Of the images of this class, the share the model finds.")
def recall(c: Counts) -> np.ndarray:
    return _div(c.tp, c.tp + c.fn)


@register_metric("specificity", label="Specificity / TNR", higher_is_better=True, format="percent",
                 help="Of the images of other classes, the share not predicted as this one.")
def specificity(c: Counts) -> np.ndarray:
    return _div(c.tn, c.tn + c.fp)


@register_metric("f1", label="F1", higher_is_better=True, format="percent", compared=True,
                 help="Harmonic mean of precision and recall: one number for how well the class is handled.")
def f1(c: Counts) -> np.ndarray:
    return _div(2 * c.tp, 2 * c.tp + c.fp + c.fn)


@register_metric("plr", label="Positive likelihood ratio", higher_is_better=True, format="ratio",
                 help="Positive likelihood ratio: how much a prediction of this class raises its odds (higher is "
                      "better; \u221e when the class is never predicted wrongly).")
def plr(c: Counts) -> np.ndarray:
    return _ratio_capped(recall(c), 1 - specificity(c))


@register_metric("nlr", label="Negative likelihood ratio", higher_is_better=False, format="ratio",
                 help="Negative likelihood ratio: how much a prediction of another class lowers this class's odds "
                      "(lower is better).")
def nlr(c: Counts) -> np.ndarray:
    return _ratio_capped(1 - recall(c), specificity(c))


@register_metric("bcr", label="Balanced classification rate", higher_is_better=True, format="percent",
                 help="Balanced classification rate: the mean of recall and specificity.")
def bcr(c: Counts) -> np.ndarray:
    return (recall(c) + specificity(c)) / 2


@register_metric("ber", label="Balanced error rate / HTER", higher_is_better=False, format="percent",
                 help="Balanced error rate: 1 - BCR.")
def ber(c: Counts) -> np.ndarray:
    return 1 - (recall(c) + specificity(c)) / 2


@register_metric("mcc", label="Matthews correlation", higher_is_better=True, format="number",
                 help="Matthews correlation, -1 to 1: agreement between prediction and truth for this class.")
def mcc(c: Counts) -> np.ndarray:
    num = c.tp.astype(np.float64) * c.tn - c.fp.astype(np.float64) * c.fn
    den = np.sqrt((c.tp + c.fp).astype(np.float64) * (c.tp + c.fn) * (c.tn + c.fp) * (c.tn + c.fn))
    return _div(num, den)


register_headline("accuracy", label="Accuracy", compared=True, help="Share of all images classified correctly.")
register_headline("macro_f1", label="Macro F1", compared=True,
                  help="F1 averaged over the classes, each class counting once whatever its size.")
register_headline("macro_precision", label="Macro precision", help="Precision averaged over the classes.")
register_headline("macro_recall", label="Macro recall", help="Recall averaged over the classes.")
register_headline("mcc", label="Matthews corr.",
                  help="Multiclass Matthews correlation, -1 to 1: agreement between prediction and truth.")


def format_value(name: str, value: float) -> str:
    """A metric value as a person reads it: a share as a percentage, a capped ratio at the cap as infinity."""
    fmt = get_metric(name).format
    if fmt == "ratio":
        return "\u221e" if value >= LR_CAP else f"{value:.3g}"
    return f"{value:.2%}" if fmt == "percent" else f"{value:.3f}"


# -- from labels to a report ---------------------------------------------------------------------------------------

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
    """Every registered metric per class from a confusion matrix (K, K), each (K,) float64; also the counts
    ``support``, ``tp``, ``fp``, ``fn``, ``tn`` (K,) int64."""
    cm = np.asarray(cm, np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.sum() == 0:
        raise ValueError(f"confusion matrix must be square and non-empty, got shape {cm.shape} with {cm.sum()} samples")
    n = int(cm.sum())
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    counts = Counts(tp, fp, fn, n - tp - fp - fn, n)
    out = {name: get_metric(name).compute(counts) for name in list_metrics()}
    return {**out, "support": cm.sum(1), "tp": tp, "fp": fp, "fn": fn, "tn": counts.tn}


def overall_metrics(cm: np.ndarray) -> dict[str, float]:
    """Accuracy, macro averages (``macro_<metric>``), micro precision/recall/F1, multiclass MCC, n."""
    cm = np.asarray(cm, np.int64)
    pc = per_class_metrics(cm)
    present = (cm.sum(0) + cm.sum(1)) > 0
    n = int(cm.sum())
    out: dict[str, float] = {"n": n, "accuracy": float(np.trace(cm) / n)}
    for key in list_metrics():
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
    """JSON-ready report: labels, confusion (list of lists), per_class {id: {metric: float, support: int}}, overall,
    and ``metrics_version`` (:func:`metrics_version`)."""
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    pc = per_class_metrics(cm)
    per_class = {}
    for i, cid in enumerate(labels):
        row = {k: float(pc[k][i]) for k in list_metrics()}
        row["support"] = int(pc["support"][i])
        per_class[int(cid)] = row
    return {"labels": [int(c) for c in labels], "confusion": cm.tolist(), "per_class": per_class,
            "overall": overall_metrics(cm), "metrics_version": metrics_version()}
