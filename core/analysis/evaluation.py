"""Evaluation, pure computation: a checkpoint's predictions on images, and their metrics summary.

Running an evaluation as a run lives in :mod:`core.analysis.evaluate_run`; keeping its result as a report in
:mod:`core.analysis.reports`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.analysis import metrics
from core.data.importers import load_npz
from core.learning.inference import predict_proba
from core.learning.tta import VIEWS as TTA_VIEWS
from core.learning.models import model_from_checkpoint
from core.base.progress import ProgressFn, StopFn

#: Predictions kept per image (reports, prediction results).
TOP_K = 5


@dataclass(frozen=True)
class Predictions:
    """Per-image results: y_true (N,), y_pred (N,), confidence (N,), top_ids (N, k), top_p (N, k) in class ids."""

    y_true: np.ndarray
    y_pred: np.ndarray
    confidence: np.ndarray
    top_ids: np.ndarray
    top_p: np.ndarray
    files: list[str]


def predict_arrays(model, class_ids: list[int], images: np.ndarray, labels: np.ndarray, *, files: list[str] | None = None,
                   progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                   tta: bool = False) -> tuple[Predictions, float]:
    """Run the model (``tta``: averaged over the test-time views); returns predictions in class ids and images per
    second."""
    t0 = time.perf_counter()
    proba = predict_proba(model, images, progress=progress, should_stop=should_stop, tta=tta)
    seconds = time.perf_counter() - t0
    ids = np.asarray(class_ids, np.int64)
    k = min(TOP_K, proba.shape[1])
    top = np.argsort(-proba, axis=1)[:, :k]
    preds = Predictions(y_true=np.asarray(labels, np.int64), y_pred=ids[top[:, 0]] if len(top) else np.zeros(0, np.int64),
                        confidence=np.take_along_axis(proba, top[:, :1], 1)[:, 0] if len(top) else np.zeros(0),
                        top_ids=ids[top], top_p=np.take_along_axis(proba, top, 1), files=files or [""] * len(labels))
    return preds, len(labels) / max(seconds, 1e-9)


def summarise(preds: Predictions, *, class_ids: list[int], images_per_s: float) -> dict:
    """The CLI/JSON summary: n, accuracy, macro_f1, images_per_s, metrics, per_class, confusion, metrics_version
    (the metric set's version: :func:`core.analysis.metrics.metrics_version`)."""
    labels = sorted(set(int(c) for c in class_ids) | set(int(c) for c in preds.y_true))
    rep = metrics.classification_report(preds.y_true, preds.y_pred, labels=labels)
    overall = rep["overall"]
    return {"n": int(len(preds.y_true)), "accuracy": overall["accuracy"], "macro_f1": overall["macro_f1"],
            "images_per_s": round(float(images_per_s), 1), "metrics": overall,
            "per_class": {str(k): v for k, v in rep["per_class"].items()},
            "labels": rep["labels"], "confusion": rep["confusion"], "metrics_version": rep["metrics_version"]}


def evaluate_checkpoint(ckpt: dict, images: np.ndarray, labels: np.ndarray, *, files: list[str] | None = None,
                        progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                        tta: bool = False) -> tuple[dict, Predictions]:
    """The summary (:func:`summarise`, plus ``tta_views``: 1, or the number of test-time views averaged) and the
    predictions of a checkpoint on images with their labels."""
    if len(labels) == 0:
        raise ValueError("nothing to evaluate: the split is empty")
    model = model_from_checkpoint(ckpt)
    preds, ips = predict_arrays(model, ckpt["class_ids"], images, labels, files=files, progress=progress,
                                should_stop=should_stop, tta=tta)
    summary = summarise(preds, class_ids=ckpt["class_ids"], images_per_s=ips)
    return {**summary, "tta_views": len(TTA_VIEWS) if tta else 1}, preds


def load_npz_images(path: Path) -> np.ndarray:
    """The images array (N, H, W, 3) uint8 of an npz file."""
    return load_npz(Path(path), ("images",))["images"]


def load_npz_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """images/labels from an npz file (the shared-data layout)."""
    d = load_npz(Path(path), ("images", "labels"))
    return d["images"], d["labels"].astype(np.int64)
