"""The ``issues`` run kind: data issues of a dataset split as a model sees it (mislabelled, leakage, outliers),
kept in the run folder; :func:`latest_issues` finds the newest for the dataset's current version, and
:func:`issues_status` says where the runs of one (model, dataset, split) stand."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from core import runs
from core.analysis import data_issues, novelty
from core.base.files import atomic_write_json
from core.base.progress import sub_range
from core.data import datasets
from core.learning import registry
from core.learning.models import load_checkpoint, model_from_checkpoint

#: Where an issues run keeps its ranked lists (they name files, so they belong to that dataset version).
ISSUES_FILE = "issues.json"


@dataclass(frozen=True)
class IssuesRun:
    """Data issues of a dataset split as the model sees it (mislabelled, leakage, outliers), kept in the run folder."""
    model: str
    dataset: str
    split: str = "train"

    def check(self) -> dict:
        info = datasets.require_split(self.dataset, self.split)
        return {"model": registry.model_input(self.model), "dataset": datasets.dataset_input(info),
                "issues_version": data_issues.issues_version()}

    def title(self) -> str:
        return f"data issues of {self.dataset}/{self.split} ({self.model})"


def run_issues(ctx: runs.RunContext, cfg: IssuesRun) -> dict:
    path = registry.model_path(cfg.model)
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt)
    info = datasets.get_dataset(cfg.dataset)
    ctx.progress(0.02, "calibrating the novelty check")
    detector, note = data_issues.outlier_detector(path, model, ckpt, info, should_stop=ctx.should_stop)
    found = data_issues.find_issues(model, ckpt, info, split=cfg.split, detector=detector,
                                    progress=sub_range(ctx.progress, 0.1, 0.98), should_stop=ctx.should_stop)
    found.outlier_note = note
    atomic_write_json(runs.run_dir(ctx.run_id) / ISSUES_FILE, asdict(found))
    return {"file": ISSUES_FILE, **{k: len(v) for k, v in asdict(found).items() if isinstance(v, list)}}


def latest_issues(model: str, dataset: str, split: str) -> dict | None:
    """The newest finished issues run for this model, dataset split, the dataset's current version and today's
    finders and novelty method set (:func:`core.analysis.data_issues.issues_version`; a run from before runs
    recorded it has :data:`core.analysis.data_issues.UNSTAMPED_VERSION`)."""
    version, methods = datasets.get_dataset(dataset).fingerprint, data_issues.issues_version()
    for rec in runs.list_runs("issues", statuses=("done",)):
        if rec["config"] == {"model": model, "dataset": dataset, "split": split} \
                and rec["inputs"]["dataset"]["version"] == version \
                and rec["inputs"].get("issues_version", data_issues.UNSTAMPED_VERSION) == methods:
            return rec
    return None


@dataclass(frozen=True)
class IssuesStatus:
    """Where the issues runs of one (model, dataset, split) stand (run records, newest of each)."""

    latest_done: dict | None   # the newest finished run still valid (:func:`latest_issues`)
    active: dict | None        # a queued or running run
    failed: dict | None        # the newest failed run, when it is newer than ``latest_done`` (its error is news)


def issues_status(model: str, dataset: str, split: str) -> IssuesStatus:
    """The latest valid result, the run in progress and a failure newer than the result, for one issues config."""
    config = {"model": model, "dataset": dataset, "split": split}
    active = next((r for r in runs.list_runs("issues", statuses=runs.ACTIVE) if r["config"] == config), None)
    failed = next((r for r in runs.list_runs("issues", statuses=("failed",)) if r["config"] == config), None)
    latest = latest_issues(model, dataset, split)
    if failed is not None and latest is not None and failed["created"] <= latest["created"]:
        failed = None
    return IssuesStatus(latest, active, failed)


def load_issues(run_id: str) -> data_issues.DataIssues:
    """The ranked lists an issues run found."""
    try:
        text = (runs.run_dir(run_id) / ISSUES_FILE).read_text(encoding="utf-8")
        return data_issues.DataIssues(**json.loads(text))
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"run {run_id} has no readable data issues ({e})") from None


@dataclass(frozen=True)
class ShownIssues:
    """Findings to show for one (model, dataset, split)."""

    run: dict                      # the issues run they come from
    issues: data_issues.DataIssues
    stale: bool                    # found on another version of the dataset (or on its base): find again
    found_on: str                  # the dataset they were found on (a workspace's base, for a derived one)
    hidden: int = 0                # findings left out: their image was acted on since (moved, relabelled, removed)


def shown_issues(model: str, dataset: str, split: str) -> ShownIssues | None:
    """The valid result (:func:`latest_issues`); else the newest finished run with today's finders for another
    version of ``dataset`` or, for a workspace, of the built dataset it was derived from (image ids carry into a
    derived workspace), with the findings whose image is no longer as it was found left out. None if neither."""
    latest = latest_issues(model, dataset, split)
    if latest is not None:
        return ShownIssues(latest, load_issues(latest["id"]), False, dataset)
    info, version = datasets.get_dataset(dataset), data_issues.issues_version()
    names = [dataset] + ([info.base] if info.kind == "workspace" and info.base else [])
    for name in names:
        for rec in runs.list_runs("issues", statuses=("done",)):
            if rec["config"] == {"model": model, "dataset": name, "split": split} \
                    and rec["inputs"].get("issues_version") == version:
                found = load_issues(rec["id"])
                kept, hidden = still_as_found(found, datasets.read_index(info))
                return ShownIssues(rec, kept, True, name, hidden)
    return None


def still_as_found(found: data_issues.DataIssues, index: list[dict]) -> tuple[data_issues.DataIssues, int]:
    """The findings whose images (and, for a leak, its match) are still in the same split with the same class in
    ``index`` (the dataset's current rows), and how many were left out."""
    now = {r["file"]: (r["split"], int(r["class_id"])) for r in index}
    kept = data_issues.DataIssues(outlier_note=found.outlier_note)
    hidden = 0
    for name in ("mislabelled", "leaks", "outliers"):
        rows = [r for r in getattr(found, name) if now.get(r["file"]) == (r["split"], r["class_id"])
                and ("near" not in r or now.get(r["near"]) == (r["near_split"], r["near_class_id"]))]
        hidden += len(getattr(found, name)) - len(rows)
        setattr(kept, name, rows)
    return kept, hidden


runs.register_kind("issues", IssuesRun, run_issues, limit=2)
