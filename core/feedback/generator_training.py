"""Training the class-conditional generator (:mod:`core.feedback.generator`) on a dataset's train split, on CPU.

Loss per image: L1 on pixels (summed over the 3x32x32 values) + a feature loss (squared error of the frozen
classifier's convolutional features of the decode against the image's, the "perceptual" term that keeps the sign's
shapes) + beta x the KL divergence to the prior. A checkpoint is written after every epoch (atomically), so a kill
loses at most one epoch; the exact command is stored in it.

  python -m core generator train --dataset GTSRB --epochs 12 --out artifacts/generator.pt
"""
from __future__ import annotations

import shlex
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from core.base.progress import ProgressFn
from core.data import datasets
from core.data.images import MEAN, STD
from core.feedback import generator as gen
from core.learning import registry
from core.learning.models import load_checkpoint, model_from_checkpoint


@dataclass(frozen=True)
class GeneratorTrainConfig:
    dataset: str = "GTSRB"
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 32
    beta: float = 1.0
    #: weight of the classifier-feature term (0 = pixels and KL only)
    feature_weight: float = 0.5
    #: the frozen classifier whose convolutional features the feature term compares (registry name or path)
    classifier: str = "benchmark"
    #: cap on train images (quick runs); 0 = all
    max_images: int = 0
    seed: int = 0
    out: str = "artifacts/generator.pt"

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"need epochs >= 1 and batch_size >= 2, got {self.epochs} and {self.batch_size}")
        if not 0 < self.lr < 1 or self.beta < 0 or self.feature_weight < 0:
            raise ValueError("lr must lie in (0, 1); beta and feature_weight must not be negative")


class _Features(nn.Module):
    """The frozen classifier's convolutional features (N, 1184) of [-1, 1] 32 px images, at its 48 px input."""

    def __init__(self, ref: str, class_ids: list[int]):
        super().__init__()
        ckpt = load_checkpoint(registry.model_path(ref))
        if sorted(ckpt["class_ids"]) != sorted(class_ids):
            raise ValueError(f"classifier {ref!r} has {len(ckpt['class_ids'])} classes, the dataset "
                             f"{len(class_ids)}: give a classifier of the same class set (--classifier)")
        self.net = model_from_checkpoint(ckpt).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.from_numpy(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.from_numpy(STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate((x + 1) / 2, size=(48, 48), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        return self.net.features(self.net.stn(self.net.lcn(x)))


def train_generator(cfg: GeneratorTrainConfig, *, log: Callable[[str], None] = print,
                    progress: ProgressFn | None = None, command: str | None = None) -> dict:
    """Train a generator on ``cfg.dataset``'s train split and save it to ``cfg.out``; returns its metrics."""
    cfg.validate()
    info = datasets.get_dataset(cfg.dataset)
    split = datasets.load_split(info, "train")
    if len(split) == 0:
        raise ValueError(f"{cfg.dataset} has no train images to learn from")
    class_ids = sorted(info.classes)
    rng = np.random.default_rng(cfg.seed)
    idx = rng.permutation(len(split))[:cfg.max_images or None]
    images, labels = split.images[idx], split.labels[idx]
    rows = {c: i for i, c in enumerate(class_ids)}
    y_all = torch.as_tensor([rows[int(c)] for c in labels], dtype=torch.long)
    x_all = gen.to_tensor(images)
    torch.manual_seed(cfg.seed)
    net = gen.ConditionalVAE(len(class_ids), width=cfg.width)
    feats = _Features(cfg.classifier, class_ids) if cfg.feature_weight > 0 else None
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-5)
    steps = cfg.epochs * int(np.ceil(len(x_all) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    command = command or "python -m core generator train " + " ".join(
        f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in asdict(cfg).items())
    history, start, step = [], time.time(), 0
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        sums = np.zeros(3)
        for b in range(0, len(order), cfg.batch_size):
            pick = order[b:b + cfg.batch_size]
            x, y = x_all[pick], y_all[pick]
            recon, mu, logvar = net(x, y)
            pixel = (recon - x).abs().flatten(1).sum(1).mean()
            kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
            feature = (feats(recon) - feats(x)).pow(2).sum(1).mean() if feats is not None else torch.zeros(())
            loss = pixel + cfg.feature_weight * feature + cfg.beta * min(1.0, (step + 1) / (steps * 0.2)) * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            sums += [float(v.detach()) * len(x) for v in (pixel, feature, kl)]
            if progress is not None:
                progress(step / steps, f"epoch {epoch + 1}/{cfg.epochs}, step {step}/{steps}")
        row = {"epoch": epoch + 1, **{k: round(float(v) / len(x_all), 2) for k, v in
                                      zip(("pixel_l1", "feature", "kl"), sums)},
               "elapsed_s": round(time.time() - start, 1)}
        history.append(row)
        log(str(row))
        ckpt = gen.make_checkpoint(net.eval(), class_ids=class_ids, class_names=[info.classes[c] for c in class_ids],
                                   dataset=info.name, dataset_fingerprint=info.fingerprint, epochs=epoch + 1,
                                   history=history, config=asdict(cfg), command=command)
        gen.save_generator(ckpt, cfg.out)
    return {"out": cfg.out, "epochs": cfg.epochs, "images": int(len(x_all)), "train_s": round(time.time() - start, 1),
            "last": history[-1], "version": gen.file_version(cfg.out)}

