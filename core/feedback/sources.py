"""The images to make more of: a report's mistakes (misclassified, or correct with low confidence), or images of a
dataset picked by file (a Data issues or Visualise selection), each with its true class and the model's verdict."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.analysis import reports
from core.analysis.explain import report_model_file
from core.base.text import plural
from core.data import datasets
from core.data.images import load_image
from core.learning import registry
from core.learning.inference import predict_proba
from core.learning.models import load_checkpoint, model_from_checkpoint

#: Which of a report's images :func:`from_report` takes by default.
WHICH = ("misclassified", "low_confidence", "both")
#: Most source images one request may name.
MAX_SOURCES = 500


@dataclass(frozen=True)
class Mistake:
    """One image to make more like: as stored, with its true class and what the model said."""
    #: (H, W, 3) uint8
    image: np.ndarray
    class_id: int
    #: the model's prediction (dataset class id)
    predicted_id: int | None
    #: the model's probability of ``predicted_id``
    confidence: float
    dataset: str
    #: the dataset's index ``file`` (an added image's file too)
    file: str
    report: str | None

    @property
    def wrong(self) -> bool:
        return self.predicted_id is not None and self.predicted_id != self.class_id


def report_rows(report: reports.Report, *, which: str = "misclassified", max_confidence: float = 0.6) -> np.ndarray:
    """Rows of a report's predictions to start from: its misclassified images (most confident first), correctly
    classified ones below ``max_confidence`` (least confident first), or both."""
    if which not in WHICH:
        raise ValueError(f"unknown choice {which!r}; valid: {', '.join(WHICH)}")
    p = report.predictions
    wrong = reports.misclassified(report, order="confidence_desc") if which != "low_confidence" else np.zeros(0, int)
    if which == "misclassified":
        return wrong
    unsure = np.flatnonzero((p.y_true == p.y_pred) & (p.confidence < max_confidence))
    unsure = unsure[np.argsort(p.confidence[unsure], kind="stable")]
    return np.concatenate([wrong, unsure]).astype(int)


def from_report(report_id: str, *, indices: Sequence[int] | None = None, which: str = "misclassified",
                max_confidence: float = 0.6, limit: int = 200) -> list[Mistake]:
    """The mistakes of report ``report_id``: rows ``indices`` of its predictions, or (None) the first ``limit`` of
    :func:`report_rows`. ValueError: an unknown or stale report, a report whose model no longer exists or changed,
    a row out of range, or nothing to start from."""
    report = reports.load_report(report_id)
    if report.stale:
        raise ValueError(f"report {report_id}: {report.stale}")
    n = len(report.predictions.y_true)
    rows = report_rows(report, which=which, max_confidence=max_confidence)[:max(0, int(limit))] \
        if indices is None else np.asarray([int(i) for i in indices], int)
    bad = [int(i) for i in rows if not 0 <= i < n]
    if bad:
        raise ValueError(f"report {report_id} has {n:,} images (rows 0 to {n - 1}); row {bad[0]} is not one")
    if len(rows) == 0:
        raise ValueError(f"report {report_id} has no {which.replace('_', '-')} images to start from; pick images "
                         "yourself or choose another report")
    _check_count(len(rows))
    p = report.predictions
    check_classes(p.y_true[rows], load_checkpoint(report_model_file(report))["class_ids"],
                  model=report.summary["model"])
    images = reports.report_images(report, rows)
    return [Mistake(im, int(p.y_true[i]), int(p.y_pred[i]), float(p.confidence[i]), report.summary["dataset"],
                    p.files[i], report_id) for im, i in zip(images, rows)]


def from_images(dataset: str, refs: Sequence[str], *, model: str) -> list[Mistake]:
    """Images of ``dataset`` by index ``file`` (or an added image's id), classified by ``model`` now."""
    info = datasets.get_dataset(dataset)
    picked = index_rows(info, refs)
    ckpt = load_checkpoint(registry.model_path(model))
    check_classes([r["class_id"] for r in picked], ckpt["class_ids"], model=model)
    net = model_from_checkpoint(ckpt)
    images = [load_image(info.image_path(r["file"])) for r in picked]
    probs = predict_proba(net, images)
    ids = list(ckpt["class_ids"])
    return [Mistake(im, int(r["class_id"]), int(ids[int(pr.argmax())]), float(pr.max()), dataset, r["file"], None)
            for im, r, pr in zip(images, picked, probs)]


def index_rows(info: datasets.DatasetInfo, refs: Sequence[str]) -> list[dict]:
    """The index rows of ``refs`` (files, or added images' ids), each once; ValueError naming an unknown one."""
    refs = list(dict.fromkeys(str(r).strip() for r in refs if str(r).strip()))
    if not refs:
        raise ValueError("no images given: name at least one image file of the dataset")
    _check_count(len(refs))
    rows = datasets.read_index(info)
    known = {r["file"]: r for r in rows} | {r["id"]: r for r in rows if r.get("id")}
    unknown = [r for r in refs if r not in known]
    if unknown:
        raise ValueError(f"{plural(len(unknown))} not in {info.name}, e.g. {unknown[0]!r}; give files as the "
                         "dataset's index names them (Explore shows them)")
    return [known[r] for r in refs]


def check_classes(true_ids: Sequence[int], model_ids: Sequence[int], *, model: str) -> None:
    """ValueError when a source image's class is not one of the model's: no method can make images of a class the
    model does not know."""
    lacking = sorted({int(c) for c in true_ids} - {int(c) for c in model_ids})
    if lacking:
        n = sum(int(c) in lacking for c in true_ids)
        raise ValueError(f"{plural(n)} picked {'is' if n == 1 else 'are'} of class {lacking[0]}"
                         f"{' and others' if len(lacking) > 1 else ''}, which the model {model} does not know: pick "
                         "images of its classes, or choose a model that has the class")


def _check_count(n: int) -> None:
    if n > MAX_SOURCES:
        raise ValueError(f"{n:,} source images is more than the {MAX_SOURCES} one request may take; pick fewer "
                         "(e.g. one class's mistakes)")
