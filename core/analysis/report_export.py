"""Export an evaluation report as CSV or JSON, with class names beside every class id.

Three tables make a report (:data:`TABLES`): ``predictions`` (one row per image: file, true and predicted class
id and name, confidence, whether it was right, the top-5), ``per_class`` (support and every metric, per class)
and ``summary`` (the report's scalars: model, dataset, split, their versions, the overall metrics). A CSV file
holds one of them; the JSON file holds all three plus the confusion matrix with its labels. Numbers are kept as
numbers (fractions, not percentages) so the files load into a spreadsheet or pandas as they are.

Reports are read through :mod:`core.analysis.reports`' public functions only.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.analysis import reports
from core.base.files import atomic_write_bytes
from core.data.export import check_target

TABLES = ("predictions", "per_class", "summary")
FORMATS = ("csv", "json")
#: Summary keys that are not scalars (the tables and matrices themselves) and stay out of the summary table.
_NOT_SCALAR = ("per_class", "confusion", "labels", "class_names", "metrics")


@dataclass(frozen=True)
class ReportExport:
    """What :func:`export_report` wrote."""

    path: Path
    fmt: str
    table: str | None
    rows: int


def find_report(report_id: str) -> reports.Report:
    """The report ``report_id``; ValueError naming the known ones (or how to make one) if there is none."""
    known = [r["id"] for r in reports.list_reports()]
    if report_id not in known:
        hint = (f"known reports: {', '.join(known[:10])}" + (" ..." if len(known) > 10 else "")) if known else \
            "there are no reports yet (python -m core evaluate --model M --dataset D --split test makes one)"
        raise ValueError(f"no report {report_id!r}; {hint}")
    return reports.load_report(report_id)


def predictions_frame(report: reports.Report) -> pd.DataFrame:
    """One row per image: index, file, true/predicted class id and name, confidence, correct, top-5 ids and
    probabilities (``;``-separated, best first)."""
    p = report.predictions
    names = {int(c): report.class_name(int(c)) for c in set(p.y_true.tolist()) | set(p.top_ids.ravel().tolist())}
    return pd.DataFrame({
        "index": range(len(p.y_true)), "file": p.files,
        "true_id": p.y_true.astype(int), "true_name": [names[int(c)] for c in p.y_true],
        "predicted_id": p.y_pred.astype(int), "predicted_name": [names[int(c)] for c in p.y_pred],
        "confidence": [round(float(c), 6) for c in p.confidence], "correct": p.y_true == p.y_pred,
        "top5_ids": [";".join(str(int(c)) for c in row) for row in p.top_ids],
        "top5_names": [";".join(names[int(c)] for c in row) for row in p.top_ids],
        "top5_p": [";".join(f"{float(v):.6f}" for v in row) for row in p.top_p]})


def per_class_table(report: reports.Report) -> pd.DataFrame:
    """Per class: class_id, name, support, then every metric (as the Evaluate page's table)."""
    return reports.per_class_frame(report)


def summary_dict(report: reports.Report) -> dict:
    """The report's scalars: id, name, model, dataset, split, versions, n, the overall metrics, when, staleness."""
    s = report.summary
    out = {"report": report.id,
           **{k: v for k, v in s.items() if k not in _NOT_SCALAR and not isinstance(v, (dict, list))}}
    out.update({k: v for k, v in (s.get("metrics") or {}).items() if k not in out})
    if "created" in s:
        out["created"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(s["created"]))
    out["stale"] = report.stale or ""
    return out


def report_csv(report: reports.Report, table: str = "predictions") -> str:
    """One of :data:`TABLES` as CSV text (the summary as ``key,value`` rows)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; valid tables: {', '.join(TABLES)}")
    if table == "summary":
        frame = pd.DataFrame(list(summary_dict(report).items()), columns=["key", "value"])
    else:
        frame = predictions_frame(report) if table == "predictions" else per_class_table(report)
    return frame.to_csv(index=False)


def report_json(report: reports.Report) -> str:
    """All three tables and the confusion matrix (with class ids and names) as one JSON document."""
    s = report.summary
    labels = [int(c) for c in s.get("labels", [])]
    doc = {"summary": summary_dict(report),
           "per_class": json.loads(per_class_table(report).to_json(orient="records")),
           "confusion": {"labels": labels, "names": [report.class_name(c) for c in labels],
                         "matrix": s.get("confusion", []), "rows": "true class", "columns": "predicted class"},
           "predictions": json.loads(predictions_frame(report).to_json(orient="records"))}
    return json.dumps(doc, indent=1)


def export_report(report_id: str, out: str | os.PathLike, *, fmt: str = "csv", table: str = "predictions",
                  overwrite: bool = False) -> ReportExport:
    """Write report ``report_id`` to ``out``: one table as CSV, or the whole report as JSON. Raises ValueError
    (unknown report, format or table; an existing or unwritable target) before writing anything."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; valid tables: {', '.join(TABLES)}")
    path = check_target(out, overwrite=overwrite, suffix=f".{fmt}")
    report = find_report(report_id)
    text = report_csv(report, table) if fmt == "csv" else report_json(report)
    atomic_write_bytes(path, text.encode("utf-8"))
    rows = {"predictions": len(report.predictions.y_true), "per_class": len(report.summary.get("per_class", {})),
            "summary": len(summary_dict(report))}[table if fmt == "csv" else "predictions"]
    return ReportExport(path, fmt, table if fmt == "csv" else None, rows)
