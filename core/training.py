"""One training loop for every mode: scratch, resume, transfer (frozen features), incremental.

The torchvision-reference shape: everything is passed in, ``train_one_epoch`` / ``evaluate_accuracy`` are plain
functions, progress goes out through a callback, a checkpoint is a plain dict.

Incremental learning (Inc48 in the published write-up): the parent's classifier is expanded with rows for the
new classes; phase 1 trains only those rows (a gradient mask on the last layer, everything else frozen) on the
new classes' examples plus a small replay buffer of old-class examples; phase 2 fine-tunes all layers on all
classes, optionally with a Learning-without-Forgetting distillation term against the parent.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.augment import build_pipeline
from core.datasets import DatasetInfo, SplitArrays, load_split
from core.images import preprocess
from core.inference import Cancelled, predict_proba
from core.models import (Committee, TrafficSignNet, build_model, expand_classifier, make_checkpoint,
                         model_from_checkpoint)

MODES = ("scratch", "resume", "transfer_freeze", "incremental")
ProgressFn = Callable[[float, str, dict | None], None]


#: Incremental phase 1 uses batches small enough for at least this many optimizer steps per epoch.
PHASE1_MIN_STEPS = 40


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "scratch"
    architecture: str = "published"
    epochs: int = 10
    lr: float = 2e-3
    batch_size: int = 128
    weight_decay: float = 5e-4
    augment: bool = True
    augment_p: float = 0.25
    label_smoothing: float = 0.05
    seed: int = 0
    #: incremental: epochs of phase 1 (new rows only) before fine-tuning on all classes
    new_class_epochs: int = 1
    #: incremental: old-class images per class replayed during phase 1 (0 = none)
    replay_per_class: int = 20
    #: incremental: peak learning rate of phase 1, where only the new classifier rows move
    new_class_lr: float = 1e-2
    #: incremental: weight of the Learning-without-Forgetting distillation term in phase 2 (0 = off)
    lwf_weight: float = 0.0
    lwf_temperature: float = 2.0
    #: names of teacher models (provenance; the checkpoints are passed to :func:`train`): their committee's
    #: softened probabilities are distilled into the model being trained, in any mode
    teachers: tuple[str, ...] = ()
    #: weight of the distillation term against the teachers' committee, and its temperature
    distill_weight: float = 1.0
    distill_temperature: float = 2.0
    #: cap on train images per epoch (None = all), for quick runs
    max_train_images: int | None = None

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if not 0 < self.lr < 1:
            raise ValueError(f"learning rate must lie in (0, 1), got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not 0 < self.new_class_lr < 1:
            raise ValueError(f"new_class_lr must lie in (0, 1), got {self.new_class_lr}")
        if self.distill_weight < 0 or self.lwf_weight < 0:
            raise ValueError("distillation weights must not be negative")
        if self.distill_temperature <= 0 or self.lwf_temperature <= 0:
            raise ValueError("distillation temperatures must be positive")
        if self.teachers and self.lwf_weight > 0:
            raise ValueError("use either teachers (distillation from other models) or lwf_weight (from the parent), "
                             "not both")
        if self.mode == "incremental" and self.new_class_epochs >= self.epochs + 1:
            raise ValueError("new_class_epochs must not exceed epochs")


@dataclass
class TrainResult:
    checkpoint: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _to_index(labels: np.ndarray, class_ids: list[int]) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(class_ids)}
    return np.asarray([lookup[int(c)] for c in labels], np.int64)


class _BatchFeeder:
    """Yields (x, y) batches for one epoch, augmenting and preprocessing in a background thread."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, *, batch_size: int, rng: np.random.Generator,
                 pipeline=None):
        self.order = rng.permutation(len(targets))
        self.images, self.targets, self.bs, self.pipeline = images, targets, batch_size, pipeline
        self.q: queue.Queue = queue.Queue(maxsize=6)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, daemon=True)
        self.thread.start()

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.bs)

    def _produce(self) -> None:
        try:
            for s in range(0, len(self.order), self.bs):
                if self.stop.is_set():
                    return
                idx = self.order[s:s + self.bs]
                imgs = self.images[idx]
                if self.pipeline is not None:
                    imgs = np.stack([self.pipeline(image=im)["image"] for im in imgs])
                x = preprocess(imgs).contiguous(memory_format=torch.channels_last)
                self.q.put((x, torch.from_numpy(self.targets[idx])))
            self.q.put(None)
        except BaseException as e:  # surface worker errors in the training thread
            self.q.put(e)

    def __iter__(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.q.get_nowait()
            except queue.Empty:
                self.thread.join(timeout=0.05)


def train_one_epoch(model: TrafficSignNet, feeder: _BatchFeeder, *, optimizer, scheduler, label_smoothing: float,
                    grad_mask: torch.Tensor | None = None, teacher: torch.nn.Module | None = None,
                    lwf_weight: float = 0.0, lwf_temperature: float = 2.0,
                    on_batch: Callable[[int, int], None] | None = None) -> tuple[float, float]:
    """One pass over ``feeder``; returns (mean loss, train accuracy)."""
    total_loss, correct, seen = 0.0, 0, 0
    for i, (x, y) in enumerate(feeder):
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        if teacher is not None and lwf_weight > 0:
            with torch.no_grad():
                t_logits = teacher(x)
            k, temp = t_logits.shape[1], lwf_temperature
            loss = loss + lwf_weight * temp * temp * F.kl_div(
                F.log_softmax(logits[:, :k] / temp, dim=1), F.softmax(t_logits / temp, dim=1), reduction="batchmean")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_mask is not None:
            model.classifier.weight.grad.mul_(grad_mask[:, None])
            model.classifier.bias.grad.mul_(grad_mask)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        if on_batch is not None:
            on_batch(i + 1, len(feeder))
    return total_loss / max(seen, 1), correct / max(seen, 1)


def evaluate_accuracy(model: TrafficSignNet, images: np.ndarray, targets: np.ndarray) -> float:
    if len(targets) == 0:
        return float("nan")
    proba = predict_proba(model, images)
    return float((proba.argmax(1) == targets).mean())


def _set_trainable(model: TrafficSignNet, *, features: bool, head: bool) -> None:
    for p in list(model.stn.parameters()) + list(model.features.parameters()):
        p.requires_grad_(features)
    for p in model.head.parameters():
        p.requires_grad_(head)
    for p in model.classifier.parameters():
        p.requires_grad_(True)


def _train_mode(model: TrafficSignNet, *, features: bool, head: bool) -> None:
    """Frozen parts stay in eval mode so batch-norm statistics and dropout do not change them."""
    model.train()
    if not features:
        model.stn.eval()
        model.features.eval()
    if not head:
        model.head.eval()


def train(cfg: TrainConfig, dataset: DatasetInfo, *, parent: dict | None = None, parent_name: str | None = None,
          teachers: list[dict] | None = None, progress: ProgressFn | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train according to ``cfg`` on ``dataset`` (its train and val splits); returns the best checkpoint.

    ``teachers`` (checkpoints, one per name in ``cfg.teachers``) form a committee whose temperature-softened
    probabilities the model learns besides the labels (knowledge distillation, Hinton et al. 2015): a way to
    fold an ensemble's accuracy into one network. Their class ids must be the model's (or its first ones).

    Raises ValueError for impossible requests (empty split, classes the mode cannot handle) and
    :class:`Cancelled` if ``should_stop`` turns true; nothing is written here.
    """
    cfg.validate()
    progress = progress or (lambda f, m, h=None: None)
    should_stop = should_stop or (lambda: False)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t_start = time.perf_counter()

    progress(0.0, "loading data", None)
    train_split = load_split(dataset, "train")
    val_split = load_split(dataset, "val")
    if len(train_split) == 0:
        raise ValueError(f"dataset {dataset.name} has an empty train split; add images first")
    present = sorted(set(int(c) for c in train_split.labels))
    model, class_ids, teacher = _prepare_model(cfg, dataset, parent, present)
    distill_weight, distill_temperature = cfg.lwf_weight, cfg.lwf_temperature
    if len(teachers or []) != len(cfg.teachers):
        raise ValueError(f"config names {len(cfg.teachers)} teachers but {len(teachers or [])} checkpoints were given")
    if teachers:
        teacher = _committee(teachers, cfg.teachers, class_ids)
        distill_weight, distill_temperature = cfg.distill_weight, cfg.distill_temperature
    class_names = [dataset.classes.get(c, f"class {c}") for c in class_ids]
    known = set(class_ids)
    if cfg.mode in ("resume",) and not set(present) <= known:
        extra = sorted(set(present) - known)
        raise ValueError(f"the dataset has classes {extra} the model does not know; use incremental mode to add them")
    # Classes the model keeps but this dataset cannot teach: training goes on (they are still predicted),
    # but the user is told, because such classes are likely to be forgotten.
    missing = sorted(set(class_ids) - set(present))
    if missing:
        progress(0.0, f"warning: no train images for classes {missing}; the model may forget them", None)
    tr_keep = np.flatnonzero(np.isin(train_split.labels, class_ids))
    va_keep = np.flatnonzero(np.isin(val_split.labels, class_ids))
    tr_x, tr_y = train_split.images[tr_keep], _to_index(train_split.labels[tr_keep], class_ids)
    va_x, va_y = val_split.images[va_keep], _to_index(val_split.labels[va_keep], class_ids)

    pipeline = build_pipeline(p=cfg.augment_p, seed=cfg.seed) if cfg.augment else None
    val_pipeline = build_pipeline(p=cfg.augment_p, seed=cfg.seed + 1) if cfg.augment else None
    model = model.to(memory_format=torch.channels_last)
    history: list[dict] = []
    best = {"val_acc": -1.0, "weights": None, "epoch": 0}
    phases = _phases(cfg, parent, class_ids)
    total_epochs = sum(n for _, n in phases)
    done_epochs = 0
    for phase, n_epochs in phases:
        x_p, y_p, grad_mask, trainable = _phase_data(cfg, phase, tr_x, tr_y, parent, class_ids, rng)
        _set_trainable(model, **trainable)
        params = [p for p in model.parameters() if p.requires_grad]
        wd = 0.0 if phase == "new_rows" else cfg.weight_decay
        lr = cfg.new_class_lr if phase == "new_rows" else cfg.lr
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
        n_images = min(len(y_p), cfg.max_train_images or len(y_p))
        # Phase 1 sees only the new classes' images and the replay buffer (a few hundred): smaller batches
        # give it enough optimizer steps to move the new rows.
        batch_size = min(cfg.batch_size, max(16, n_images // PHASE1_MIN_STEPS)) if phase == "new_rows" \
            else cfg.batch_size
        steps = n_epochs * math.ceil(n_images / batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1),
                                                        pct_start=0.15 if phase != "new_rows" else 0.3)
        for _ in range(n_epochs):
            t0 = time.perf_counter()
            if should_stop():
                raise Cancelled("training cancelled")
            sel = np.arange(len(y_p))
            if cfg.max_train_images and len(sel) > cfg.max_train_images:
                sel = np.sort(rng.choice(sel, cfg.max_train_images, replace=False))
            feeder = _BatchFeeder(x_p[sel], y_p[sel], batch_size=batch_size, rng=rng, pipeline=pipeline)
            epoch = done_epochs + 1

            def on_batch(i: int, n: int, _epoch=epoch) -> None:
                if should_stop():
                    raise Cancelled("training cancelled")
                if i % 20 == 0 or i == n:
                    progress(((_epoch - 1) + i / n) / total_epochs, f"epoch {_epoch}/{total_epochs} ({phase}): "
                             f"batch {i}/{n}", None)

            _train_mode(model, **trainable)
            try:
                loss, train_acc = train_one_epoch(
                    model, feeder, optimizer=optimizer, scheduler=scheduler, label_smoothing=cfg.label_smoothing,
                    grad_mask=grad_mask, teacher=teacher if phase != "new_rows" else None,
                    lwf_weight=distill_weight, lwf_temperature=distill_temperature, on_batch=on_batch)
            finally:
                feeder.close()
            val_acc = evaluate_accuracy(model, va_x, va_y)
            entry = {"epoch": epoch, "phase": phase, "loss": round(loss, 5), "train_acc": round(train_acc, 5),
                     "val_acc": round(val_acc, 5) if not math.isnan(val_acc) else None,
                     "lr": round(float(optimizer.param_groups[0]["lr"]), 7), "steps": len(feeder),
                     "seconds": round(time.perf_counter() - t0, 2)}
            if val_pipeline is not None and len(va_y):
                aug_val = np.stack([val_pipeline(image=im)["image"] for im in va_x])
                entry["val_aug_acc"] = round(evaluate_accuracy(model, aug_val, va_y), 5)
            history.append(entry)
            done_epochs = epoch
            score = val_acc if not math.isnan(val_acc) else train_acc
            # Phase 1 of incremental learning is a warm-up: only the fine-tuned model competes for "best".
            if phase != "new_rows" and score >= best["val_acc"]:
                best = {"val_acc": score, "epoch": epoch,
                        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            progress(epoch / total_epochs, f"epoch {epoch}/{total_epochs} done: loss {loss:.3f}, "
                     f"val acc {entry['val_acc']}", entry)
    if best["weights"] is not None:
        model.load_state_dict(best["weights"])
    elif history:  # only incremental phase 1 ran: the model is its last epoch
        last = history[-1]
        best = {"val_acc": last["val_acc"] if last["val_acc"] is not None else last["train_acc"],
                "epoch": last["epoch"], "weights": None}
    seconds = time.perf_counter() - t_start
    ckpt = make_checkpoint(
        model, architecture=parent["architecture"] if parent else cfg.architecture, class_ids=class_ids,
        class_names=class_names, dataset=dataset.name, dataset_fingerprint=dataset.fingerprint, parent=parent_name,
        mode=cfg.mode, epochs=done_epochs + (parent["epochs"] if parent and cfg.mode != "scratch" else 0),
        history=history, metrics={"best_val_acc": best["val_acc"], "best_epoch": best["epoch"],
                                  "train_seconds": round(seconds, 1),
                                  **({"classes_without_train_images": missing} if missing else {})},
        config=asdict(cfg))
    return TrainResult(ckpt, history, seconds)


def _prepare_model(cfg: TrainConfig, dataset: DatasetInfo, parent: dict | None,
                   present: list[int]) -> tuple[TrafficSignNet, list[int], TrafficSignNet | None]:
    if cfg.mode == "scratch":
        return build_model(cfg.architecture, len(present)), present, None
    if parent is None:
        raise ValueError(f"mode {cfg.mode!r} needs a base model")
    model = model_from_checkpoint(parent)
    old_ids = [int(c) for c in parent["class_ids"]]
    if cfg.mode == "resume":
        return model, old_ids, None
    if cfg.mode == "transfer_freeze":
        if present != old_ids:
            model.classifier = torch.nn.Linear(model.classifier.in_features, len(present))
            return model, present, None
        return model, old_ids, None
    new_ids = [c for c in present if c not in set(old_ids)]
    if not new_ids:
        raise ValueError(f"dataset {dataset.name} has no classes beyond the base model's {len(old_ids)}; "
                         "use resume or transfer mode instead")
    teacher = model_from_checkpoint(parent) if cfg.lwf_weight > 0 else None
    if teacher is not None:
        teacher.eval()
        teacher = teacher.to(memory_format=torch.channels_last)
        for p in teacher.parameters():
            p.requires_grad_(False)
    return expand_classifier(model, len(new_ids)), old_ids + new_ids, teacher


def _committee(teachers: list[dict], names: tuple[str, ...], class_ids: list[int]) -> Committee:
    """Frozen, eval-mode committee of the teacher checkpoints; each must predict the model's first classes."""
    members = []
    for ckpt, name in zip(teachers, names):
        t_ids = [int(c) for c in ckpt["class_ids"]]
        if t_ids != class_ids[:len(t_ids)]:
            extra = sorted(set(t_ids) - set(class_ids))
            raise ValueError(f"teacher {name!r} predicts {len(t_ids)} classes, the model {len(class_ids)}: a teacher "
                             "must share the model's class ids (all, or its first ones, in the same order)"
                             + (f"; classes the model does not have: {extra[:10]}" if extra else ""))
        with torch.random.fork_rng():  # building the teachers must not shift the student's random stream
            members.append(model_from_checkpoint(ckpt))
    committee = Committee(members).eval().to(memory_format=torch.channels_last)
    for p in committee.parameters():
        p.requires_grad_(False)
    return committee


def _phases(cfg: TrainConfig, parent: dict | None, class_ids: list[int]) -> list[tuple[str, int]]:
    if cfg.mode == "incremental":
        n1 = min(cfg.new_class_epochs, cfg.epochs)
        return [("new_rows", n1)] + ([("all", cfg.epochs - n1)] if cfg.epochs > n1 else [])
    if cfg.mode == "transfer_freeze":
        return [("head", cfg.epochs)]
    return [("all", cfg.epochs)]


def _phase_data(cfg: TrainConfig, phase: str, x: np.ndarray, y: np.ndarray, parent: dict | None,
                class_ids: list[int], rng: np.random.Generator):
    if phase == "new_rows":
        n_old = len(parent["class_ids"])
        new_idx = np.flatnonzero(y >= n_old)
        replay = []
        if cfg.replay_per_class > 0:
            for c in range(n_old):
                cidx = np.flatnonzero(y == c)
                if len(cidx):
                    replay += list(rng.choice(cidx, size=min(cfg.replay_per_class, len(cidx)), replace=False))
        idx = np.sort(np.concatenate([new_idx, np.asarray(replay, np.int64)]))
        mask = torch.zeros(len(class_ids))
        mask[n_old:] = 1.0
        return x[idx], y[idx], mask, {"features": False, "head": False}
    if phase == "head":
        return x, y, None, {"features": False, "head": True}
    return x, y, None, {"features": True, "head": True}


def run_training_job(ctx, job_cfg: dict) -> dict:
    """Job runner: train, then register the best checkpoint under ``job_cfg['name']`` (never a partial one)."""
    from core import datasets, registry
    from core.models import load_checkpoint
    cfg = TrainConfig(**{**job_cfg["train"], "teachers": tuple(job_cfg["train"].get("teachers", ()))})
    info = datasets.get_dataset(job_cfg["dataset"])
    parent = load_checkpoint(registry.get_model(job_cfg["base"]).path) if job_cfg.get("base") else None
    teachers = [load_checkpoint(registry.get_model(t).path) for t in cfg.teachers]
    result = train(cfg, info, parent=parent, parent_name=job_cfg.get("base"), teachers=teachers,
                   progress=lambda f, m, e=None: ctx.progress(f, m, e), should_stop=ctx.should_stop)
    ctx.check()  # a cancel that arrived during the last validation pass still wins
    model = registry.register(job_cfg["name"], result.checkpoint)
    return {"model": model.name, "seconds": round(result.seconds, 1), **result.checkpoint["metrics"]}


def start_training(cfg: TrainConfig, *, dataset: str, base: str | None, name: str) -> str:
    """Validate a training request and start it as a background job; returns the job id."""
    from core import datasets, jobs, registry
    cfg.validate()
    registry.check_name(name)
    if any(m.name == name for m in registry.list_models()):
        raise ValueError(f"a model named {name!r} exists already; choose another name")
    if cfg.mode != "scratch" and not base:
        raise ValueError(f"mode {cfg.mode!r} needs a base model")
    if base:
        registry.get_model(base)
    for t in cfg.teachers:
        registry.get_model(t)
    info = datasets.get_dataset(dataset)
    if info.split_size("train") == 0:
        raise ValueError(f"dataset {dataset} has no training images")
    return jobs.submit("train", {"train": asdict(cfg), "dataset": dataset, "base": base, "name": name},
                       run_training_job, title=f"train {name} ({cfg.mode}) on {dataset}")
