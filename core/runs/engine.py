"""Runs: the one home of long work (FiftyOne-style runs).

A run is a record in the store (table ``runs``) registered before its work starts::

    {id, kind, version, title, config, inputs, status, progress, message, result, error, history,
     created, updated, started, finished, owner}

``inputs`` holds the fingerprints of what the run reads (a model file's hash, a dataset's version), so a result
can always say which exact inputs produced it. Each kind in :data:`KINDS` is a config dataclass plus a runner;
``start(kind, cfg)`` validates the config, registers the record and starts a worker thread that never touches
streamlit. Progress ticks go to ``<run dir>/progress.json`` (a tiny file, written atomically), not to the store:
the store is written only when a run changes state or adds a history entry. Pages only read.

Per-kind limits (5 evaluations at once) queue the rest. A run left ``queued``/``running`` by a process that is
gone (the record's ``owner`` names host, pid and the process's start time, so the app and the CLI can share one
store) is marked ``interrupted`` by :func:`recover_interrupted`. A training run saves a resumable state after
every epoch in its run folder; :func:`resume` continues an interrupted one under the same id.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch

from core.analysis import data_issues, embedding, explain, novelty, reports
from core.base import config, store
from core.data import builds, datasets, uploads, workspaces
from core.learning import registry, training
from core.curation import importing as curation
from core.analysis.evaluation import evaluate_checkpoint
from core.learning.models import load_checkpoint, model_from_checkpoint, save_checkpoint
from core.base.progress import Cancelled, ProgressFn, is_batch_point, sub_range
from core.base.files import atomic_write_bytes, atomic_write_json

#: Version of the run record's shape; records of older versions are still listed.
RECORD_VERSION = 2
#: Statuses of a run still in progress; the others are "done", "failed", "cancelled" and "interrupted".
ACTIVE = ("queued", "running")
#: Seconds between progress-file writes of one run (each write is a small atomic file).
PROGRESS_INTERVAL_S = 0.25
#: Live training-curve points kept per run (10 an epoch: 200 epochs' worth).
MAX_CURVE_POINTS = 2000
#: A training run's resumable state in its run folder (replaced after every epoch; removed once the model is saved).
RESUME_FILE = "resume.pt"


def _start_time(pid: int) -> str:
    """A process's start time in clock ticks since boot (Linux ``/proc``); '' where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


#: This process as ``host:pid:start``: a pid alone could be reused by another process after a crash.
OWNER = f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def owner_alive(owner: str | None) -> bool:
    """Whether the process named by a record's ``owner`` still runs (True when that cannot be told: another
    host). Owners of older records (no host and pid) are taken as gone."""
    if owner == OWNER:
        return True
    parts = (owner or "").rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid, start = parts
    if host != socket.gethostname():
        return True
    now = _start_time(int(pid))
    if now or start:
        return now == start
    if os.name == "nt":  # os.kill(pid, 0) would end the process there; without /proc, say alive
        return True
    try:  # no /proc (macOS): the pid alone
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError):
        return False

_semaphores: dict[str, threading.Semaphore] = {}
_cancel_events: dict[str, threading.Event] = {}
_threads: dict[str, threading.Thread] = {}
_guard = threading.Lock()


def run_dir(run_id: str) -> Path:
    """The run's own folder (progress file and any files it produces besides models and reports)."""
    return config.runs_dir() / run_id


@dataclass
class RunContext:
    """Handed to a runner: report progress (the :class:`core.base.progress.ProgressFn` shape), check for cancel."""

    run_id: str
    #: a resumed run: the runner picks up its saved state
    resuming: bool = False
    #: also told every tick (the CLI prints them)
    echo: ProgressFn | None = None
    _last_write: float = 0.0
    _points: list = field(default_factory=list)

    def progress(self, fraction: float, message: str = "", entry: dict | None = None) -> None:
        fraction = float(min(max(fraction, 0.0), 1.0))
        if self.echo is not None:
            self.echo(fraction, message, entry)
        if is_batch_point(entry):  # live curve points ride along with the progress ticks
            self._points.append({k: v for k, v in entry.items() if k != "batch"})
            entry = None
        elif entry is not None:  # a history entry is worth a store write (once an epoch)
            def add(doc: dict) -> dict:
                doc["history"] = list(doc.get("history") or []) + [entry]
                doc["updated"] = time.time()
                return doc
            store.modify("runs", add, key="id", value=self.run_id)
        now = time.monotonic()
        if entry is None and fraction < 1.0 and now - self._last_write < PROGRESS_INTERVAL_S:
            return
        self._last_write = now
        if self._points:
            atomic_write_json(run_dir(self.run_id) / "curve.json", self._points[-MAX_CURVE_POINTS:])
        atomic_write_json(run_dir(self.run_id) / "progress.json",
                          {"progress": fraction, "message": message, "updated": time.time()})

    def should_stop(self) -> bool:
        ev = _cancel_events.get(self.run_id)
        return ev is not None and ev.is_set()

    def check(self) -> None:
        if self.should_stop():
            raise Cancelled("cancelled by request")


# -- run kinds -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainRun:
    """Train a model and register it under ``name`` (never a partial one), or write it to ``out``."""
    train: training.TrainConfig
    dataset: str
    name: str
    #: registry name or checkpoint path
    base: str | None = None
    #: a checkpoint path to write instead of registering the model (the CLI's ``--out``)
    out: str | None = None

    def check(self) -> dict:
        self.train.validate()
        if self.out is None:
            registry.check_name(self.name)
            if any(m.name == self.name for m in registry.list_models()):
                raise ValueError(f"a model named {self.name!r} exists already; choose another name")
        elif not Path(self.out).parent.is_dir():
            raise ValueError(f"--out {self.out}: folder {Path(self.out).parent} does not exist")
        if self.train.mode != "scratch" and not self.base:
            raise ValueError(f"mode {self.train.mode!r} needs a base model")
        info = datasets.get_dataset(self.dataset)
        if info.split_size("train") == 0:
            raise ValueError(f"dataset {self.dataset} has no training images")
        return {"dataset": _dataset_input(info), "base": _model_input(self.base) if self.base else None,
                "teachers": [_model_input(t) for t in self.train.teachers]}

    def title(self) -> str:
        return f"train {self.name if self.out is None else self.out} ({self.train.mode}) on {self.dataset}"


@dataclass(frozen=True)
class EvaluateRun:
    """Evaluate a model on a dataset split and keep the result as a report (report id = run id)."""
    model: str
    dataset: str
    split: str = "test"
    #: "model": only the images of the model's classes (as a model should be judged); "all": every image, so
    #: images of classes the model lacks count as errors (the published table's row 20 did this)
    classes: str = "model"

    def check(self) -> dict:
        if self.classes not in ("model", "all"):
            raise ValueError(f"classes must be 'model' or 'all', got {self.classes!r}")
        return {"model": _model_input(self.model), "dataset": _dataset_input(_split_info(self.dataset, self.split))}

    def title(self) -> str:
        return f"evaluate {self.model} on {self.dataset}/{self.split}"


@dataclass(frozen=True)
class AnchorRun:
    """Explain one image of a report with Anchors."""
    report: str
    index: int
    threshold: float = 0.95
    seed: int = 0

    def check(self) -> dict:
        rep = reports.load_report(self.report)
        if rep.stale:
            raise ValueError(rep.stale)
        if not 0 <= self.index < len(rep.predictions.y_true):
            raise ValueError(f"image index {self.index} is outside the report's {len(rep.predictions.y_true)} images")
        if not 0 < self.threshold < 1:
            raise ValueError(f"precision threshold must lie in (0, 1), got {self.threshold}")
        return {"report": self.report, "model": _model_input(rep.summary["model"])}

    def title(self) -> str:
        return f"anchor for image {self.index} of {self.report}"


@dataclass(frozen=True)
class BuildRun:
    """Build the standard datasets from the shared npz files (each built dataset appears atomically)."""
    source: str
    names: tuple[str, ...] = builds.STANDARD_DATASETS
    seed: int = 0

    def check(self) -> dict:
        unknown = sorted(set(self.names) - set(builds.STANDARD_DATASETS))
        if unknown:
            raise ValueError(f"unknown datasets {unknown}; valid: {', '.join(builds.STANDARD_DATASETS)}")
        if not Path(self.source).is_dir():
            raise ValueError(f"source folder {self.source!r} does not exist")
        return {"source": str(Path(self.source).resolve())}

    def title(self) -> str:
        return f"build {', '.join(self.names)}"


@dataclass(frozen=True)
class ImportRun:
    """Add uploads (files, folders, zips) to a workspace: variants, duplicates, leakage, smart segregation."""
    dataset: str
    class_id: int                     # workspaces.EXTRA_CLASS for the Extra bucket
    paths: tuple[str, ...]
    groups: tuple[str, ...] = ()
    variants: int = 0
    to: str = "trainval"
    val_ratio: float = 0.2
    model: str | None = None          # features for smart segregation (needed for "trainval")
    seed: int = 0
    on_leak: str = "report"
    staged: bool = False              # the paths are the app's staged uploads, removed when the run ends

    def settings(self) -> curation.ImportSettings:
        return curation.ImportSettings(dataset=self.dataset, class_id=self.class_id, groups=tuple(self.groups),
                                       variants=self.variants, to=self.to, val_ratio=self.val_ratio,
                                       seed=self.seed, on_leak=self.on_leak)

    def check(self) -> dict:
        info = self.settings().check_target()
        if not self.paths:
            raise ValueError("nothing to add: give image files, folders or zips")
        if self.to == "trainval" and not self.model:
            raise ValueError("smart segregation into train and val needs a model for its features; choose one")
        return {"dataset": _dataset_input(info), "model": _model_input(self.model) if self.model else None}

    def title(self) -> str:
        return f"add {len(self.paths)} upload(s) to {self.dataset}"


@dataclass(frozen=True)
class EmbedRun:
    """An openTSNE map of a model's features for a stratified sample of a dataset split (cached)."""
    model: str
    dataset: str
    split: str = "train"
    size: int = embedding.MAP_SIZE
    seed: int = 0

    def check(self) -> dict:
        info = _split_info(self.dataset, self.split, minimum=10)
        if not 10 <= self.size <= 50_000:
            raise ValueError(f"map size must lie in [10, 50000], got {self.size}")
        return {"model": _model_input(self.model), "dataset": _dataset_input(info)}

    def key(self) -> dict:
        info = datasets.get_dataset(self.dataset)
        return {"model_version": registry.file_version(registry.get_model(self.model).path), "dataset": self.dataset,
                "dataset_version": info.fingerprint, "split": self.split, "size": self.size, "seed": self.seed}

    def title(self) -> str:
        return f"map {self.model} on {self.dataset}/{self.split}"


@dataclass(frozen=True)
class IssuesRun:
    """Data issues of a dataset split as the model sees it (mislabelled, leakage, outliers), kept in the run folder."""
    model: str
    dataset: str
    split: str = "train"

    def check(self) -> dict:
        info = _split_info(self.dataset, self.split)
        return {"model": _model_input(self.model), "dataset": _dataset_input(info)}

    def title(self) -> str:
        return f"data issues of {self.dataset}/{self.split} ({self.model})"


#: Where an issues run keeps its ranked lists (they name files, so they belong to that dataset version).
ISSUES_FILE = "issues.json"


def _run_issues(ctx: RunContext, cfg: IssuesRun) -> dict:
    path = registry.get_model(cfg.model).path
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt)
    ctx.progress(0.02, "calibrating the novelty check")
    try:
        detector = novelty.load_or_fit(path, model, ckpt, should_stop=ctx.should_stop)
    except ValueError:  # the model's training data is gone: no outlier ranking, the other lists still come
        detector = None
    found = data_issues.find_issues(model, ckpt, datasets.get_dataset(cfg.dataset), split=cfg.split,
                                    detector=detector, progress=sub_range(ctx.progress, 0.1, 0.98),
                                    should_stop=ctx.should_stop)
    atomic_write_json(run_dir(ctx.run_id) / ISSUES_FILE, asdict(found))
    return {"file": ISSUES_FILE, **{k: len(v) for k, v in asdict(found).items()}}


def latest_issues(model: str, dataset: str, split: str) -> dict | None:
    """The newest finished issues run for this model, dataset split and the dataset's current version."""
    version = datasets.get_dataset(dataset).fingerprint
    for rec in list_runs("issues", statuses=("done",)):
        if rec["config"] == {"model": model, "dataset": dataset, "split": split} \
                and rec["inputs"]["dataset"]["version"] == version:
            return rec
    return None


def load_issues(run_id: str) -> data_issues.DataIssues:
    """The ranked lists an issues run found."""
    try:
        return data_issues.DataIssues(**json.loads((run_dir(run_id) / ISSUES_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"run {run_id} has no readable data issues ({e})") from None


def _run_embed(ctx: RunContext, cfg: EmbedRun) -> dict:
    key = cfg.key()
    path = embedding.map_path(key)
    if not path.is_file():
        ckpt = load_checkpoint(registry.get_model(cfg.model).path)
        split = datasets.load_split(datasets.get_dataset(cfg.dataset), cfg.split)
        keep = embedding.stratified_sample(split.labels, cfg.size, seed=cfg.seed)
        result = embedding.compute_map(model_from_checkpoint(ckpt), ckpt["class_ids"], split.images[keep],
                                       split.labels[keep], [split.files[i] for i in keep], key=key, seed=cfg.seed,
                                       progress=ctx.progress, should_stop=ctx.should_stop)
        ctx.check()
        result.save(path)
    return {"file": str(path), **key}


def stage_uploads(items: list[tuple[str, bytes]]) -> list[str]:
    """Keep the app's uploads under the data root for an import run (``ImportRun(staged=True)`` removes them)."""
    folder = config.runs_dir() / "uploads" / uuid.uuid4().hex
    paths = []
    for k, (name, data) in enumerate(items):
        path = folder / f"{k:05d}" / uploads.safe_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def _run_import(ctx: RunContext, cfg: ImportRun) -> dict:
    try:
        found = uploads.read_paths(cfg.paths)
        model = model_from_checkpoint(load_checkpoint(registry.get_model(cfg.model).path)) if cfg.model else None
        return curation.import_images(found, cfg.settings(), model=model, progress=ctx.progress,
                                      should_stop=ctx.should_stop)
    finally:
        if cfg.staged:
            staging = config.runs_dir() / "uploads"
            for p in {Path(p).parent.parent for p in cfg.paths if staging in Path(p).parents}:
                shutil.rmtree(p, ignore_errors=True)


def _run_train(ctx: RunContext, cfg: TrainRun) -> dict:
    info = datasets.get_dataset(cfg.dataset)
    parent = load_checkpoint(registry.model_path(cfg.base)) if cfg.base else None
    teachers = [load_checkpoint(registry.model_path(t)) for t in cfg.train.teachers]
    state_file = run_dir(ctx.run_id) / RESUME_FILE
    result = training.train(cfg.train, info, parent=parent, parent_name=registry.model_label(cfg.base) if cfg.base else None,
                            teachers=teachers, progress=ctx.progress, should_stop=ctx.should_stop,
                            resume=load_training_state(state_file) if ctx.resuming else None,
                            on_epoch=lambda state: save_training_state(state_file, state))
    ctx.check()  # a cancel that arrived during the last validation pass still wins
    if cfg.out:
        where = str(save_checkpoint(result.checkpoint, Path(cfg.out)))
    else:
        where = registry.register(cfg.name, result.checkpoint).name
    state_file.unlink(missing_ok=True)  # the model is safe now; the state has served its purpose
    return {"model": where, "seconds": round(result.seconds, 1), "dataset_version": info.fingerprint,
            **result.checkpoint["metrics"]}


def save_training_state(path: Path, state: dict) -> None:
    """Write a resumable training state atomically (a crash mid-write leaves the previous epoch's), and a small
    summary beside it for pages (``resume.json``: the epochs it holds)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(path.with_suffix(".json"), {"epochs_done": int(state["epochs_done"]),
                                                  "total_epochs": int(state["config"]["epochs"])})


def saved_epochs(run_id: str) -> int:
    """Epochs a stopped training's resumable state holds (0 when it has none)."""
    try:
        return int(json.loads((run_dir(run_id) / RESUME_FILE).with_suffix(".json").read_text())["epochs_done"])
    except (OSError, ValueError, KeyError):
        return 0


def load_training_state(path: Path) -> dict:
    """Read a resumable state with ``weights_only=True``; ValueError if it is missing or unreadable."""
    if not path.is_file():
        raise ValueError("no epoch finished before the run stopped, so there is nothing to resume; start it again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or foreign files
        raise ValueError(f"{path}: not a readable training state ({type(e).__name__}: {str(e)[:200]})") from None


def _run_evaluate(ctx: RunContext, cfg: EvaluateRun) -> dict:
    info = datasets.get_dataset(cfg.dataset)
    model = registry.get_model(cfg.model)
    ckpt = load_checkpoint(model.path)
    ctx.progress(0.02, "loading images")
    split = datasets.load_split(info, cfg.split, classes=ckpt["class_ids"] if cfg.classes == "model" else None)
    if len(split) == 0:
        raise ValueError(f"{cfg.dataset}/{cfg.split} has no images of the model's classes")
    summary, preds = evaluate_checkpoint(ckpt, split.images, split.labels, files=split.files,
                                         progress=sub_range(ctx.progress, 0.05, 0.95), should_stop=ctx.should_stop)
    ctx.check()
    rec = reports.save_report(ctx.run_id, summary, preds, model=cfg.model, model_version=registry.file_version(model.path),
                              dataset=info, split=cfg.split, classes=cfg.classes)
    return {"report": ctx.run_id, **{k: rec[k] for k in ("accuracy", "macro_f1", "n", "dataset_version")}}


def _run_anchor(ctx: RunContext, cfg: AnchorRun) -> dict:
    report = reports.load_report(cfg.report)
    (image,) = reports.report_images(report, [cfg.index])
    ckpt = load_checkpoint(registry.get_model(report.summary["model"]).path)
    res = explain.anchor_explanation(model_from_checkpoint(ckpt), image, threshold=cfg.threshold, seed=cfg.seed,
                                     progress=ctx.progress, should_stop=ctx.should_stop)
    out = reports.save_anchor(cfg.report, ctx.run_id, mask=res.mask, segments=res.segments)
    return {"report": cfg.report, "index": cfg.index, "precision": float(res.precision),
            "coverage": float(res.coverage), "anchor": [int(a) for a in res.anchor],
            "prediction": int(ckpt["class_ids"][res.prediction]), "met_threshold": bool(res.met_threshold),
            "num_samples": int(res.num_samples), "file": str(out)}


def _run_build(ctx: RunContext, cfg: BuildRun) -> dict:
    return builds.build_standard(Path(cfg.source), seed=cfg.seed, names=cfg.names, progress=ctx.progress,
                                 should_stop=ctx.should_stop)


@dataclass(frozen=True)
class RunKind:
    config: type
    runner: Callable[[RunContext, Any], dict]
    #: most runs of this kind at once; the rest queue
    limit: int = 1


KINDS: dict[str, RunKind] = {
    "train": RunKind(TrainRun, _run_train),
    "evaluate": RunKind(EvaluateRun, _run_evaluate, limit=config.MAX_CONCURRENT_EVALUATIONS),
    "anchor": RunKind(AnchorRun, _run_anchor, limit=2),
    "build": RunKind(BuildRun, _run_build),
    "import": RunKind(ImportRun, _run_import),
    "embed": RunKind(EmbedRun, _run_embed, limit=2),
    "issues": RunKind(IssuesRun, _run_issues, limit=2),
}


def config_from_json(kind: str, data: dict):
    """The config dataclass of ``kind`` from its JSON form (as kept in the run record)."""
    cls = _kind(kind).config
    data = dict(data)
    if cls is TrainRun:
        data["train"] = training.TrainConfig.from_json(data["train"])
    if cls is BuildRun:
        data["names"] = tuple(data["names"])
    if cls is ImportRun:
        data["paths"], data["groups"] = tuple(data.get("paths", ())), tuple(data.get("groups", ()))
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{kind} config has unknown fields {unknown}; valid: {', '.join(sorted(names))}")
    return cls(**data)


# -- the engine ----------------------------------------------------------------------------------------------------

def start(kind: str, cfg, *, foreground: bool = False, echo: ProgressFn | None = None) -> str:
    """Validate ``cfg`` (the kind's config dataclass, or its JSON dict), register the run, start its worker.

    ``foreground`` runs the work in this thread and returns when it ends (the CLI), telling ``echo`` every
    tick. Raises ValueError with the fix for an impossible request; nothing is registered then. Returns the run
    id.
    """
    spec = _kind(kind)
    if isinstance(cfg, dict):
        cfg = config_from_json(kind, cfg)
    if not isinstance(cfg, spec.config):
        raise ValueError(f"a {kind} run takes a {spec.config.__name__}, got {type(cfg).__name__}")
    inputs = cfg.check()
    return submit(kind, asdict(cfg), lambda ctx, _: spec.runner(ctx, cfg), title=cfg.title(), inputs=inputs,
                  foreground=foreground, echo=echo)


def submit(kind: str, cfg: dict, runner: Callable[[RunContext, dict], dict], *, title: str = "",
           inputs: dict | None = None, foreground: bool = False, echo: ProgressFn | None = None) -> str:
    """Register a run of any runner and start its worker thread; returns the run id. :func:`start` is the
    checked way in for the kinds in :data:`KINDS`; this is for work that is its own config (tests, tools)."""
    run_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    now = time.time()
    store.insert("runs", {"id": run_id, "kind": kind, "version": RECORD_VERSION, "title": title or kind,
                          "config": cfg, "inputs": inputs or {}, "status": "queued", "progress": 0.0,
                          "message": "queued", "result": None, "error": None, "history": [], "created": now,
                          "updated": now, "owner": OWNER})
    _launch(RunContext(run_id, echo=echo), kind, cfg, runner, foreground)
    return run_id


def _launch(ctx: RunContext, kind: str, cfg: dict, runner, foreground: bool) -> None:
    limit = KINDS[kind].limit if kind in KINDS else 1
    with _guard:
        sem = _semaphores.setdefault(kind, threading.Semaphore(limit))
        _cancel_events[ctx.run_id] = threading.Event()
    if foreground:
        _work(ctx, cfg, runner, sem)
        return
    t = threading.Thread(target=_work, args=(ctx, cfg, runner, sem), name=f"run-{ctx.run_id}", daemon=True)
    _threads[ctx.run_id] = t
    t.start()


def resumable(rec: dict) -> bool:
    """Whether :func:`resume` can continue this run: a training that stopped after a finished epoch."""
    return (rec["kind"] == "train" and rec["status"] in ("interrupted", "failed", "cancelled")
            and (run_dir(rec["id"]) / RESUME_FILE).is_file())


def resume(run_id: str, *, foreground: bool = False, echo: ProgressFn | None = None) -> str:
    """Continue an interrupted (or failed, or cancelled) training run after its last finished epoch.

    The run keeps its id, config and inputs; its history goes back to the saved state's, and on the same machine
    and thread count it ends with the model an uninterrupted run would have made. Raises ValueError with the
    reason when it cannot be resumed.
    """
    rec = store.get("runs", key="id", value=run_id)
    if rec is None:
        raise ValueError(f"no run {run_id!r}; list them with `python -m core runs list`")
    if rec["kind"] != "train":
        raise ValueError(f"{run_id} is a {rec['kind']} run; only training runs can be resumed (start it again)")
    if rec["status"] == "done":
        raise ValueError(f"{run_id} finished already; its model is {rec['result']['model']}")
    if rec["status"] in ACTIVE and owner_alive(rec.get("owner")):
        raise ValueError(f"{run_id} is still {rec['status']} in process {rec.get('owner')}")
    cfg = config_from_json("train", rec["config"])
    inputs = cfg.check()
    changed = [k for k in ("base", "teachers") if inputs.get(k) != rec["inputs"].get(k)]
    if changed:
        raise ValueError(f"the {' and '.join(changed)} model file(s) changed since this training started; start a "
                         "new training instead")
    state = load_training_state(run_dir(run_id) / RESUME_FILE)
    training.check_resume_state(state, cfg.train, datasets.get_dataset(cfg.dataset))
    done = int(state["epochs_done"])

    def claim(doc: dict) -> dict:  # check and take the run in one locked step: two resumes cannot both win
        if doc["status"] in ACTIVE and owner_alive(doc.get("owner")):
            raise ValueError(f"{run_id} is already {doc['status']} in process {doc.get('owner')}")
        doc.update(status="queued", message=f"resuming after epoch {done}", history=state["history"], error=None,
                   progress=done / cfg.train.epochs, progress_start=done / cfg.train.epochs, owner=OWNER,
                   resumed=int(doc.get("resumed") or 0) + 1, updated=time.time())
        return doc

    store.modify("runs", claim, key="id", value=run_id)
    ctx = RunContext(run_id, resuming=True, echo=echo)
    ctx._points = [p for p in curve_points(run_id) if p["epoch"] <= done]  # the curve so far stays
    _launch(ctx, "train", rec["config"],
            lambda ctx, _: _run_train(ctx, cfg), foreground)
    return run_id


def _kind(kind: str) -> RunKind:
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return KINDS[kind]


def _set(run_id: str, **values: Any) -> None:
    values["updated"] = time.time()
    store.update("runs", values, key="id", value=run_id)


def _work(ctx: RunContext, cfg: dict, runner, sem: threading.Semaphore) -> None:
    run_id = ctx.run_id
    acquired = False
    try:
        while not (acquired := sem.acquire(timeout=0.2)):
            if ctx.should_stop():
                break
        if ctx.should_stop():
            _set(run_id, status="cancelled", message="cancelled before it started")
            return
        _set(run_id, status="running", message="started", started=time.time())
        result = runner(ctx, cfg)
        _set(run_id, status="done", progress=1.0, message="done", result=result, finished=time.time())
    except Cancelled:
        _set(run_id, status="cancelled", message="cancelled; no model or report was saved", finished=time.time())
    except KeyboardInterrupt:  # Ctrl-C in the CLI: resumable like a crash
        _set(run_id, status="interrupted", message="interrupted (Ctrl-C)", finished=time.time())
        raise
    except Exception as e:  # a crash marks the run failed with its message
        _set(run_id, status="failed", message=f"failed: {e}", error=f"{type(e).__name__}: {e}",
             traceback=traceback.format_exc(limit=8), finished=time.time())
    finally:
        if acquired:
            sem.release()
        _cancel_events.pop(run_id, None)


def cancellable(run_id: str) -> bool:
    """Whether this process runs it (a run of another process, a CLI training, stops there: Ctrl-C)."""
    return run_id in _cancel_events


def cancel(run_id: str) -> bool:
    """Ask a queued or running run of this process to stop; returns whether it was active here."""
    ev = _cancel_events.get(run_id)
    if ev is None:
        return False
    ev.set()
    _set(run_id, message="cancelling...")
    return True


def _with_progress(rec: dict) -> dict:
    """An active run's record with its latest progress tick from the run folder, and its time left."""
    if rec["status"] == "running":
        try:
            tick = json.loads((run_dir(rec["id"]) / "progress.json").read_text(encoding="utf-8"))
            if tick["updated"] >= rec.get("updated", 0):
                rec.update(progress=tick["progress"], message=tick["message"] or rec.get("message"))
        except (OSError, ValueError, KeyError):
            pass
        rec["seconds_left"] = time_left(rec)
    return rec


def time_left(rec: dict, *, now: float | None = None) -> float | None:
    """Seconds a running run still needs at the pace it has kept so far; None until there is a pace to go by.

    A straight-line estimate from the time since it started and its progress fraction (progress at least 2 %
    and 2 s of work, so the first ticks do not promise nonsense).
    """
    started, fraction = rec.get("started"), float(rec.get("progress") or 0.0)
    first = float(rec.get("progress_start") or 0.0)  # a resumed run starts part-way
    if rec.get("status") != "running" or not started or fraction - first < 0.02 or fraction >= 1.0:
        return None
    elapsed = (time.time() if now is None else now) - started
    if elapsed < 2.0:
        return None
    return elapsed * (1.0 - fraction) / (fraction - first)


def curve_points(run_id: str) -> list[dict]:
    """A training run's live curve: ``{epoch (fractional), loss, train_acc}`` means over ~a tenth of an epoch."""
    try:
        return json.loads((run_dir(run_id) / "curve.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []


def get(run_id: str) -> dict | None:
    rec = store.get("runs", key="id", value=run_id)
    return _with_progress(rec) if rec else None


def list_runs(kind: str | None = None, *, statuses: tuple[str, ...] | None = None) -> list[dict]:
    """Run records, newest first."""
    recs = [r for r in store.all_records("runs") if (kind is None or r["kind"] == kind)
            and (statuses is None or r["status"] in statuses)]
    return [_with_progress(r) for r in sorted(recs, key=lambda r: r["created"], reverse=True)]


def wait(run_id: str, *, timeout: float = 600.0, poll: float = 0.1) -> dict:
    """Block until the run leaves queued/running (for the CLI and tests)."""
    deadline = time.monotonic() + timeout
    t = _threads.get(run_id)
    if t is not None:
        t.join(timeout)
    while True:
        rec = get(run_id)
        if rec is None:
            raise ValueError(f"no run {run_id!r}")
        if rec["status"] not in ACTIVE or time.monotonic() > deadline:
            return rec
        time.sleep(poll)


def recover_interrupted() -> int:
    """Mark runs that a previous process left queued or running as interrupted; returns how many."""
    n = 0
    for rec in store.all_records("runs"):
        if rec["status"] in ACTIVE and not owner_alive(rec.get("owner")):
            resumable = rec["kind"] == "train" and (run_dir(rec["id"]) / RESUME_FILE).is_file()
            _set(rec["id"], status="interrupted", message="interrupted: the process running it stopped"
                 + ("; resume it from its last finished epoch" if resumable else ""))
            n += 1
    return n


def _split_info(dataset: str, split: str, *, minimum: int = 1) -> datasets.DatasetInfo:
    """The dataset, after checking that ``split`` is a split of it with at least ``minimum`` images."""
    info = datasets.get_dataset(dataset)
    if split not in datasets.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(datasets.SPLITS)}")
    n = info.split_size(split)
    if n < minimum:
        raise ValueError(f"{dataset}/{split} is empty; choose another split" if n == 0 else
                         f"{dataset}/{split} has {n} images; this needs at least {minimum}")
    return info


def _model_input(ref: str) -> dict:
    path = registry.model_path(ref)
    if not path.is_file():
        raise ValueError(f"{ref}: no such model file")
    return {"name": ref, "sha256": registry.file_version(path)}


def _dataset_input(info: datasets.DatasetInfo) -> dict:
    return {"name": info.name, "version": info.fingerprint}



