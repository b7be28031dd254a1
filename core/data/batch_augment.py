"""The seven augmentation groups applied to a whole batch at once: the trainer's fast augmentation engine.

:mod:`core.data.augment` runs each group as an albumentations pipeline, one image at a time: about 190 us an image
on this project's CPU, most of it Python around 32 x 32 pixels, and on a 2-core machine that work competes with the
training's two compute threads (measured: 40 ms of a 190 ms fp32 ``bn_stn`` step). :class:`BatchAugmenter` draws
the same things per image (each group fires with probability ``p``, then one of its transforms, uniformly; the
transforms of :mod:`core.data.batch_transforms`, with albumentations' parameter distributions) and applies each
transform once to the images that drew it, in the training's own thread (tensor operations, and OpenCV calls image
by image where those cost less). Groups fire in an
order drawn anew for every batch, so every image still sees a uniformly random order. Its random state is one
``torch.Generator`` (:meth:`BatchAugmenter.state`), saved with a resumable training.

Datasets (Difficult, Testing), curation's variants and the hardening groups keep the albumentations pipelines;
the trainer chooses the engine (``TrainConfig.augment_engine``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from core.data import augment
from core.data import batch_transforms as bt

BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

#: Each group's batched transforms, in the order of its albumentations list, and the group version they follow.
BATCHED: dict[str, tuple[int, tuple[BatchTransform, ...]]] = {
    "brightness_contrast": (1, (bt.brightness_contrast, bt.gamma)),
    "shift_rotate": (1, (bt.shift_rotate,)),
    "blur_distortion": (1, (bt.gaussian_blur, bt.median_blur, bt.motion_blur, bt.optical_distortion)),
    "noise": (1, (bt.iso_noise, bt.gauss_noise, bt.multiplicative_noise)),
    "colour": (1, (bt.hue_saturation_value, bt.color_jitter)),
    "dropout": (1, (bt.pixel_dropout, bt.coarse_dropout)),
    "affine_perspective": (1, (bt.shear_scale, bt.perspective)),
}


def unsupported(groups: Sequence[str] | None = None) -> list[str]:
    """The groups (default: every registered one) without a batched form of their current version."""
    names = augment.list_groups() if groups is None else groups
    return [g for g in names if g not in BATCHED or BATCHED[g][0] != augment.get_group(g).version]


class BatchAugmenter:
    """Augments uint8 batches (N, H, W, 3) with the chosen groups (default: all), each with probability ``p``;
    the same ``seed`` and the same batches give the same outputs."""

    def __init__(self, *, p: float = 0.25, seed: int = 0, groups: Sequence[str] | None = None):
        self.groups = tuple(augment.list_groups() if groups is None else groups)
        missing = unsupported(self.groups)
        if missing:
            raise ValueError(f"no batched form of the augmentation group(s) {missing}; use the albumentations engine")
        if not 0 <= p <= 1:
            raise ValueError(f"the group probability must lie in [0, 1], got {p}")
        self.p = float(p)
        self.generator = torch.Generator().manual_seed(int(seed))

    @torch.inference_mode()  # no autograd bookkeeping on these many small operations
    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> a new (N, H, W, 3) uint8 array."""
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
        # one contiguous (N, 3, H, W) copy: gathering and writing back rows of a permuted view is several times slower
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().contiguous()
        n, gen = len(x), self.generator
        for g in torch.randperm(len(self.groups), generator=gen).tolist():
            transforms = BATCHED[self.groups[g]][1]
            fires = torch.rand(n, generator=gen) < self.p
            pick = torch.randint(len(transforms), (n,), generator=gen)
            for k, transform in enumerate(transforms):
                rows = torch.nonzero(fires & (pick == k)).view(-1)
                if len(rows):
                    x[rows] = transform(x[rows], gen)
        return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

    def state(self) -> torch.Tensor:
        """The random state (a uint8 tensor: safe for ``torch.load(weights_only=True)``)."""
        return self.generator.get_state()

    def restore(self, state: torch.Tensor) -> None:
        """Put back what :meth:`state` took."""
        self.generator.set_state(state)
