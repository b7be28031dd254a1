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
running it as a run and registering the model happen in :mod:`core.learning.train_run`.

The settings and the plan are :mod:`core.learning.training_config`, one epoch's pieces :mod:`core.learning.epoch`;
this module, the public face of training, also hands out the settings' names callers use (``TrainConfig``,
``MODES``, ``MODE_DESCRIPTIONS``, ``check_resume_state``, ``plan_phases``).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from core.base.progress import ProgressFn, StopFn, check, never, silent
from core.data import augment
from core.data.augment import build_pipeline, pipeline_state, restore_pipeline_state
from core.data.batch_augment import BatchAugmenter
from core.data.datasets import DatasetInfo, SplitArrays, load_split
from core.learning import distributed, memory
from core.learning.distributed import Place
from core.learning.augment_pool import AugmentPool
from core.learning.epoch import (BatchFeeder, Distillation, OutlierExposure, align_new_rows, build_committee,
                                 calibrate_new_rows,
                                 evaluate_accuracy, param_groups, set_trainable, steps_per_epoch, train_mode,
                                 train_one_epoch)
from core.learning.models import TrafficSignNet, build_model, expand_classifier, make_checkpoint, model_from_checkpoint
# The settings, as callers know them from here (this module is training's public face).
from core.learning.training_config import (MODE_DESCRIPTIONS, MODE_LABELS, MODES,  # noqa: F401
                                           PHASE_LABELS, RESUME_FORMAT, Phase, TrainConfig, check_resume_state,
                                           augment_engine, plan_phases, planned_classes)

#: Points per epoch on the live training curve (batch means); the saved history keeps one entry per epoch.
BATCH_POINTS = 10


@dataclass
class TrainResult:
    checkpoint: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _to_index(labels: np.ndarray, class_ids: list[int]) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(class_ids)}
    return np.asarray([lookup[int(c)] for c in labels], np.int64)


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
    if device.type == "cpu":
        memory.keep_freed_maps()
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
                    "world": place.world, "precision": precision,
                    "augment_version": augment.pipeline_version(cfg.harden_p, cfg.harden_at),
                    "augment_engine": loop.engine}
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
                                       "arithmetic": distributed.arithmetic_record(precision, device),
                                       "augment_engine": loop.engine,
                                       **({"classes_without_train_images": data.missing} if data.missing else {}),
                                       **({"new_class_offset": loop.new_class_offset}
                                          if loop.new_class_offset is not None else {})},
        config={**asdict(cfg), "architecture": architecture,
                "augment_version": augment.pipeline_version(cfg.harden_p, cfg.harden_at)})
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
        self.engine = augment_engine(cfg, device.type)
        self.pipeline = (build_pipeline(p=cfg.augment_p, seed=aug_seed, harden_p=cfg.harden_p,
                                        harden_at=cfg.harden_at)
                         if self.engine == "albumentations" else None)
        self.augmenter = BatchAugmenter(p=cfg.augment_p, seed=aug_seed) if self.engine == "batch" else None
        self.val_pipeline = build_pipeline(p=cfg.augment_p, seed=cfg.seed + 1) if cfg.augment else None
        self.pool = (AugmentPool(cfg.loader_workers, p=cfg.augment_p, harden_p=cfg.harden_p, seed=aug_seed,
                                 rank=place.rank, harden_at=cfg.harden_at)
                     if self.engine == "albumentations" and cfg.loader_workers > 0 else None)
        self.total_epochs = sum(p.epochs for p in phases)
        self.history: list[dict] = []
        self.epochs_done = 0
        self.best_score, self.best_epoch, self._best_weights = -1.0, 0, None
        self.on_epoch: Callable[[dict], None] | None = None
        self.new_class_offset: float | None = None  # incremental calibration's offset, once applied

    def run(self, phase1: np.ndarray | None, resume: dict | None = None) -> None:
        start_phase, start_epoch = self._restore(resume) if resume is not None else (0, 0)
        try:
            for k, phase in enumerate(self.phases[start_phase:], start=start_phase):
                sel = phase1 if phase.new_rows_only else np.arange(len(self.data.train_y))
                self._run_phase(k, phase, self.data.train_x[sel], self.data.train_y[sel],
                                done=start_epoch if k == start_phase else 0,
                                saved=resume if k == start_phase else None)
        finally:
            if self.pool is not None:
                self.pool.close()
        if self._best_weights is not None:
            self.model.load_state_dict(self._best_weights)
        elif self.history:  # only incremental phase 1 ran: the model is its last epoch
            last = self.history[-1]
            self.best_score = last["val_acc"] if last["val_acc"] is not None else last["train_acc"]
            self.best_epoch = last["epoch"]
        if self.cfg.mode == "incremental" and self.cfg.weight_align:
            align_new_rows(self.model, self.data.n_old)
        if self.cfg.mode == "incremental" and self.cfg.calibrate_new_classes:
            self.new_class_offset = calibrate_new_rows(self.model, self.data.val_x, self.data.val_y, self.data.n_old)

    def _run_phase(self, k: int, phase: Phase, x: np.ndarray, y: np.ndarray, *, done: int = 0,
                   saved: dict | None = None) -> None:
        """Phase ``k`` from its epoch ``done`` on (a resumed run also gets its optimizer and schedule back)."""
        set_trainable(self.model, phase)
        groups = param_groups(self.model, phase)
        # fused: one kernel for every parameter's update instead of a Python loop over them (same arithmetic)
        optimizer = torch.optim.AdamW(groups, lr=phase.lr, weight_decay=phase.weight_decay, fused=True)
        n_images = min(len(y), self.cfg.max_train_images or len(y))
        steps = phase.epochs * steps_per_epoch(n_images, phase.batch_size, self.place)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups],
                                                        total_steps=max(steps, 1), pct_start=phase.warmup)
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
                        "augment_batch": self.augmenter.state() if self.augmenter else None,
                        "val_augment": pipeline_state(self.val_pipeline) if self.val_pipeline else None}}

    def _restore(self, state: dict) -> tuple[int, int]:
        """Put a saved state back; returns (phase index, epochs of it already done)."""
        self.model.load_state_dict(state["model"])
        self.history, self.epochs_done = list(state["history"]), int(state["epochs_done"])
        self.best_score, self.best_epoch = float(state["best_score"]), int(state["best_epoch"])
        self._best_weights = state["best_weights"]
        saved = state.get("augment_engine", "albumentations")  # states from before the batch engine
        if self.engine is not None and saved != self.engine:
            raise ValueError(f"the state was saved by a training augmenting with the {saved} engine, this one would "
                             f"use {self.engine}: resume it with --augment-engine {saved}")
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.rng.bit_generator.state = rng["numpy"]
        if self.pipeline is not None:
            restore_pipeline_state(self.pipeline, rng["augment"])
        if self.val_pipeline is not None:
            restore_pipeline_state(self.val_pipeline, rng["val_augment"])
        if self.augmenter is not None:
            self.augmenter.restore(rng["augment_batch"])
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
        epoch = self.epochs_done + 1
        feeder = BatchFeeder(x[sel], y[sel], batch_size=phase.batch_size, rng=self.rng, pipeline=self.pipeline,
                              place=self.place, device=self.device, pool=self.pool, epoch=epoch,
                              augmenter=self.augmenter)

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
                              f"epoch {epoch}/{self.total_epochs} ({PHASE_LABELS[phase.name]}): batch {i}/{n}",
                              {"batch": True, "epoch": round(epoch - 1 + i / n, 4), "loss": round(float(mean_loss), 5),
                               "train_acc": round(float(mean_acc), 5)})

        train_mode(self.model, phase)
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
        val_txt = "no val images" if entry["val_acc"] is None else f"val accuracy {100 * entry['val_acc']:.1f} %"
        self.progress(epoch / self.total_epochs, f"epoch {epoch}/{self.total_epochs} done: loss {loss:.3f}, "
                      f"{val_txt}", entry)

    def _outlier_exposure(self, phase: Phase, epoch: int) -> OutlierExposure | None:
        """Outlier exposure for this epoch (not in incremental phase 1, where only new rows learn); its generator is
        seeded by (seed, rank, epoch), so a resumed run makes the same outliers without saving a generator state."""
        if self.cfg.outlier_weight <= 0 or phase.new_rows_only:
            return None
        seed = (self.cfg.seed * 1_000_003 + 7919 * self.place.rank + epoch) % 2 ** 63
        return OutlierExposure(self.cfg.outlier_weight, self.cfg.outlier_share, torch.Generator().manual_seed(seed),
                               self.cfg.outlier_loss)

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


def _select(cfg: TrainConfig, train_split: SplitArrays, val_split: SplitArrays, class_ids: list[int],
            present: list[int], n_old: int) -> _Data:
    known = set(class_ids)
    tr_keep = np.flatnonzero(np.isin(train_split.labels, class_ids))
    va_keep = np.flatnonzero(np.isin(val_split.labels, class_ids))
    return _Data(train_split.images[tr_keep], _to_index(train_split.labels[tr_keep], class_ids),
                 val_split.images[va_keep], _to_index(val_split.labels[va_keep], class_ids), class_ids,
                 missing=sorted(known - set(present)), n_old=n_old)


def _prepare_model(cfg: TrainConfig, dataset: DatasetInfo, parent: dict | None,
                   present: list[int]) -> tuple[TrafficSignNet, list[int]]:
    """The network to train and its class ids (its outputs, in order: :func:`planned_classes`)."""
    old_ids = [int(c) for c in parent["class_ids"]] if parent is not None else None
    class_ids = planned_classes(cfg.mode, present, old_ids, dataset=dataset.name)
    if cfg.mode == "scratch":
        return build_model(cfg.architecture, len(class_ids)), class_ids
    model = model_from_checkpoint(parent)
    if cfg.mode == "transfer_freeze" and class_ids != old_ids:
        model.classifier = torch.nn.Linear(model.classifier.in_features, len(class_ids))
    elif cfg.mode == "incremental":
        model = expand_classifier(model, len(class_ids) - len(old_ids))
    return model, class_ids


def _distillation(cfg: TrainConfig, parent: dict | None, teachers: list[dict],
                  class_ids: list[int]) -> Distillation | None:
    """Teachers' committee (any mode) or, in incremental mode, the parent for Learning without Forgetting."""
    if teachers:
        return Distillation(build_committee(teachers, cfg.teachers, class_ids), cfg.distill_weight,
                            cfg.distill_temperature)
    if cfg.mode == "incremental" and cfg.lwf_weight > 0:
        with torch.random.fork_rng():  # as for teachers: building it must not shift the student's random stream
            teacher = model_from_checkpoint(parent).eval().to(memory_format=torch.channels_last)
        for p in teacher.parameters():
            p.requires_grad_(False)
        return Distillation(teacher, cfg.lwf_weight, cfg.lwf_temperature)
    return None


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
