"""Test-time augmentation (TTA): the model's probabilities averaged over a few views of each image.

The views are flip-free (a flipped "keep left" is "keep right"): small zooms and rotations and one contrast
stretch, applied to the preprocessed batch (:func:`core.data.images.preprocess`) with one affine resampling each,
so every caller of :func:`core.learning.inference.predict_proba` gets the same views. The cost is one forward pass
per view: :data:`VIEWS` has 6, so about 6x the time of a plain prediction (reports record ``tta_views`` and their
images per second).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class View:
    name: str
    #: zoom: > 1 enlarges the content (crops the border), < 1 shrinks it (border pixels repeat)
    scale: float = 1.0
    #: rotation in degrees, counter-clockwise
    angle: float = 0.0
    #: contrast factor about each image's own mean
    contrast: float = 1.0


VIEWS: tuple[View, ...] = (
    View("identity"),
    View("zoom in", scale=1.1),
    View("zoom out", scale=0.92),
    View("rotate left", angle=7.0),
    View("rotate right", angle=-7.0),
    View("more contrast", contrast=1.25),
)


def apply(x: torch.Tensor, view: View) -> torch.Tensor:
    """One view of a preprocessed batch (N, 3, S, S); the identity returns ``x`` itself."""
    if view.scale != 1.0 or view.angle != 0.0:
        a = math.radians(view.angle)
        cos, sin = math.cos(a) / view.scale, math.sin(a) / view.scale
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype).expand(len(x), 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, align_corners=False, padding_mode="border")
    if view.contrast != 1.0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * view.contrast + mean
    return x


def views(x: torch.Tensor, *, chosen: tuple[View, ...] = VIEWS) -> Iterator[torch.Tensor]:
    """Each view of ``x`` in turn (memory for one at a time)."""
    for view in chosen:
        yield apply(x, view)


def describe() -> str:
    """The views in words, for help texts: "6 views: identity, zoom in, ..."."""
    return f"{len(VIEWS)} views: " + ", ".join(v.name for v in VIEWS)
