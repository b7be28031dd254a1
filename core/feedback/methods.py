"""Generation methods of "make more like these": one registry record each (:func:`register_method`), read by
:mod:`core.feedback.generate`, the CLI, the page and the experiment alike.

Every method turns one image the model gets wrong into ``n`` new images of the same size and the same true class:

- ``augment`` (targeted augmentation): draws ``CANDIDATES_PER_IMAGE`` x n variants from the in-model augmentation
  groups (:mod:`core.data.augment`) and keeps the n the model finds hardest (lowest probability of the true class):
  worst-of-k, sampling where the mistake stays hard;
- ``latent`` (generator neighbours): projects the image into the class-conditional generator's latent space and
  samples near it (:func:`core.feedback.generator.sample_near`);
- ``patch`` (activation-maximisation patches, after the published system's last experiment): a square patch at a
  seeded random place, optimised to raise the class the model confuses the image with; the image keeps its true
  label, so training on it teaches the model to ignore such evidence;
- ``copies`` (the control): the real image itself, n times (training's own augmentation varies it).

Listed in the order of what ``experiments/feedback.md`` measured (fine-tuning the benchmark, 3 seeds): ``copies``
best, ``latent`` no better than fine-tuning alone, ``augment`` and ``patch`` 0.6-0.7 pt worse on the official test;
the page offers the first as its default.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from core.base.registries import Registry
from core.data import augment
from core.data.images import MEAN, STD, deprocess, preprocess
from core.feedback import generator as gen
from core.learning.inference import predict_proba

#: Augmentation candidates drawn per requested image (the worst 1 in this many is kept).
CANDIDATES_PER_IMAGE = 4
#: Probability of each augmentation group when searching (higher than training's 0.25: a wider search).
SEARCH_P = 0.35
#: Patch side as a share of the image side, and optimisation steps / learning rate.
PATCH_SHARE = 0.3
PATCH_STEPS = 20
PATCH_LR = 0.15


@dataclass
class GenContext:
    """What a method may use: the classifier (eval mode) with its class ids in output order, and the generator
    (loaded on first use, checked against the classifier's class set)."""
    model: torch.nn.Module
    class_ids: list[int]
    generator_path: Path = gen.SHIPPED
    _generator: gen.LoadedGenerator | None = field(default=None, repr=False)

    @property
    def generator(self) -> gen.LoadedGenerator:
        if self._generator is None:
            self._generator = gen.load_generator(self.generator_path, class_ids=self.class_ids)
        return self._generator

    def row(self, class_id: int) -> int:
        """The model's output index of dataset class ``class_id``."""
        if int(class_id) not in self.class_ids:
            raise ValueError(f"the model has no class {class_id} (its classes: {len(self.class_ids)} ids from "
                             f"{min(self.class_ids)} to {max(self.class_ids)})")
        return self.class_ids.index(int(class_id))


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    description: str
    version: int
    uses_generator: bool
    #: fn(image (H, W, 3) uint8, class_id, confuser_id or None, *, ctx, n, seed) -> (n, H, W, 3) uint8
    fn: Callable[..., np.ndarray]


_METHODS = Registry("generation method")


def register_method(name: str, *, label: str, description: str, version: int = 1, uses_generator: bool = False):
    def wrap(fn):
        _METHODS.add(Method(name, label, description, version, uses_generator, fn))
        return fn
    return wrap


def list_methods() -> tuple[str, ...]:
    return _METHODS.names()


def get_method(name: str) -> Method:
    return _METHODS.get(name)


# -- the methods ---------------------------------------------------------------------------------------------------

@register_method("copies", label="copies of the real image",
                 description="the real image itself, repeated; training's own augmentation varies it. Measured the "
                             "best of the four (experiments/feedback.md: +0.06 pt official test accuracy over "
                             "fine-tuning without it, and the best validation accuracy); the experiment's control")
def _copies(image: np.ndarray, class_id: int, confuser: int | None, *, ctx: GenContext, n: int,
            seed: int) -> np.ndarray:
    return np.repeat(image[None], n, axis=0)


@register_method("latent", label="generator neighbours", uses_generator=True,
                 description="the image projected into the class-conditional generator's latent space; new "
                             "images from nearby latent points (the generator's change applied to the real image). "
                             "Measured: as good as fine-tuning alone on the test, not better than copies")
def _latent(image: np.ndarray, class_id: int, confuser: int | None, *, ctx: GenContext, n: int,
            seed: int) -> np.ndarray:
    return gen.sample_near(ctx.generator, image[None], [class_id], n, seed=seed)


@register_method("augment", label="targeted augmentation",
                 description="augmented variants of the image, keeping those the model finds hardest (worst of "
                             f"{CANDIDATES_PER_IMAGE}). Measured: lowers official test accuracy by 0.6 pt against "
                             "copies (the hardest variants teach shortcuts); kept to compare")
def _augment(image: np.ndarray, class_id: int, confuser: int | None, *, ctx: GenContext, n: int,
             seed: int) -> np.ndarray:
    k = CANDIDATES_PER_IMAGE * n
    candidates = augment.augment_images(np.repeat(image[None], k, axis=0), p=SEARCH_P, seed=seed)
    p_true = predict_proba(ctx.model, candidates)[:, ctx.row(class_id)]
    return candidates[np.argsort(p_true, kind="stable")[:n]]


@register_method("patch", label="activation-maximisation patches",
                 description="a patch optimised to raise the class the model confuses the image with, pasted at a "
                             "random place; the image keeps its true class. Measured: lowers official test accuracy "
                             "by 0.7 pt against copies; kept to compare")
def _patch(image: np.ndarray, class_id: int, confuser: int | None, *, ctx: GenContext, n: int,
           seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(int(seed))
    x = preprocess(image).repeat(n, 1, 1, 1)  # (n, 3, 48, 48) normalised
    size = x.shape[-1]
    side = max(2, int(round(PATCH_SHARE * size)))
    mask = torch.zeros((n, 1, size, size))
    for i in range(n):
        top, left = (int(v) for v in torch.randint(0, size - side + 1, (2,), generator=g))
        mask[i, :, top:top + side, left:left + side] = 1.0
    target = ctx.row(confuser) if confuser is not None and confuser != class_id else None
    true = ctx.row(class_id)
    param = torch.randn((n, 3, size, size), generator=g).requires_grad_(True)  # patch pixels via a sigmoid
    mean, std = (torch.from_numpy(v).view(1, 3, 1, 1) for v in (MEAN, STD))
    opt = torch.optim.Adam([param], lr=PATCH_LR)
    ctx.model.eval()
    for _ in range(PATCH_STEPS):
        patch = (torch.sigmoid(param) - mean) / std
        logits = ctx.model(x * (1 - mask) + patch * mask)
        if target is None:  # no confuser: lower the true class against the best other one
            others = logits.clone()
            others[:, true] = -1e9
            goal = others.max(1).values - logits[:, true]
        else:
            goal = logits[:, target] - logits[:, true]
        # autograd.grad: only the patch gets a gradient (the model's weights are left alone)
        (param.grad,) = torch.autograd.grad(-goal.sum(), [param])
        opt.step()
    with torch.no_grad():
        out = deprocess(x * (1 - mask) + ((torch.sigmoid(param) - mean) / std) * mask)
    h, w = image.shape[:2]
    return np.stack([o if (h, w) == o.shape[:2] else cv2.resize(o, (w, h), interpolation=cv2.INTER_AREA)
                     for o in out])
