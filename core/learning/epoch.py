"""One epoch of training, the torchvision-reference way: the batch feeder (augmenting and preprocessing in a
background thread, each rank its shard), :func:`train_one_epoch` (mixed precision, the distillation and outlier
exposure terms, the gradient mask of incremental phase 1), :func:`evaluate_accuracy`, and which parts of the
network a phase trains.
"""
from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.data.images import normalise, resize_batch
from core.learning import distributed
from core.learning.augment_pool import AugmentPool
from core.learning.distributed import Place
from core.learning.inference import predict_proba
from core.learning.models import Committee, TrafficSignNet, model_from_checkpoint
from core.learning.outliers import synthesize
from core.learning.training_config import Phase


def rank_batch(batch_size: int, place: Place) -> int:
    """Images a batch on one rank: the global batch shared out over the ranks."""
    return max(1, batch_size // place.world)


def steps_per_epoch(n_images: int, batch_size: int, place: Place) -> int:
    """Optimizer steps one epoch makes on each rank (as many on all; see :func:`distributed.shard`)."""
    return math.ceil(math.ceil(n_images / place.world) / rank_batch(batch_size, place))


class BatchFeeder:
    """Yields (x, y) batches for one epoch, augmenting and preprocessing in a background thread; or, with an
    ``augmenter`` (:class:`core.data.batch_augment.BatchAugmenter`), gathering the pixels there and augmenting each
    whole batch in the consuming thread, where its tensor operations share the training's threads."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, *, batch_size: int, rng: np.random.Generator,
                 pipeline=None, place: Place = Place(), device: torch.device = torch.device("cpu"),
                 pool: AugmentPool | None = None, epoch: int = 0,
                 augmenter: Callable[[np.ndarray], np.ndarray] | None = None):
        # Every rank draws the same permutation (same seed) and takes its shard of it, with its share of the batch.
        self.order = distributed.shard(rng.permutation(len(targets)), place)
        self.images, self.targets, self.pipeline, self.device = images, targets, pipeline, device
        self.pool, self.epoch = pool, epoch  # a pool augments in worker processes instead of ``pipeline`` here
        if augmenter is not None and (pipeline is not None or pool is not None):
            raise ValueError("augment with one of a pipeline, a pool or a batch augmenter, not several")
        self.augmenter = augmenter
        self.bs = rank_batch(batch_size, place)
        self.q: queue.Queue = queue.Queue(maxsize=6)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, daemon=True)
        self.thread.start()

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.bs)

    def _produce(self) -> None:
        try:
            starts = range(0, len(self.order), self.bs)
            raw = (self.images[self.order[s:s + self.bs]] for s in starts)
            if self.pool is not None:
                ready = self.pool.batches(self.epoch, raw)
            elif self.augmenter is not None:  # augmented, then resized, by the consumer
                ready = raw
            else:
                ready = (resize_batch(imgs if self.pipeline is None
                                      else np.stack([self.pipeline(image=im)["image"] for im in imgs]))
                         for imgs in raw)
            for s, imgs in zip(starts, ready):
                if self.stop.is_set():
                    return
                # Pixels only here: tensor work in this thread would start a second team of torch threads
                # competing with the training's for the cores; the consumer turns them into the input.
                self.q.put((imgs, torch.from_numpy(self.targets[self.order[s:s + self.bs]])))
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
            imgs = item[0] if self.augmenter is None else resize_batch(self.augmenter(item[0]))
            item = (normalise(imgs), item[1])  # channels-last float input, as the model is
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


#: Energy outlier exposure's margins on the energy score (logsumexp of the logits): the batch's images are pushed
#: above the first, the outliers below the second. The shipped benchmark's GTSRB val images score 4.1-6.1 (1st-95th
#: percentile, median 5.2); uniform logits at 0 score log K (3.8 for 43 classes).
ENERGY_MARGINS = (5.0, 2.0)


@dataclass(frozen=True)
class OutlierExposure:
    """Synthetic outliers (:mod:`core.learning.outliers`) added to every batch, with a loss weight. ``kind``
    ``uniform``: the model learns near-uniform probabilities on them (Hendrycks et al. 2019), the images' own loss is
    unchanged; ``energy``: squared hinges keep the images' energy score above and the outliers' below
    :data:`ENERGY_MARGINS` (Liu et al. 2020)."""

    weight: float
    share: float
    generator: torch.Generator
    kind: str = "uniform"

    def outliers(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return synthesize(x, y, n=round(self.share * len(x)), generator=self.generator)

    def loss(self, logits: torch.Tensor, known_logits: torch.Tensor | None = None) -> torch.Tensor:
        """The term for the outliers' ``logits`` (and, for ``energy``, the batch's own ``known_logits``); 0 when
        the outliers' predictions are uniform (``uniform``) or every score is past its margin (``energy``)."""
        if not len(logits):
            return logits.sum()
        if self.kind == "energy":
            high, low = ENERGY_MARGINS
            term = F.relu(torch.logsumexp(logits, 1) - low).pow(2).mean()
            if known_logits is not None and len(known_logits):
                term = term + F.relu(high - torch.logsumexp(known_logits, 1)).pow(2).mean()
            return self.weight * term
        return self.weight * (-F.log_softmax(logits, dim=1).mean(1) - math.log(logits.shape[1])).mean()


def train_one_epoch(model: TrafficSignNet, feeder: BatchFeeder, *, optimizer, scheduler, label_smoothing: float,
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
                loss = loss + outliers.loss(all_logits[len(x):], logits)
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


def set_trainable(model: TrafficSignNet, phase: Phase) -> None:
    for p in list(model.stn.parameters()) + list(model.features.parameters()):
        p.requires_grad_(phase.train_features)
    for p in model.head.parameters():
        p.requires_grad_(phase.train_head)
    for p in model.classifier.parameters():
        p.requires_grad_(True)


def param_groups(model: TrafficSignNet, phase: Phase) -> list[dict]:
    """The optimizer's parameter groups: the classifier at the phase's rate, every other trainable layer at
    ``phase.old_layers_lr`` times it (one group when that is 1)."""
    classifier = list(model.classifier.parameters())
    ids = {id(p) for p in classifier}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    if phase.old_layers_lr == 1.0 or not rest:
        return [{"params": rest + classifier, "lr": phase.lr}]
    return [{"params": rest, "lr": phase.lr * phase.old_layers_lr}, {"params": classifier, "lr": phase.lr}]


def align_new_rows(model: TrafficSignNet, n_old: int) -> float:
    """Weight aligning (Zhao et al., CVPR 2020): scale the classifier rows of the new classes (from ``n_old`` on)
    so their mean length is the old rows'; new classes, trained on few images, otherwise win by the size of their
    rows. Returns the factor applied (1.0 when there is nothing to align)."""
    w = model.classifier.weight.data
    if n_old <= 0 or n_old >= len(w):
        return 1.0
    norms = w.norm(dim=1)
    gamma = float(norms[:n_old].mean() / norms[n_old:].mean().clamp_min(1e-12))
    w[n_old:] *= gamma
    model.classifier.bias.data[n_old:] *= gamma
    return gamma


#: Offsets tried by :func:`calibrate_new_rows` (logits), smallest first.
NEW_ROW_OFFSETS = tuple(np.round(np.arange(0.0, 5.01, 0.25), 2))


def calibrate_new_rows(model: TrafficSignNet, images: np.ndarray, targets: np.ndarray, n_old: int) -> float:
    """Bias correction in the spirit of BiC (Wu et al., CVPR 2019): lower the new classes' logits (rows from
    ``n_old`` on) by the offset in :data:`NEW_ROW_OFFSETS` with the best accuracy on the held-out ``images``
    (targets as output indices; ties go to the smallest), and fold it into the classifier's biases. New classes,
    learnt from few images, otherwise take images of similar old classes. Returns the offset (0.0 without
    images or new rows)."""
    if not len(targets) or not 0 < n_old < model.num_classes:
        return 0.0
    scores = np.log(np.clip(predict_proba(model, images), 1e-30, None))
    accs = []
    for off in NEW_ROW_OFFSETS:
        shifted = scores.copy()
        shifted[:, n_old:] -= off
        accs.append(float((shifted.argmax(1) == targets).mean()))
    offset = float(NEW_ROW_OFFSETS[int(np.argmax(accs))])
    with torch.no_grad():
        model.classifier.bias[n_old:] -= offset
    return offset


def train_mode(model: TrafficSignNet, phase: Phase) -> None:
    """Frozen parts stay in eval mode so batch-norm statistics and dropout do not change them."""
    model.train()
    if not phase.train_features:
        model.stn.eval()
        model.features.eval()
    if not phase.train_head:
        model.head.eval()


def build_committee(teachers: list[dict], names: tuple[str, ...], class_ids: list[int]) -> Committee:
    """Frozen, eval-mode committee of the teacher checkpoints; each must predict the model's first classes."""
    members = []
    for ckpt, name in zip(teachers, names):
        check_teacher_classes([int(c) for c in ckpt["class_ids"]], class_ids, name=name)
        with torch.random.fork_rng():  # building the teachers must not shift the student's random stream
            members.append(model_from_checkpoint(ckpt))
    committee = Committee(members).eval().to(memory_format=torch.channels_last)
    for p in committee.parameters():
        p.requires_grad_(False)
    return committee


def check_teacher_classes(teacher_ids: list[int], class_ids: list[int], *, name: str) -> None:
    """ValueError unless a teacher predicting ``teacher_ids`` shares the model's ``class_ids`` (all, or the first
    ones, in the same order)."""
    if teacher_ids != class_ids[:len(teacher_ids)]:
        extra = sorted(set(teacher_ids) - set(class_ids))
        raise ValueError(f"teacher {name!r} predicts {len(teacher_ids)} classes, the model {len(class_ids)}: a "
                         "teacher must share the model's class ids (all, or its first ones, in the same order)"
                         + (f"; classes the model does not have: {extra[:10]}" if extra else ""))
