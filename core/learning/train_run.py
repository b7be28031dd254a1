"""The ``train`` run kind: train a model and register it (never a partial one), resumable after every epoch.

A training run saves its resumable state (:data:`RESUME_FILE`, a plain dict of tensors, loaded with
``weights_only=True``) in its run folder after every epoch; :func:`core.runs.resume` continues an interrupted one
from there through the hooks registered below, and the state is removed once the model is saved.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from core import runs
from core.base import demo
from core.base.files import atomic_write_bytes, atomic_write_json
from core.data import datasets
from core.learning import registry, training, vs_base
from core.learning.epoch import check_teacher_classes
from core.learning.models import load_checkpoint, save_checkpoint

#: A training run's resumable state in its run folder (replaced after every epoch; removed once the model is saved).
RESUME_FILE = "resume.pt"


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

    def check(self, *, other_rank: bool = False) -> dict:
        """Everything that can be known before a run is registered: the settings, the name (free in the registry
        and not promised to a training in progress), the base and teacher models, and whether the mode can train
        on the dataset's classes. Returns the input fingerprints; ValueError with the fix otherwise.
        ``other_rank``: a torchrun rank other than 0, whose rank 0 has registered this very training (its name is
        promised to it)."""
        self.train.validate()
        if self.out is None:
            _check_free_name(self.name, promised_ok=other_rank)
        elif not Path(self.out).parent.is_dir():
            raise ValueError(f"--out {self.out}: folder {Path(self.out).parent} does not exist")
        else:
            registry.check_file_writable(self.out)  # demo mode: never over a shipped or another session's model
        if self.train.mode != "scratch" and not self.base:
            raise ValueError(f"mode {self.train.mode!r} needs a base model")
        info = datasets.get_dataset(self.dataset)
        n_train = info.split_size("train")
        if n_train == 0:
            raise ValueError(f"dataset {self.dataset} has no training images")
        demo.check_train_images(min(n_train, self.train.max_train_images or n_train), dataset=self.dataset)
        inputs = {"dataset": datasets.dataset_input(info),
                  "base": registry.model_input(self.base) if self.base else None,
                  "teachers": [registry.model_input(t) for t in self.train.teachers]}
        present = sorted(int(c) for c, n in info.counts.get("train", {}).items() if n > 0)
        base_ids = _class_ids(self.base) if self.base and self.train.mode != "scratch" else None
        class_ids = training.planned_classes(self.train.mode, present, base_ids, dataset=self.dataset)
        for teacher in self.train.teachers:
            check_teacher_classes(_class_ids(teacher), class_ids, name=teacher)
        return inputs

    def title(self) -> str:
        mode = training.MODE_LABELS[self.train.mode].lower()
        return f"train {self.name if self.out is None else self.out} on {self.dataset} \u00b7 {mode}"

    @classmethod
    def from_json(cls, data: dict) -> "TrainRun":
        if not isinstance(data.get("train"), dict):
            raise ValueError("a train config needs its training settings under 'train'")
        return runs.config_from_fields(cls, data, kind="train", train=training.TrainConfig.from_json(data["train"]))


def run_train(ctx: runs.RunContext, cfg: TrainRun) -> dict:
    info = datasets.get_dataset(cfg.dataset)
    parent = load_checkpoint(registry.model_path(cfg.base)) if cfg.base else None
    teachers = [load_checkpoint(registry.model_path(t)) for t in cfg.train.teachers]
    state_file = runs.run_dir(ctx.run_id) / RESUME_FILE
    result = training.train(cfg.train, info, parent=parent,
                            parent_name=registry.model_label(cfg.base) if cfg.base else None,
                            teachers=teachers, progress=ctx.progress, should_stop=ctx.should_stop,
                            resume=load_training_state(state_file) if ctx.resuming else None,
                            on_epoch=lambda state: save_training_state(state_file, state))
    ctx.check()  # a cancel that arrived during the last validation pass still wins
    if parent is not None:  # how it compares with its base on the same images: kept with the model
        result.checkpoint["metrics"]["vs_base"] = vs_base.compare_models(
            parent, result.checkpoint, info, progress=lambda f, m="", e=None: ctx.progress(1.0, m))
        ctx.check()
    if cfg.out:
        where = str(save_checkpoint(result.checkpoint, Path(cfg.out)))
    else:
        where = registry.register(cfg.name, result.checkpoint).name
    state_file.unlink(missing_ok=True)  # the model is safe now; the state has served its purpose
    return {"model": where, "seconds": round(result.seconds, 1), "dataset_version": info.fingerprint,
            **result.checkpoint["metrics"]}


def _check_free_name(name: str, *, promised_ok: bool = False) -> None:
    """ValueError unless ``name`` is a valid model name that neither a model nor (unless ``promised_ok``) a training
    in progress has."""
    registry.check_name(name)
    if any(m.name == name for m in registry.list_models()):
        raise ValueError(f"a model named {name!r} exists already; choose another name")
    for rec in runs.list_runs("train", statuses=runs.ACTIVE) if not promised_ok else ():
        cfg = rec.get("config") or {}
        if cfg.get("name") == name and not cfg.get("out") and runs.owner_alive(rec.get("owner")):
            raise ValueError(f"training run {rec['id']}, still {rec['status']}, will save a model named {name!r}; "
                             "choose another name")


def _class_ids(ref: str) -> list[int]:
    """The class ids a model (registry name or checkpoint path) predicts."""
    path = registry.model_path(ref)
    if not path.is_file():
        raise ValueError(f"{ref}: no such model file; give a registry name or an existing checkpoint")
    return [int(c) for c in load_checkpoint(path)["class_ids"]]


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
        summary = (runs.run_dir(run_id) / RESUME_FILE).with_suffix(".json").read_text()
        return int(json.loads(summary)["epochs_done"])
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


def _has_state(rec: dict) -> bool:
    return (runs.run_dir(rec["id"]) / RESUME_FILE).is_file()


def _resume_point(rec: dict, cfg: TrainRun, inputs: dict) -> runs.ResumePoint:
    """Where a stopped training picks up: after the last epoch its state holds, if its inputs are unchanged."""
    changed = [k for k in ("base", "teachers") if inputs.get(k) != rec["inputs"].get(k)]
    if changed:
        raise ValueError(f"the {' and '.join(changed)} model file(s) changed since this training started; start a "
                         "new training instead")
    state = load_training_state(runs.run_dir(rec["id"]) / RESUME_FILE)
    training.check_resume_state(state, cfg.train, datasets.get_dataset(cfg.dataset))
    done = int(state["epochs_done"])
    return runs.ResumePoint(progress=done / cfg.train.epochs, message=f"resuming after epoch {done}",
                            history=state["history"],
                            curve=[p for p in runs.curve_points(rec["id"]) if p["epoch"] <= done])


runs.register_kind("train", TrainRun, run_train, from_json=TrainRun.from_json,
                   resume=runs.Resume("training", _has_state, _resume_point,
                                      hint="resume it from its last finished epoch"))
