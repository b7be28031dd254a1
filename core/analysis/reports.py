"""Evaluation reports: save, load, list, compare, confusion-cell queries, a report's images, anchor results.

A report folder ``<data root>/reports/<id>/`` holds ``report.json`` (metrics, per class, confusion, and the
versions of the model file, the dataset it saw and the metric set) and ``predictions.npz`` (per-image truth, prediction,
confidence, top-5 and file); its store record (table ``reports``) makes it listable. A report whose dataset has
changed since (a workspace edited, a dataset rebuilt or deleted) is **stale**: its numbers stay readable, but its
images are not shown, because the files it names may now hold other images or none. A report made with another
metric set (:func:`core.analysis.metrics.metrics_version`) has its metrics computed again from its predictions
when it is loaded.

In demo mode (:mod:`core.base.demo`) a report made in a demo session records the session, and only that session
may rename or delete it (:func:`check_writable`); reports made outside a session are shared and read-only there.
"""
from __future__ import annotations

import io
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.base import config, demo, store
from core.data import datasets
from core.analysis import metrics
from core.analysis.evaluation import Predictions, summarise
from core.data.images import load_image
from core.base.files import atomic_write_bytes


@dataclass(frozen=True)
class Report:
    id: str
    summary: dict
    predictions: Predictions
    #: why the report's images can no longer be shown (its dataset changed), or None
    stale: str | None = None

    def class_name(self, cid: int) -> str:
        return self.summary.get("class_names", {}).get(str(cid), f"class {cid}")


def report_dir(report_id: str) -> Path:
    return config.reports_dir() / report_id


def save_report(report_id: str, summary: dict, preds: Predictions, *, model: str, model_version: str,
                dataset: datasets.DatasetInfo, split: str, classes: str = "all") -> dict:
    """Write a report's files, then its store record (so a listed report always has its files). Returns the record.
    ``classes``: "model" if only the images of the model's classes were evaluated, else "all"."""
    summary = {**summary, "model": model, "model_version": model_version, "dataset": dataset.name,
               "dataset_version": dataset.fingerprint, "split": split, "classes": classes, "created": time.time(),
               "class_names": {str(k): v for k, v in dataset.classes.items()}}
    out = report_dir(report_id)
    buf = io.BytesIO()
    np.savez_compressed(buf, y_true=preds.y_true, y_pred=preds.y_pred, confidence=preds.confidence,
                        top_ids=preds.top_ids, top_p=preds.top_p, files=np.asarray(preds.files, dtype=str))
    atomic_write_bytes(out / "predictions.npz", buf.getvalue())
    atomic_write_bytes(out / "report.json", json.dumps(summary).encode())
    record = {"id": report_id, **{k: summary[k] for k in ("model", "model_version", "dataset", "dataset_version",
                                                         "split", "accuracy", "macro_f1", "n", "created")},
              **demo.owner_fields()}
    store.upsert("reports", record, key="id")
    return record


def restamp_model_version(report_id: str, model_version: str) -> None:
    """Name a new version of the report's model file, for a rewrite that kept its weights and classes (``evaluate
    --record`` stores the result in the checkpoint): the report still explains with that file. File, then record."""
    check_writable(report_id)
    path = report_dir(report_id) / "report.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"report {report_id!r} cannot be read ({e})") from None
    atomic_write_bytes(path, json.dumps({**summary, "model_version": model_version}).encode())
    store.modify("reports", lambda rec: {**rec, "model_version": model_version}, key="id", value=report_id)


def list_reports() -> list[dict]:
    """Report records, newest first."""
    return sorted(store.all_records("reports"), key=lambda r: r["created"], reverse=True)


def load_report(report_id: str) -> Report:
    d = report_dir(report_id)
    try:
        summary = json.loads((d / "report.json").read_text())
        with np.load(d / "predictions.npz", allow_pickle=False) as z:
            preds = Predictions(z["y_true"], z["y_pred"], z["confidence"], z["top_ids"], z["top_p"],
                                [str(f) for f in z["files"]])
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"report {report_id!r} cannot be read ({e})") from None
    return Report(report_id, current_metrics(summary, preds), preds, stale=staleness(summary))


def current_metrics(summary: dict, preds: Predictions) -> dict:
    """``summary`` as saved if today's metric set made it, else with every metric computed again from the saved
    predictions (in memory; the file keeps what it was saved with). A summary without a ``metrics_version``
    predates the stamp: it was made by :data:`core.analysis.metrics.UNSTAMPED_VERSION`."""
    if summary.get("metrics_version", metrics.UNSTAMPED_VERSION) == metrics.metrics_version():
        return summary
    return {**summary, **summarise(preds, class_ids=summary["labels"], images_per_s=summary["images_per_s"])}


def staleness(summary: dict) -> str | None:
    """Why a report's dataset is no longer the state it saw, or None if it still is."""
    name, seen = summary["dataset"], summary.get("dataset_version")
    try:
        now = datasets.get_dataset(name).fingerprint
    except ValueError:
        return f"dataset {name!r} no longer exists"
    if seen is None:
        return None  # reports from before versions were recorded: nothing to compare against
    if now != seen:
        return (f"dataset {name!r} has changed since this report was made (version {seen}, now {now}); "
                "its numbers are kept, its images are not shown. Evaluate again to see today's images.")
    return None


def rename_report(report_id: str, name: str) -> str:
    """Give a report a name of its own (shown in every report picker); returns it, trimmed."""
    name = " ".join(str(name or "").split())
    if not name or len(name) > 80:
        raise ValueError(f"report name {name!r}: use 1-80 characters")
    check_writable(report_id)
    if not store.update("reports", {"name": name}, key="id", value=report_id):
        raise ValueError(f"no report {report_id!r}")
    return name


def delete_report(report_id: str) -> None:
    """Remove a report: its record first (it leaves every list at once), then its files."""
    check_writable(report_id)
    if not store.remove("reports", key="id", value=report_id):
        raise ValueError(f"no report {report_id!r}")
    shutil.rmtree(report_dir(report_id), ignore_errors=True)


def check_writable(report_id: str) -> None:
    """DemoRefused (demo mode) unless this session made the report; an unknown id passes (the caller says so)."""
    if not demo.enabled():
        return
    record = store.get("reports", key="id", value=report_id)
    if record is not None:
        demo.check_writable(record.get(demo.SESSION_FIELD), what=f"report {report_id!r}",
                            fix="evaluate a model yourself to get a report of your own")


def report_label(record: dict, *, now: float | None = None) -> str:
    """How pickers tell reports apart: "benchmark on Sample48/test · 97.3 % · 14:02, 3 Dec" (a name given
    to the report replaces "model on dataset/split"; the year shows when it is not this year's)."""
    what = record.get("name") or f"{record['model']} on {record['dataset']}/{record['split']}"
    made = time.localtime(record["created"])
    this_year = time.localtime(time.time() if now is None else now).tm_year
    when = f"{made.tm_hour:02d}:{made.tm_min:02d}, {made.tm_mday} {time.strftime('%b', made)}" + (
        "" if made.tm_year == this_year else f" {made.tm_year}")
    return f"{what} \u00b7 {100 * record['accuracy']:.1f} % \u00b7 {when}"


def report_images(report: Report, indices) -> list[np.ndarray]:
    """Decode the images behind some report rows (only those). Refused for a stale report."""
    if report.stale:
        raise ValueError(report.stale)
    info = datasets.get_dataset(report.summary["dataset"])
    return [load_image(info.image_path(report.predictions.files[int(i)])) for i in indices]


def worst_confusion(report: Report) -> tuple[int, int] | None:
    """(true, predicted) class ids of the largest off-diagonal confusion cell, or None if there is no mistake."""
    cm = np.asarray(report.summary["confusion"]).copy()
    np.fill_diagonal(cm, 0)
    if cm.max() == 0:
        return None
    t, p = np.unravel_index(int(cm.argmax()), cm.shape)
    labels = report.summary["labels"]
    return int(labels[t]), int(labels[p])


def comparison_warning(a: Report, b: Report) -> str | None:
    """Why two reports' numbers are not directly comparable, or None."""
    sa, sb = a.summary, b.summary
    if (sa["dataset"], sa["split"]) != (sb["dataset"], sb["split"]):
        return (f"A is on {sa['dataset']}/{sa['split']}, B on {sb['dataset']}/{sb['split']}: different images, so "
                "the deltas mix model and data differences")
    if sa.get("dataset_version") != sb.get("dataset_version"):
        return f"{sa['dataset']} changed between the two reports (versions {sa.get('dataset_version')} and " \
               f"{sb.get('dataset_version')})"
    if sa.get("classes", "all") != sb.get("classes", "all") or sa["n"] != sb["n"]:
        return f"A covers {sa['n']:,} images, B {sb['n']:,}: one was limited to its model's classes"
    return None


def cell_indices(report: Report, true_id: int, pred_id: int) -> np.ndarray:
    """Indices of the images behind one confusion-matrix cell."""
    p = report.predictions
    return np.flatnonzero((p.y_true == true_id) & (p.y_pred == pred_id))


#: Orders for :func:`select_images`.
IMAGE_ORDERS = ("confidence_desc", "confidence_asc", "index")


def misclassified(report: Report, class_id: int | None = None, *, min_confidence: float = 0.0,
                  max_confidence: float = 1.0, order: str = "index") -> np.ndarray:
    """Indices of the wrongly predicted images (of true class ``class_id`` if given), filtered and sorted.

    ``min_confidence``/``max_confidence`` bound the model's confidence in its (wrong) prediction, inclusive;
    ``order`` is one of :data:`IMAGE_ORDERS`: "confidence_desc" puts confident mistakes first (the most
    surprising, often label errors), "confidence_asc" the hesitant ones, "index" keeps the report's order.
    """
    if order not in IMAGE_ORDERS:
        raise ValueError(f"unknown order {order!r}; valid orders: {', '.join(IMAGE_ORDERS)}")
    if not 0.0 <= min_confidence <= max_confidence <= 1.0:
        raise ValueError(f"need 0 <= min_confidence <= max_confidence <= 1, got {min_confidence}, {max_confidence}")
    p = report.predictions
    keep = (p.y_true != p.y_pred) & (p.confidence >= min_confidence) & (p.confidence <= max_confidence)
    if class_id is not None:
        keep &= p.y_true == class_id
    idx = np.flatnonzero(keep)
    if order != "index":  # stable, so ties keep the report's order
        key = p.confidence[idx] if order == "confidence_asc" else -p.confidence[idx]
        idx = idx[np.argsort(key, kind="stable")]
    return idx


def compare_reports(a: Report, b: Report) -> list[dict]:
    """Per-class deltas (b - a) of the metrics marked ``compared`` (F1, precision, recall) for the classes in
    either report: ``<metric>_a``, ``<metric>_b``, ``<metric>_delta``."""
    rows = []
    ids = sorted(set(map(int, a.summary["per_class"])) | set(map(int, b.summary["per_class"])))
    for cid in ids:
        ra, rb = a.summary["per_class"].get(str(cid), {}), b.summary["per_class"].get(str(cid), {})
        row = {"class_id": cid, "name": b.class_name(cid)}
        for m in (m for m in metrics.list_metrics() if metrics.get_metric(m).compared):
            va, vb = ra.get(m), rb.get(m)
            row[f"{m}_a"], row[f"{m}_b"] = va, vb
            row[f"{m}_delta"] = (vb - va) if va is not None and vb is not None else None
        rows.append(row)
    return rows


def per_class_frame(report: Report) -> pd.DataFrame:
    """Per-class table: class_id, name, support, then every metric."""
    rows = [{"class_id": int(cid), "name": report.class_name(int(cid)), **vals}
            for cid, vals in report.summary["per_class"].items()]
    df = pd.DataFrame(rows)
    front = ["class_id", "name", "support"]
    return df[front + [c for c in df.columns if c not in front]].sort_values("class_id").reset_index(drop=True)


def worst_first(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The per-class table ordered worst class first for ``metric`` (by its direction: low is bad for most, high
    for nlr and ber)."""
    return table.sort_values(metric, ascending=metrics.get_metric(metric).higher_is_better, kind="stable")


def confusion_cells(report: Report) -> pd.DataFrame:
    """Non-empty confusion-matrix cells as a table: true, predicted, count, log_count, true_name, pred_name."""
    labels = report.summary["labels"]
    cm = np.asarray(report.summary["confusion"])
    t, p = np.nonzero(cm)
    true, pred = np.asarray(labels)[t], np.asarray(labels)[p]
    return pd.DataFrame({"true": true, "predicted": pred, "count": cm[t, p], "log_count": np.log1p(cm[t, p]),
                         "true_name": [report.class_name(int(c)) for c in true],
                         "pred_name": [report.class_name(int(c)) for c in pred]})


def wrong_classes(report: Report) -> list[int]:
    """True classes with at least one misclassified image, ascending."""
    p = report.predictions
    return sorted(set(int(c) for c in p.y_true[p.y_true != p.y_pred]))


def readable_per_class(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`per_class_frame` for people: ratios (likelihood ratios) at the stored finite cap read as infinity."""
    shown = table.copy()
    for col in metrics.list_metrics():
        if col in shown and metrics.get_metric(col).format == "ratio":
            shown[col] = [metrics.format_value(col, v) for v in shown[col]]
    return shown


def save_anchor(report_id: str, name: str, *, mask: np.ndarray, segments: np.ndarray) -> Path:
    """Keep an Anchors result of one report image beside the report; returns its file."""
    out = report_dir(report_id) / "anchors" / f"{name}.npz"
    buf = io.BytesIO()
    np.savez_compressed(buf, mask=mask, segments=segments)
    atomic_write_bytes(out, buf.getvalue())
    return out


def load_anchor(file: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(mask (48, 48) bool, segments (48, 48) int) saved by :func:`save_anchor`."""
    with np.load(file, allow_pickle=False) as z:
        return z["mask"], z["segments"]
