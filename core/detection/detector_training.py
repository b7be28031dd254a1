"""Training the detector on generated scenes (:mod:`core.detection.scenes`), the torchvision way: a config, a
data builder, one loop, checkpoints as plain dicts. ``python -m core detector train`` runs it; the shipped
``artifacts/detector.pt`` records the command that made it.

Patches of :attr:`DetectorTrainConfig.patch` px are made once (seeded) from ``train`` scenes with signs of
:data:`core.detection.detector.TRAIN_SIZES`; every step draws a batch of them, mirrored at random. The operating
threshold is the best-F1 score on ``val`` scenes (held-out tracks); the test scenes are never looked at here.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.detection import scenes
from core.detection.detector import (CHANNELS, TRAIN_SIZES, HeatmapNet, LearnedDetector, detection_loss,
                                     make_targets, save_detector, to_tensor)
from core.detection.metrics import ImageEval, average_precision, best_threshold


@dataclass(frozen=True)
class DetectorTrainConfig:
    """Every setting of a detector training (stored in the checkpoint's ``train``)."""
    steps: int = 3000
    batch: int = 32
    #: side of the square training patches, px
    patch: int = 192
    #: distinct patches made before training (each seen ~steps*batch/patches times, mirrored half the time)
    patches: int = 12000
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    channels: tuple[int, ...] = CHANNELS
    #: validation scenes (640 x 480, held-out tracks) for the operating threshold and the checkpoint's metrics
    val_scenes: int = 200
    out: str = "artifacts/detector.pt"
    #: shared data folder with the GTSRB npz files (default ``../shared/data``); None: default
    source: str | None = None
    #: a folder of sign-free photos to use as training backgrounds instead of the built-in ones
    backgrounds: str | None = None

    def check(self) -> None:
        if self.steps < 1 or self.batch < 1 or self.patches < self.batch:
            raise ValueError(f"steps and batch must be >= 1 and patches >= batch; got steps={self.steps}, "
                             f"batch={self.batch}, patches={self.patches}")
        if self.patch < 64 or self.patch % 4:
            raise ValueError(f"patch must be a multiple of 4, at least 64 px; got {self.patch}")


def make_patches(n: int, *, seed: int, size: int, source: str | None = None,
                 folder: str | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """``n`` training patches (n, size, size, 3) uint8 and their boxes; about one in six has no sign."""
    images = np.empty((n, size, size, 3), np.uint8)
    boxes = []
    for i in range(n):
        s = scenes.make_scene(seed * 1_000_003 + i, split="train", size=(size, size), n_signs=(0, 3),
                              sign_sizes=TRAIN_SIZES, source=source, folder=folder, view=scenes.PATCH_VIEW)
        images[i] = s.image
        boxes.append(s.boxes)
    return images, boxes


def val_scenes(n: int, *, source: str | None = None) -> list[scenes.Scene]:
    return [scenes.make_scene(500_000 + i, split="val", size=(640, 480), source=source) for i in range(n)]


def evaluate_scenes(detector: LearnedDetector, made: list[scenes.Scene]) -> tuple[list[ImageEval], dict]:
    """Run ``detector`` on scenes: per-image matches and class-agnostic AP@0.5 (all sizes)."""
    evals = []
    for s in made:
        boxes, scores = detector.propose(s.image)
        evals.append(ImageEval(boxes, scores, s.boxes))
    return evals, average_precision(evals)


def train_detector(cfg: DetectorTrainConfig, *, log: Callable[[str], None] = print) -> dict:
    """Train, pick the operating threshold on validation scenes, save ``cfg.out``; returns the metrics."""
    cfg.check()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.time()
    images, boxes = make_patches(cfg.patches, seed=cfg.seed, size=cfg.patch, source=cfg.source,
                                 folder=cfg.backgrounds)
    log(f"made {cfg.patches} patches in {time.time() - t0:.0f} s")
    net = HeatmapNet(tuple(cfg.channels))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    out_hw = (cfg.patch // 4, cfg.patch // 4)
    net.train()
    for step in range(cfg.steps):
        idx = rng.choice(len(images), size=cfg.batch, replace=False)
        flip = rng.random(cfg.batch) < 0.5
        batch = np.stack([images[i][:, ::-1] if f else images[i] for i, f in zip(idx, flip)])
        bx = [_flip(boxes[i], cfg.patch) if f else boxes[i] for i, f in zip(idx, flip)]
        loss, parts = detection_loss(net(to_tensor(batch)), make_targets(bx, out_hw))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            log(f"step {step + 1}/{cfg.steps} loss {float(loss.detach()):.3f} (focal {parts['focal']:.3f}, "
                f"l1 {parts['l1']:.3f}) {time.time() - t0:.0f} s")
    net.eval()
    detector = LearnedDetector(net)
    evals, ap = evaluate_scenes(detector, val_scenes(cfg.val_scenes, source=cfg.source))
    threshold, f1 = best_threshold(evals)
    metrics = {"val_ap50": ap["ap"], "val_f1": round(f1, 4), "val_scenes": cfg.val_scenes,
               "train_seconds": round(time.time() - t0)}
    log(f"validation: AP@0.5 {ap['ap']}, best F1 {f1:.3f} at score {threshold:.3f}")
    save_detector(Path(cfg.out), net, min_score=round(threshold, 4), train=_train_record(cfg), metrics=metrics,
                  channels=tuple(cfg.channels))
    log(f"saved {cfg.out}")
    return {**metrics, "min_score": threshold}


def _flip(boxes: np.ndarray, size: int) -> np.ndarray:
    b = boxes.copy()
    if len(b):
        b[:, [0, 2]] = size - boxes[:, [2, 0]]
    return b


def _train_record(cfg: DetectorTrainConfig) -> dict:
    record = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    flags = " ".join(f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in record.items() if v is not None and k not in ("source", "backgrounds"))
    record["command"] = f"python -m core detector train {flags}"
    record["torch"] = str(torch.__version__)
    return record
