"""Evaluation: model x dataset x split, as a background job, with a kept report (store record + files).

A report folder ``<data root>/reports/<id>/`` holds ``report.json`` (metrics, per class, confusion) and
``predictions.npz`` (per-image truth, prediction, confidence, top-5 and file). Reports can be reopened later.
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import config, datasets, jobs, metrics, registry, store
from core.inference import predict_proba
from core.models import load_checkpoint, model_from_checkpoint
from core.store import atomic_write_bytes

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
                   progress=None, should_stop=None) -> tuple[Predictions, float]:
    """Run the model; returns predictions in class ids and images per second."""
    t0 = time.perf_counter()
    proba = predict_proba(model, images, progress=progress, should_stop=should_stop)
    seconds = time.perf_counter() - t0
    ids = np.asarray(class_ids, np.int64)
    k = min(TOP_K, proba.shape[1])
    top = np.argsort(-proba, axis=1)[:, :k]
    preds = Predictions(y_true=np.asarray(labels, np.int64), y_pred=ids[top[:, 0]] if len(top) else np.zeros(0, np.int64),
                        confidence=np.take_along_axis(proba, top[:, :1], 1)[:, 0] if len(top) else np.zeros(0),
                        top_ids=ids[top], top_p=np.take_along_axis(proba, top, 1), files=files or [""] * len(labels))
    return preds, len(labels) / max(seconds, 1e-9)


def summarise(preds: Predictions, *, class_ids: list[int], images_per_s: float) -> dict:
    """The CLI/JSON summary: n, accuracy, macro_f1, images_per_s, metrics, per_class, confusion."""
    labels = sorted(set(int(c) for c in class_ids) | set(int(c) for c in preds.y_true))
    rep = metrics.classification_report(preds.y_true, preds.y_pred, labels=labels)
    overall = rep["overall"]
    return {"n": int(len(preds.y_true)), "accuracy": overall["accuracy"], "macro_f1": overall["macro_f1"],
            "images_per_s": round(float(images_per_s), 1), "metrics": overall,
            "per_class": {str(k): v for k, v in rep["per_class"].items()},
            "labels": rep["labels"], "confusion": rep["confusion"]}


def evaluate_checkpoint(ckpt: dict, images: np.ndarray, labels: np.ndarray, *, files=None, progress=None,
                        should_stop=None) -> tuple[dict, Predictions]:
    if len(labels) == 0:
        raise ValueError("nothing to evaluate: the split is empty")
    model = model_from_checkpoint(ckpt)
    preds, ips = predict_arrays(model, ckpt["class_ids"], images, labels, files=files, progress=progress,
                                should_stop=should_stop)
    return summarise(preds, class_ids=ckpt["class_ids"], images_per_s=ips), preds


def load_npz_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """images/labels from an npz file (the shared-data layout)."""
    from core.importers import _load_npz
    d = _load_npz(Path(path), ("images", "labels"))
    return d["images"], d["labels"].astype(np.int64)


# -- reports -----------------------------------------------------------------------------------------------------

def report_dir(report_id: str) -> Path:
    return config.reports_dir() / report_id


def run_evaluation_job(ctx, cfg: dict) -> dict:
    info = datasets.get_dataset(cfg["dataset"])
    model_info = registry.get_model(cfg["model"])
    ckpt = load_checkpoint(model_info.path)
    ctx.progress(0.02, "loading images")
    split = datasets.load_split(info, cfg["split"])
    summary, preds = evaluate_checkpoint(ckpt, split.images, split.labels, files=split.files,
                                         progress=lambda f: ctx.progress(0.05 + 0.9 * f, "predicting"),
                                         should_stop=ctx.should_stop)
    ctx.check()
    out = report_dir(ctx.job_id)
    summary.update({"model": cfg["model"], "dataset": cfg["dataset"], "split": cfg["split"],
                    "class_names": {str(k): v for k, v in info.classes.items()}, "created": time.time()})
    buf = io.BytesIO()
    np.savez_compressed(buf, y_true=preds.y_true, y_pred=preds.y_pred, confidence=preds.confidence,
                        top_ids=preds.top_ids, top_p=preds.top_p, files=np.asarray(preds.files, dtype=str))
    atomic_write_bytes(out / "predictions.npz", buf.getvalue())
    atomic_write_bytes(out / "report.json", json.dumps(summary).encode())
    store.upsert("reports", {"id": ctx.job_id, "model": cfg["model"], "dataset": cfg["dataset"], "split": cfg["split"],
                             "accuracy": summary["accuracy"], "macro_f1": summary["macro_f1"], "n": summary["n"],
                             "created": summary["created"]}, key="id")
    return {"report": ctx.job_id, "accuracy": summary["accuracy"], "macro_f1": summary["macro_f1"], "n": summary["n"]}


def start_evaluation(*, model: str, dataset: str, split: str) -> str:
    """Validate and start an evaluation job (up to 5 run at once, the rest queue); returns the job id = report id."""
    registry.get_model(model)
    info = datasets.get_dataset(dataset)
    if split not in datasets.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(datasets.SPLITS)}")
    if info.split_size(split) == 0:
        raise ValueError(f"{dataset}/{split} is empty; choose another split")
    return jobs.submit("evaluate", {"model": model, "dataset": dataset, "split": split}, run_evaluation_job,
                       title=f"evaluate {model} on {dataset}/{split}")


@dataclass(frozen=True)
class Report:
    id: str
    summary: dict
    predictions: Predictions

    def class_name(self, cid: int) -> str:
        return self.summary.get("class_names", {}).get(str(cid), f"class {cid}")


def list_reports() -> list[dict]:
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
    return Report(report_id, summary, preds)


def cell_indices(report: Report, true_id: int, pred_id: int) -> np.ndarray:
    """Indices of the images behind one confusion-matrix cell."""
    p = report.predictions
    return np.flatnonzero((p.y_true == true_id) & (p.y_pred == pred_id))


def misclassified(report: Report, class_id: int | None = None) -> np.ndarray:
    p = report.predictions
    wrong = p.y_true != p.y_pred
    if class_id is not None:
        wrong &= p.y_true == class_id
    return np.flatnonzero(wrong)


def compare_reports(a: Report, b: Report) -> list[dict]:
    """Per-class deltas (b - a) of F1, precision and recall for the classes in either report."""
    rows = []
    ids = sorted(set(map(int, a.summary["per_class"])) | set(map(int, b.summary["per_class"])))
    for cid in ids:
        ra, rb = a.summary["per_class"].get(str(cid), {}), b.summary["per_class"].get(str(cid), {})
        row = {"class_id": cid, "name": b.class_name(cid)}
        for m in ("f1", "precision", "recall"):
            va, vb = ra.get(m), rb.get(m)
            row[f"{m}_a"], row[f"{m}_b"] = va, vb
            row[f"{m}_delta"] = (vb - va) if va is not None and vb is not None else None
        rows.append(row)
    return rows


def per_class_frame(report: Report):
    """Per-class table: class_id, name, support, then every metric."""
    import pandas as pd
    rows = [{"class_id": int(cid), "name": report.class_name(int(cid)), **vals}
            for cid, vals in report.summary["per_class"].items()]
    df = pd.DataFrame(rows)
    front = ["class_id", "name", "support"]
    return df[front + [c for c in df.columns if c not in front]].sort_values("class_id").reset_index(drop=True)


def report_images(report: Report, indices) -> list[np.ndarray]:
    """Decode the images behind some report rows (only those)."""
    from core.images import load_image
    info = datasets.get_dataset(report.summary["dataset"])
    return [load_image(info.path / report.predictions.files[int(i)]) for i in indices]


def run_anchor_job(ctx, cfg: dict) -> dict:
    from core import explain
    report = load_report(cfg["report"])
    (image,) = report_images(report, [cfg["index"]])
    ckpt = load_checkpoint(registry.get_model(report.summary["model"]).path)
    model = model_from_checkpoint(ckpt)
    res = explain.anchor_explanation(model, image, threshold=cfg["threshold"], seed=cfg.get("seed", 0),
                                     progress=lambda f: ctx.progress(f, "searching anchors"),
                                     should_stop=ctx.should_stop)
    out = report_dir(cfg["report"]) / "anchors" / f"{ctx.job_id}.npz"
    buf = io.BytesIO()
    np.savez_compressed(buf, mask=res.mask, segments=res.segments)
    atomic_write_bytes(out, buf.getvalue())
    pred = int(ckpt["class_ids"][res.prediction])
    return {"report": cfg["report"], "index": cfg["index"], "precision": float(res.precision),
            "coverage": float(res.coverage), "anchor": [int(a) for a in res.anchor], "prediction": pred,
            "met_threshold": bool(res.met_threshold), "num_samples": int(res.num_samples), "file": str(out)}


def start_anchor(*, report: str, index: int, threshold: float = 0.95, seed: int = 0) -> str:
    """Start an Anchors explanation of one report image as a background job."""
    rep = load_report(report)
    if not 0 <= index < len(rep.predictions.y_true):
        raise ValueError(f"image index {index} is outside the report's {len(rep.predictions.y_true)} images")
    if not 0 < threshold < 1:
        raise ValueError(f"precision threshold must lie in (0, 1), got {threshold}")
    return jobs.submit("anchor", {"report": report, "index": int(index), "threshold": float(threshold), "seed": seed},
                       run_anchor_job, title=f"anchor for image {index} of {report}")


def load_anchor(job: dict) -> tuple[np.ndarray, np.ndarray]:
    """(mask (48, 48) bool, segments (48, 48) int) of a finished anchor job."""
    with np.load(job["result"]["file"], allow_pickle=False) as z:
        return z["mask"], z["segments"]


def anchor_display(image: np.ndarray, mask: np.ndarray, *, grey: int = 160) -> np.ndarray:
    """The 48x48 input with everything outside the anchor's superpixels greyed out (uint8 RGB)."""
    from core.images import resize_to_input
    small = resize_to_input(image, mask.shape[0]).copy()
    small[~mask] = (0.25 * small[~mask] + 0.75 * grey).astype(np.uint8)
    return small


def confusion_cells(report: Report):
    """Non-empty confusion-matrix cells as a table: true, predicted, count, log_count."""
    import pandas as pd
    labels = report.summary["labels"]
    cm = np.asarray(report.summary["confusion"])
    t, p = np.nonzero(cm)
    return pd.DataFrame({"true": np.asarray(labels)[t], "predicted": np.asarray(labels)[p], "count": cm[t, p],
                         "log_count": np.log1p(cm[t, p])})
