"""One training loop for every mode: scratch, resume, transfer (frozen features), incremental.

The torchvision-reference shape: everything is passed in, ``train_one_epoch`` / ``evaluate_accuracy`` are plain
functions, progress goes out through a callback, a checkpoint is a plain dict.

Incremental learning (Inc48 in the published write-up): the parent's classifier is expanded with rows for the
new classes; phase 1 trains only those rows (a gradient mask on the last layer, everything else frozen) on the
new classes' examples plus a small replay buffer of old-class examples; phase 2 fine-tunes all layers on all
classes, optionally with a Learning-without-Forgetting distillation term against the parent.

The phases of a run are planned once (:func:`plan_phases`: a frozen :class:`Phase` each, saying what trains, at
which rate and batch size, with or without the distillation term, and whether it competes for the kept
checkpoint); :func:`train` loads the data, builds the model and runs the plan. This module is pure computation:
running it as a run and registering the model happen in :mod:`core.runs`.
"""
from __future__ import annotations

import json
import math
import queue
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.learning import distributed
from core.data.augment import build_pipeline, pipeline_state, restore_pipeline_state
from core.learning.distributed import DEVICES, PRECISIONS, Place
from core.data.datasets import DatasetInfo, SplitArrays, load_split
from core.data.images import normalise, resize_batch
from core.learning.inference import predict_proba
from core.learning.outliers import synthesize
from core.base.progress import ProgressFn, StopFn, check, never, silent
from core.learning.models import (ARCHITECTURES, Committee, TrafficSignNet, build_model, expand_classifier, make_checkpoint,
                         model_from_checkpoint)

#: Training modes and what each does, in the order the Improve page offers them (adding classes first).
MODE_DESCRIPTIONS = {
    "incremental": "expand the base model's classifier with the dataset's new classes; train only the new rows "
                   "for new_class_epochs on new-class images plus a replay buffer (peak rate new_class_lr, small "
                   "batches), then fine-tune all layers on all classes. Recommended for adding classes.",
    "transfer_freeze": "freeze the base model's feature layers and retrain the fully connected head (a new "
                       "classifier if the dataset's classes differ).",
    "resume": "continue training every layer of the base model on the same classes.",
    "scratch": "train a new model from random weights on the dataset's classes.",
}
MODES = tuple(MODE_DESCRIPTIONS)
#: Version and keys of the resumable state :func:`train` hands to ``on_epoch`` after every epoch.
RESUME_FORMAT = 1
RESUME_KEYS = ("format", "phase", "phase_epochs", "epochs_done", "model", "optimizer", "lr_scheduler", "history",
               "best_score", "best_epoch", "best_weights", "rng", "config", "dataset_fingerprint", "class_ids")
#: Points per epoch on the live training curve (batch means); the saved history keeps one entry per epoch.
BATCH_POINTS = 10
#: Incremental phase 1 uses batches small enough for at least this many optimizer steps per epoch.
PHASE1_MIN_STEPS = 40


def _opt(default, help: str, **cli):
    """A config field with its help text (and CLI hints: ``flag``, ``choices``, ``metavar``) in its metadata."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting, defined once: the CLI's ``train`` flags and the Improve page's defaults come from
    these fields and their help texts."""

    mode: str = _opt("scratch", "training mode", choices=MODES)
    architecture: str = _opt("published", "architecture of a new model (scratch mode); other modes keep the "
                             "base model's", choices=ARCHITECTURES, flag="--arch")
    epochs: int = _opt(10, "epochs in all (incremental: phase-1 epochs included)")
    lr: float = _opt(2e-3, "peak learning rate of the one-cycle schedule")
    batch_size: int = _opt(128, "images per batch")
    weight_decay: float = _opt(5e-4, "AdamW weight decay (incremental phase 1 uses none)")
    augment: bool = _opt(True, "in-model augmentation: the seven transform groups drawn anew every epoch")
    augment_p: float = _opt(0.25, "probability of each augmentation group")
    label_smoothing: float = _opt(0.05, "label smoothing of the cross-entropy loss")
    seed: int = _opt(0, "seed of every random choice (weights, order, augmentation, replay)")
    new_class_epochs: int = _opt(1, "incremental: epochs of phase 1, where only the new classifier rows train")
    replay_per_class: int = _opt(20, "incremental: old-class images per class replayed in phase 1 (0 = none)")
    new_class_lr: float = _opt(1e-2, "incremental: peak learning rate of phase 1")
    lwf_weight: float = _opt(0.0, "incremental: weight of the Learning-without-Forgetting term against the "
                             "parent model in phase 2 (0 = off)")
    lwf_temperature: float = _opt(2.0, "incremental: temperature of the Learning-without-Forgetting term")
    teachers: tuple[str, ...] = _opt((), "distil from this model (repeat for a committee): registry name or "
                                     "checkpoint path", flag="--teacher", metavar="MODEL")
    distill_weight: float = _opt(1.0, "weight of the distillation term against the teachers' committee")
    distill_temperature: float = _opt(2.0, "softening temperature of the teachers' probabilities")
    outlier_weight: float = _opt(0.0, "outlier exposure: weight of the term that teaches near-uniform "
                                 "probabilities on synthetic outliers made from each batch (a known frame around "
                                 "a turned pictogram, swapped colours, shuffled tiles, two classes' halves); "
                                 "sharpens novelty scores (0 = off)")
    outlier_share: float = _opt(0.5, "outlier exposure: synthetic outliers per batch, as a share of the batch")
    max_train_images: int | None = _opt(None, "cap on train images per epoch (quick runs)")
    device: str = _opt("auto", "where to train: auto (a GPU when one is present, else the CPU), cpu or cuda",
                       choices=DEVICES)
    precision: str = _opt("auto", "arithmetic: bf16 = mixed precision (convolutions and matrix products in "
                          "bfloat16, weights and losses in float32; about 2x faster on a CPU with AMX or AVX-512 "
                          "BF16), fp32, or auto (bf16 where the hardware has it, else fp32)", choices=PRECISIONS)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; valid: {', '.join(ARCHITECTURES)}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if not 0 < self.lr < 1:
            raise ValueError(f"learning rate must lie in (0, 1), got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; valid devices: {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if not 0 < self.new_class_lr < 1:
            raise ValueError(f"new_class_lr must lie in (0, 1), got {self.new_class_lr}")
        if self.distill_weight < 0 or self.lwf_weight < 0:
            raise ValueError("distillation weights must not be negative")
        if self.distill_temperature <= 0 or self.lwf_temperature <= 0:
            raise ValueError("distillation temperatures must be positive")
        if self.outlier_weight < 0 or not 0 < self.outlier_share <= 2:
            raise ValueError(f"outlier_weight must not be negative and outlier_share must lie in (0, 2], got "
                             f"{self.outlier_weight} and {self.outlier_share}")
        if self.teachers and self.lwf_weight > 0:
            raise ValueError("use either teachers (distillation from other models) or lwf_weight (from the parent), "
                             "not both")
        if self.mode == "incremental" and self.new_class_epochs >= self.epochs + 1:
            raise ValueError("new_class_epochs must not exceed epochs")

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        """From ``asdict`` output (as kept in run records and checkpoints); unknown fields are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; valid: {', '.join(sorted(names))}")
        return cls(**{**data, "teachers": tuple(data.get("teachers", ()))})


@dataclass(frozen=True)
class Phase:
    """One phase of training, planned before any epoch runs (:func:`plan_phases`)."""

    name: str                 # "new_rows" (incremental phase 1), "head" (transfer_freeze) or "all"
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    warmup: float             # share of the one-cycle schedule spent rising to ``lr``
    train_features: bool      # spatial transformer and conv layers
    train_head: bool          # the fully connected layers before the classifier
    new_rows_only: bool       # only the classifier rows of new classes move (gradient mask); data: new + replay
    distil: bool              # the distillation term (teachers or LwF) applies
    competes_for_best: bool   # its epochs may become the kept checkpoint


def plan_phases(cfg: TrainConfig, *, phase1_images: int = 0) -> list[Phase]:
    """The phases of a run of ``cfg``; ``phase1_images``: images incremental phase 1 sees (new classes + replay)."""
    common = dict(lr=cfg.lr, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay, warmup=0.15,
                  new_rows_only=False, distil=True, competes_for_best=True)
    if cfg.mode == "transfer_freeze":
        return [Phase("head", cfg.epochs, train_features=False, train_head=True, **common)]
    if cfg.mode != "incremental":
        return [Phase("all", cfg.epochs, train_features=True, train_head=True, **common)]
    n1 = min(cfg.new_class_epochs, cfg.epochs)
    n_images = min(phase1_images, cfg.max_train_images or phase1_images)
    # Phase 1 sees only the new classes' images and the replay buffer (a few hundred): smaller batches
    # give it enough optimizer steps to move the new rows. It is a warm-up: it does not compete for "best".
    phase1 = Phase("new_rows", n1, lr=cfg.new_class_lr, weight_decay=0.0, warmup=0.3,
                   batch_size=min(cfg.batch_size, max(16, n_images // PHASE1_MIN_STEPS)), train_features=False,
                   train_head=False, new_rows_only=True, distil=False, competes_for_best=False)
    rest = [Phase("all", cfg.epochs - n1, train_features=True, train_head=True, **common)] if cfg.epochs > n1 else []
    return [phase1] + rest


@dataclass
class TrainResult:
    checkpoint: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _rank_batch(batch_size: int, place: Place) -> int:
    """Images a batch on one rank: the global batch shared out over the ranks."""
    return max(1, batch_size // place.world)


def _steps_per_epoch(n_images: int, batch_size: int, place: Place) -> int:
    """Optimizer steps one epoch makes on each rank (as many on all; see :func:`distributed.shard`)."""
    return math.ceil(math.ceil(n_images / place.world) / _rank_batch(batch_size, place))


def _to_index(labels: np.ndarray, class_ids: list[int]) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(class_ids)}
    return np.asarray([lookup[int(c)] for c in labels], np.int64)


class _BatchFeeder:
    """Yields (x, y) batches for one epoch, augmenting and preprocessing in a background thread."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, *, batch_size: int, rng: np.random.Generator,
                 pipeline=None, place: Place = Place(), device: torch.device = torch.device("cpu")):
        # Every rank draws the same permutation (same seed) and takes its shard of it, with its share of the batch.
        self.order = distributed.shard(rng.permutation(len(targets)), place)
        self.images, self.targets, self.pipeline, self.device = images, targets, pipeline, device
        self.bs = _rank_batch(batch_size, place)
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
                # Pixels only here: tensor work in this thread would start a second team of torch threads
                # competing with the training's for the cores; the consumer turns them into the input.
                self.q.put((resize_batch(imgs), torch.from_numpy(self.targets[idx])))
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
            item = (normalise(item[0]), item[1])  # channels-last float input, as the model is
            if self.device.type != "cpu":
                item = tuple(t.to(self.device, non_blocking=True) for t in item)
            yield item

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.q.get_nowait()
            except queue.Empty:
                self.thread.join(timeout=0.05)


@dataclass(frozen=True)
class Distillation:
    """A frozen teacher (the teachers' committee, or the parent for LwF) whose softened probabilities the model
    learns besides the labels, with the term's weight and temperature."""

    teacher: torch.nn.Module
    weight: float
    temperature: float

    def loss(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t_logits = self.teacher(x).float()
        k, temp = t_logits.shape[1], self.temperature  # a teacher may know only the first k classes
        return self.weight * temp * temp * F.kl_div(
            F.log_softmax(logits[:, :k] / temp, dim=1), F.softmax(t_logits / temp, dim=1), reduction="batchmean")


@dataclass(frozen=True)
class OutlierExposure:
    """Synthetic outliers (:mod:`core.learning.outliers`) added to every batch, with a loss weight: the model learns
    near-uniform probabilities on them (Hendrycks et al. 2019), the images' own loss is unchanged."""

    weight: float
    share: float
    generator: torch.Generator

    def outliers(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return synthesize(x, y, n=round(self.share * len(x)), generator=self.generator)

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        """KL divergence from the uniform distribution to the outliers' predictions (0 when uniform)."""
        if not len(logits):
            return logits.sum()
        return self.weight * (-F.log_softmax(logits, dim=1).mean(1) - math.log(logits.shape[1])).mean()


def train_one_epoch(model: TrafficSignNet, feeder: _BatchFeeder, *, optimizer, scheduler, label_smoothing: float,
                    grad_mask: torch.Tensor | None = None, distill: Distillation | None = None,
                    outliers: OutlierExposure | None = None,
                    on_batch: Callable[[int, int, float, float], None] | None = None,
                    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    bf16: bool = False) -> tuple[float, float]:
    """One pass over ``feeder``; returns (mean loss, train accuracy).

    ``bf16``: the forward pass runs under bfloat16 autocast (mixed precision); weights, gradients, optimizer
    state and the loss stay float32.

    ``on_batch(i, n, loss, acc)`` is called after batch ``i`` of ``n`` with that batch's loss and accuracy.
    ``forward`` is the model as wrapped for distributed training (its gradients are averaged over the ranks).
    ``outliers``: synthetic outliers join each batch's forward pass (one pass: batch norm sees both) and add
    their term to the loss; the reported loss includes it, the accuracy counts the batch's own images only.
    """
    total_loss, correct, seen = 0.0, 0, 0
    for i, (x, y) in enumerate(feeder):
        x_out = outliers.outliers(x, y) if outliers is not None else x[:0]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            all_logits = (forward or model)(torch.cat([x, x_out]) if len(x_out) else x).float()
            logits = all_logits[:len(x)]
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            if outliers is not None:
                loss = loss + outliers.loss(all_logits[len(x):])
            if distill is not None and distill.weight > 0:
                loss = loss + distill.loss(x, logits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_mask is not None:
            model.classifier.weight.grad.mul_(grad_mask[:, None])
            model.classifier.bias.grad.mul_(grad_mask)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += float(loss.detach()) * len(y)
        batch_correct = int((logits.argmax(1) == y).sum())
        correct += batch_correct
        seen += len(y)
        if on_batch is not None:
            on_batch(i + 1, len(feeder), float(loss.detach()), batch_correct / max(len(y), 1))
    return total_loss / max(seen, 1), correct / max(seen, 1)


def evaluate_accuracy(model: TrafficSignNet, images: np.ndarray, targets: np.ndarray) -> float:
    if len(targets) == 0:
        return float("nan")
    proba = predict_proba(model, images)
    return float((proba.argmax(1) == targets).mean())


def _set_trainable(model: TrafficSignNet, phase: Phase) -> None:
    for p in list(model.stn.parameters()) + list(model.features.parameters()):
        p.requires_grad_(phase.train_features)
    for p in model.head.parameters():
        p.requires_grad_(phase.train_head)
    for p in model.classifier.parameters():
        p.requires_grad_(True)


def _train_mode(model: TrafficSignNet, phase: Phase) -> None:
    """Frozen parts stay in eval mode so batch-norm statistics and dropout do not change them."""
    model.train()
    if not phase.train_features:
        model.stn.eval()
        model.features.eval()
    if not phase.train_head:
        model.head.eval()


@dataclass
class _Data:
    """Train and val images with targets as indices into ``class_ids`` (the model's outputs)."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    class_ids: list[int]
    missing: list[int]        # the model's classes without train images
    n_old: int                # incremental: the parent's classes (the first outputs); else all classes


def train(cfg: TrainConfig, dataset: DatasetInfo, *, parent: dict | None = None, parent_name: str | None = None,
          teachers: list[dict] | None = None, progress: ProgressFn | None = None,
          should_stop: StopFn | None = None, resume: dict | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train according to ``cfg`` on ``dataset`` (its train and val splits); returns the best checkpoint.

    ``teachers`` (checkpoints, one per name in ``cfg.teachers``) form a committee whose temperature-softened
    probabilities the model learns besides the labels (knowledge distillation, Hinton et al. 2015): a way to
    fold an ensemble's accuracy into one network. Their class ids must be the model's (or its first ones).
    The checkpoint records the dataset's version (``dataset_fingerprint``).

    ``on_epoch(state)`` receives a resumable state after every epoch (a plain dict of tensors, numbers and
    lists: weights, optimizer, scheduler, every random generator, history; see :data:`RESUME_KEYS`); the caller
    saves it. ``resume`` is such a state: training continues after its last epoch and, on the same machine and
    thread count, ends with the weights an uninterrupted run would have (a test checks this bit for bit).

    Raises ValueError for impossible requests (empty split, classes the mode cannot handle, a resume state of
    another config or dataset version) and :class:`Cancelled` if ``should_stop`` turns true; nothing is written
    here.
    """
    cfg.validate()
    if resume is not None:
        check_resume_state(resume, cfg, dataset)
    progress = progress or silent
    if len(teachers or []) != len(cfg.teachers):
        raise ValueError(f"config names {len(cfg.teachers)} teachers but {len(teachers or [])} checkpoints were given")
    place = distributed.current()
    device = distributed.resolve_device(cfg.device, place)
    # A resumed run keeps the arithmetic it started with (states from before bf16 existed trained in fp32).
    precision = (resume.get("precision", "fp32") if resume is not None
                 else distributed.resolve_precision(cfg.precision, device))
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    rng = np.random.default_rng(cfg.seed)  # the same epoch permutations on every rank (each takes its shard)
    t_start = time.perf_counter()
    progress(0.0, "loading data")
    train_split, val_split = load_split(dataset, "train"), load_split(dataset, "val")
    if len(train_split) == 0:
        raise ValueError(f"dataset {dataset.name} has an empty train split; add images first")
    present = sorted(set(int(c) for c in train_split.labels))
    model, class_ids = _prepare_model(cfg, dataset, parent, present)
    distill = _distillation(cfg, parent, teachers or [], class_ids)
    n_old = len(parent["class_ids"]) if cfg.mode == "incremental" else len(class_ids)
    data = _select(cfg, train_split, val_split, class_ids, present, n_old)
    if data.missing:  # training goes on (they are still predicted), but such classes are likely to be forgotten
        progress(0.0, f"warning: no train images for classes {data.missing}; the model may forget them")
    phase1 = _phase1_indices(cfg, data.train_y, n_old, rng) if cfg.mode == "incremental" else None
    if place.active:  # dropout and augmentation differ per rank, as they would batch to batch
        torch.manual_seed(cfg.seed + 1000 * place.rank)
    loop = _Loop(cfg, model.to(device=device, memory_format=torch.channels_last), data, distill, rng, progress,
                 should_stop or never, plan_phases(cfg, phase1_images=len(phase1) if phase1 is not None else 0),
                 place=place, device=device, precision=precision)
    if on_epoch is not None:
        identity = {"config": asdict(cfg), "dataset_fingerprint": dataset.fingerprint, "class_ids": class_ids,
                    "world": place.world, "precision": precision}
        loop.on_epoch = lambda state: on_epoch({**state, **identity})
    loop.run(phase1, resume)
    loop.model.cpu()  # checkpoints hold CPU tensors, wherever training ran
    seconds = time.perf_counter() - t_start
    architecture = parent["architecture"] if parent else cfg.architecture
    ckpt = make_checkpoint(
        loop.model, architecture=architecture, class_ids=class_ids,
        class_names=[dataset.classes.get(c, f"class {c}") for c in class_ids], dataset=dataset.name,
        dataset_fingerprint=dataset.fingerprint, parent=parent_name, mode=cfg.mode,
        epochs=loop.epochs_done + (parent["epochs"] if parent and cfg.mode != "scratch" else 0),
        history=loop.history, metrics={"best_val_acc": loop.best_score, "best_epoch": loop.best_epoch,
                                       "train_seconds": round(seconds, 1), "precision": precision,
                                       **({"classes_without_train_images": data.missing} if data.missing else {})},
        config={**asdict(cfg), "architecture": architecture})
    return TrainResult(ckpt, loop.history, seconds)


class _Loop:
    """Runs the planned phases epoch by epoch; keeps the history and the best weights."""

    def __init__(self, cfg: TrainConfig, model: TrafficSignNet, data: _Data, distill: Distillation | None,
                 rng: np.random.Generator, progress: ProgressFn, should_stop: StopFn, phases: list[Phase], *,
                 place: Place = Place(), device: torch.device = torch.device("cpu"), precision: str = "fp32"):
        self.precision = precision
        self.cfg, self.model, self.data, self.distill, self.rng = cfg, model, data, distill, rng
        self.progress, self.should_stop, self.phases = progress, should_stop, phases
        self.place, self.device = place, device
        if distill is not None:
            distill.teacher.to(device)
        aug_seed = cfg.seed + 7919 * place.rank  # each rank augments its shard its own way
        self.pipeline = build_pipeline(p=cfg.augment_p, seed=aug_seed) if cfg.augment else None
        self.val_pipeline = build_pipeline(p=cfg.augment_p, seed=cfg.seed + 1) if cfg.augment else None
        self.total_epochs = sum(p.epochs for p in phases)
        self.history: list[dict] = []
        self.epochs_done = 0
        self.best_score, self.best_epoch, self._best_weights = -1.0, 0, None
        self.on_epoch: Callable[[dict], None] | None = None

    def run(self, phase1: np.ndarray | None, resume: dict | None = None) -> None:
        start_phase, start_epoch = self._restore(resume) if resume is not None else (0, 0)
        for k, phase in enumerate(self.phases[start_phase:], start=start_phase):
            sel = phase1 if phase.new_rows_only else np.arange(len(self.data.train_y))
            self._run_phase(k, phase, self.data.train_x[sel], self.data.train_y[sel],
                            done=start_epoch if k == start_phase else 0, saved=resume if k == start_phase else None)
        if self._best_weights is not None:
            self.model.load_state_dict(self._best_weights)
        elif self.history:  # only incremental phase 1 ran: the model is its last epoch
            last = self.history[-1]
            self.best_score = last["val_acc"] if last["val_acc"] is not None else last["train_acc"]
            self.best_epoch = last["epoch"]

    def _run_phase(self, k: int, phase: Phase, x: np.ndarray, y: np.ndarray, *, done: int = 0,
                   saved: dict | None = None) -> None:
        """Phase ``k`` from its epoch ``done`` on (a resumed run also gets its optimizer and schedule back)."""
        _set_trainable(self.model, phase)
        params = [p for p in self.model.parameters() if p.requires_grad]
        # fused: one kernel for every parameter's update instead of a Python loop over them (same arithmetic)
        optimizer = torch.optim.AdamW(params, lr=phase.lr, weight_decay=phase.weight_decay, fused=True)
        n_images = min(len(y), self.cfg.max_train_images or len(y))
        steps = phase.epochs * _steps_per_epoch(n_images, phase.batch_size, self.place)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=phase.lr, total_steps=max(steps, 1),
                                                        pct_start=phase.warmup)
        if saved is not None and done > 0:
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["lr_scheduler"])
        grad_mask = self._new_rows_mask().to(self.device) if phase.new_rows_only else None
        # Wrapped after the phase chose its trainable parameters: DDP averages the gradients of those only.
        forward = (torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.place.active else None)
        for e in range(done, phase.epochs):
            check(self.should_stop, "training cancelled")
            self._epoch(phase, x, y, optimizer, scheduler, grad_mask, forward)
            if self.on_epoch is not None:
                self.on_epoch(self._state(k, e + 1, optimizer, scheduler))

    def _state(self, k: int, phase_epochs: int, optimizer, scheduler) -> dict:
        """Everything needed to go on after this epoch as if nothing had stopped (keys: :data:`RESUME_KEYS`)."""
        return {"format": RESUME_FORMAT, "phase": k, "phase_epochs": phase_epochs, "epochs_done": self.epochs_done,
                "model": self.model.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "history": list(self.history),
                "best_score": self.best_score, "best_epoch": self.best_epoch, "best_weights": self._best_weights,
                "rng": {"torch": torch.get_rng_state(), "numpy": self.rng.bit_generator.state,
                        "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                        "augment": pipeline_state(self.pipeline) if self.pipeline else None,
                        "val_augment": pipeline_state(self.val_pipeline) if self.val_pipeline else None}}

    def _restore(self, state: dict) -> tuple[int, int]:
        """Put a saved state back; returns (phase index, epochs of it already done)."""
        self.model.load_state_dict(state["model"])
        self.history, self.epochs_done = list(state["history"]), int(state["epochs_done"])
        self.best_score, self.best_epoch = float(state["best_score"]), int(state["best_epoch"])
        self._best_weights = state["best_weights"]
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.rng.bit_generator.state = rng["numpy"]
        if self.pipeline is not None:
            restore_pipeline_state(self.pipeline, rng["augment"])
            restore_pipeline_state(self.val_pipeline, rng["val_augment"])
        return int(state["phase"]), int(state["phase_epochs"])

    def _new_rows_mask(self) -> torch.Tensor:
        """1 for the classifier rows of the new classes, 0 for the parent's (which stay exactly as they were)."""
        mask = torch.zeros(len(self.data.class_ids))
        mask[self.data.n_old:] = 1.0
        return mask

    def _epoch(self, phase: Phase, x: np.ndarray, y: np.ndarray, optimizer, scheduler, grad_mask,
               forward=None) -> None:
        t0 = time.perf_counter()
        sel = np.arange(len(y))
        if self.cfg.max_train_images and len(sel) > self.cfg.max_train_images:
            sel = np.sort(self.rng.choice(sel, self.cfg.max_train_images, replace=False))
        feeder = _BatchFeeder(x[sel], y[sel], batch_size=phase.batch_size, rng=self.rng, pipeline=self.pipeline,
                              place=self.place, device=self.device)
        epoch = self.epochs_done + 1

        window: list[tuple[float, float]] = []

        def on_batch(i: int, n: int, loss: float, acc: float) -> None:
            check(self.should_stop, "training cancelled")
            window.append((loss, acc))
            # A point every ~BATCH_POINTS-th of an epoch (means over the batches since the last one), so even a
            # one-epoch run draws a curve; points go to the progress channel, not the saved history.
            if i % max(1, n // BATCH_POINTS) == 0 or i == n:
                mean_loss, mean_acc = np.mean(window, axis=0)
                window.clear()
                self.progress(((epoch - 1) + i / n) / self.total_epochs,
                              f"epoch {epoch}/{self.total_epochs} ({phase.name}): batch {i}/{n}",
                              {"batch": True, "epoch": round(epoch - 1 + i / n, 4), "loss": round(float(mean_loss), 5),
                               "train_acc": round(float(mean_acc), 5)})

        _train_mode(self.model, phase)
        try:
            loss, train_acc = train_one_epoch(
                self.model, feeder, optimizer=optimizer, scheduler=scheduler, label_smoothing=self.cfg.label_smoothing,
                grad_mask=grad_mask, distill=self.distill if phase.distil else None, on_batch=on_batch,
                forward=forward, bf16=self.precision == "bf16", outliers=self._outlier_exposure(phase, epoch))
        finally:
            feeder.close()
        pass_seconds = time.perf_counter() - t0
        if self.place.active:  # the history records the epoch over every rank's shard
            n = len(feeder.order)
            loss_sum, correct, seen = distributed.sum_over_ranks([loss * n, train_acc * n, n], self.place)
            loss, train_acc = loss_sum / seen, correct / seen
        entry, val_acc = self._validate(epoch, phase, loss, train_acc, optimizer, len(feeder), t0)
        entry["train_pass_seconds"] = round(pass_seconds, 2)  # the pass alone, without validation
        self.history.append(entry)
        self.epochs_done = epoch
        score = val_acc if not math.isnan(val_acc) else train_acc
        if phase.competes_for_best and score >= self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self._best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.progress(epoch / self.total_epochs, f"epoch {epoch}/{self.total_epochs} done: loss {loss:.3f}, "
                      f"val acc {entry['val_acc']}", entry)

    def _outlier_exposure(self, phase: Phase, epoch: int) -> OutlierExposure | None:
        """Outlier exposure for this epoch (not in incremental phase 1, where only new rows learn); its generator is
        seeded by (seed, rank, epoch), so a resumed run makes the same outliers without saving a generator state."""
        if self.cfg.outlier_weight <= 0 or phase.new_rows_only:
            return None
        seed = (self.cfg.seed * 1_000_003 + 7919 * self.place.rank + epoch) % 2 ** 63
        return OutlierExposure(self.cfg.outlier_weight, self.cfg.outlier_share, torch.Generator().manual_seed(seed))

    def _validate(self, epoch: int, phase: Phase, loss: float, train_acc: float, optimizer, steps: int,
                  t0: float) -> tuple[dict, float]:
        val_x, val_y = self.data.val_x, self.data.val_y
        val_acc = evaluate_accuracy(self.model, val_x, val_y)
        entry = {"epoch": epoch, "phase": phase.name, "loss": round(loss, 5), "train_acc": round(train_acc, 5),
                 "val_acc": round(val_acc, 5) if not math.isnan(val_acc) else None,
                 "lr": round(float(optimizer.param_groups[0]["lr"]), 7), "steps": steps,
                 "seconds": round(time.perf_counter() - t0, 2)}
        if self.val_pipeline is not None and len(val_y):
            aug_val = np.stack([self.val_pipeline(image=im)["image"] for im in val_x])
            entry["val_aug_acc"] = round(evaluate_accuracy(self.model, aug_val, val_y), 5)
        return entry, val_acc


def check_resume_state(state: dict, cfg: TrainConfig, dataset: DatasetInfo) -> None:
    """ValueError unless ``state`` is a resumable state of this very config and dataset version."""
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise ValueError(f"not a resumable training state (format {RESUME_FORMAT} expected)")
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise ValueError(f"resumable state lacks {', '.join(missing)}")
    try:  # a state saved before a setting existed holds its default
        saved = asdict(TrainConfig.from_json(state["config"]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"the resumable state holds unreadable settings: {e}") from None
    if json.dumps(saved, sort_keys=True) != json.dumps(asdict(cfg), sort_keys=True):
        raise ValueError("the resumable state was saved by a training with other settings; resume with its own")
    world = distributed.current().world
    if int(state.get("world", 1)) != world:
        raise ValueError(f"the state was saved by a training on {state.get('world', 1)} process(es), this one has "
                         f"{world}: resume it on as many (the data shards and LR schedule depend on it)")
    if state["dataset_fingerprint"] != dataset.fingerprint:
        raise ValueError(f"dataset {dataset.name} changed since this training started (version "
                         f"{state['dataset_fingerprint']} then, {dataset.fingerprint} now); start a new training")


def _select(cfg: TrainConfig, train_split: SplitArrays, val_split: SplitArrays, class_ids: list[int],
            present: list[int], n_old: int) -> _Data:
    known = set(class_ids)
    if cfg.mode == "resume" and not set(present) <= known:
        extra = sorted(set(present) - known)
        raise ValueError(f"the dataset has classes {extra} the model does not know; use incremental mode to add them")
    tr_keep = np.flatnonzero(np.isin(train_split.labels, class_ids))
    va_keep = np.flatnonzero(np.isin(val_split.labels, class_ids))
    return _Data(train_split.images[tr_keep], _to_index(train_split.labels[tr_keep], class_ids),
                 val_split.images[va_keep], _to_index(val_split.labels[va_keep], class_ids), class_ids,
                 missing=sorted(known - set(present)), n_old=n_old)


def _prepare_model(cfg: TrainConfig, dataset: DatasetInfo, parent: dict | None,
                   present: list[int]) -> tuple[TrafficSignNet, list[int]]:
    """The network to train and its class ids (its outputs, in order)."""
    if cfg.mode == "scratch":
        return build_model(cfg.architecture, len(present)), present
    if parent is None:
        raise ValueError(f"mode {cfg.mode!r} needs a base model")
    model = model_from_checkpoint(parent)
    old_ids = [int(c) for c in parent["class_ids"]]
    if cfg.mode == "resume":
        return model, old_ids
    if cfg.mode == "transfer_freeze":
        if present != old_ids:
            model.classifier = torch.nn.Linear(model.classifier.in_features, len(present))
            return model, present
        return model, old_ids
    new_ids = [c for c in present if c not in set(old_ids)]
    if not new_ids:
        raise ValueError(f"dataset {dataset.name} has no classes beyond the base model's {len(old_ids)}; "
                         "use resume or transfer mode instead")
    return expand_classifier(model, len(new_ids)), old_ids + new_ids


def _distillation(cfg: TrainConfig, parent: dict | None, teachers: list[dict],
                  class_ids: list[int]) -> Distillation | None:
    """Teachers' committee (any mode) or, in incremental mode, the parent for Learning without Forgetting."""
    if teachers:
        return Distillation(_committee(teachers, cfg.teachers, class_ids), cfg.distill_weight, cfg.distill_temperature)
    if cfg.mode == "incremental" and cfg.lwf_weight > 0:
        with torch.random.fork_rng():  # as for teachers: building it must not shift the student's random stream
            teacher = model_from_checkpoint(parent).eval().to(memory_format=torch.channels_last)
        for p in teacher.parameters():
            p.requires_grad_(False)
        return Distillation(teacher, cfg.lwf_weight, cfg.lwf_temperature)
    return None


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


def _phase1_indices(cfg: TrainConfig, y: np.ndarray, n_old: int, rng: np.random.Generator) -> np.ndarray:
    """Incremental phase 1's images: every new-class image plus ``replay_per_class`` images of each old class."""
    new_idx = np.flatnonzero(y >= n_old)
    replay = []
    if cfg.replay_per_class > 0:
        for c in range(n_old):
            cidx = np.flatnonzero(y == c)
            if len(cidx):
                replay += list(rng.choice(cidx, size=min(cfg.replay_per_class, len(cidx)), replace=False))
    return np.sort(np.concatenate([new_idx, np.asarray(replay, np.int64)]))
