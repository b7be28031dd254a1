"""The seven augmentation groups as albumentations pipelines: selectable, combinable, permutable, seeded."""
from __future__ import annotations

import os
from typing import Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402

#: Group key -> human label, in the order the published system listed them.
GROUP_LABELS = {
    "brightness_contrast": "Brightness & contrast",
    "shift_rotate": "Shift & rotate",
    "blur_distortion": "Blur (Gaussian, median, motion) & optical distortion",
    "noise": "Noise (ISO, Gaussian, multiplicative)",
    "colour": "Hue, saturation & colour jitter",
    "dropout": "Dropout & cutout",
    "affine_perspective": "Affine & perspective",
}
GROUPS = tuple(GROUP_LABELS)


def _group(name: str) -> A.BasicTransform:
    """One group: a OneOf over its transforms, always applied (the caller sets the group's probability)."""
    if name == "brightness_contrast":
        ts = [A.RandomBrightnessContrast(brightness_limit=0.35, contrast_limit=0.35, p=1),
              A.RandomGamma(gamma_limit=(60, 160), p=1)]
    elif name == "shift_rotate":
        ts = [A.Affine(translate_percent=(-0.12, 0.12), rotate=(-18, 18), scale=(0.9, 1.1),
                       border_mode=0, fill=0, p=1)]
    elif name == "blur_distortion":
        ts = [A.GaussianBlur(blur_limit=(3, 5), p=1), A.MedianBlur(blur_limit=3, p=1),
              A.MotionBlur(blur_limit=(3, 7), p=1), A.OpticalDistortion(distort_limit=(-0.4, 0.4), p=1)]
    elif name == "noise":
        ts = [A.ISONoise(color_shift=(0.01, 0.06), intensity=(0.2, 0.6), p=1),
              A.GaussNoise(std_range=(0.04, 0.14), p=1),
              A.MultiplicativeNoise(multiplier=(0.75, 1.25), per_channel=True, p=1)]
    elif name == "colour":
        ts = [A.HueSaturationValue(hue_shift_limit=12, sat_shift_limit=35, val_shift_limit=25, p=1),
              A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.35, hue=0.04, p=1)]
    elif name == "dropout":
        ts = [A.PixelDropout(dropout_prob=0.04, p=1),
              A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.1, 0.25),
                              hole_width_range=(0.1, 0.25), fill=0, p=1)]
    elif name == "affine_perspective":
        ts = [A.Affine(shear=(-12, 12), scale=(0.85, 1.15), border_mode=0, fill=0, p=1),
              A.Perspective(scale=(0.03, 0.09), p=1)]
    else:
        raise ValueError(f"unknown augmentation group {name!r}; valid groups: {', '.join(GROUPS)}")
    return A.OneOf(ts, p=1)


def build_pipeline(groups: Sequence[str] = GROUPS, *, p: float | Sequence[float] = 0.5,
                   permute: bool = True, seed: int | None = 0) -> A.Compose:
    """A pipeline that applies each chosen group with probability ``p`` (one per group or one for all).

    Several groups can hit one image (combine); with ``permute`` their order is drawn anew for every image.
    The same ``seed`` gives the same sequence of outputs.
    """
    groups = list(groups)
    if not groups:
        raise ValueError("choose at least one augmentation group")
    probs = [float(p)] * len(groups) if np.isscalar(p) else [float(q) for q in p]
    if len(probs) != len(groups):
        raise ValueError(f"got {len(probs)} probabilities for {len(groups)} groups; give one per group or one for all")
    if any(not 0 <= q <= 1 for q in probs):
        raise ValueError(f"probabilities must lie in [0, 1], got {probs}")
    parts = []
    for g, q in zip(groups, probs):
        t = _group(g)
        t.p = q
        parts.append(t)
    # RandomOrder, not SomeOf: SomeOf sorts the indices it draws, so its order never varies.
    body = A.RandomOrder(parts, n=len(parts), replace=False, p=1) if permute else A.Sequential(parts, p=1)
    return A.Compose([body], seed=seed)


def augment_images(images: np.ndarray, *, groups: Sequence[str] = GROUPS, p: float | Sequence[float] = 0.5,
                   permute: bool = True, seed: int | None = 0) -> np.ndarray:
    """Apply one seeded pipeline to each image in turn.

    Parameters
    ----------
    images : np.ndarray (N, H, W, 3) uint8

    Returns
    -------
    np.ndarray (N, H, W, 3) uint8, a new array.
    """
    pipe = build_pipeline(groups, p=p, permute=permute, seed=seed)
    out = np.empty_like(images)
    for i, im in enumerate(images):
        out[i] = pipe(image=im)["image"]
    return out


def _random_nodes(pipeline) -> list:
    """Every node of a pipeline (composes and transforms), depth first: each holds its own generators."""
    nodes, stack = [], [pipeline]
    while stack:
        node = stack.pop(0)
        if hasattr(node, "random_generator") and hasattr(node, "py_random"):
            nodes.append(node)
            stack[:0] = list(getattr(node, "transforms", []) or [])
    return nodes


def pipeline_state(pipeline) -> list[dict]:
    """The random state of every node of ``pipeline`` (plain ints, tuples and dicts, safe for ``weights_only``).

    albumentations gives each transform its own numpy and Python generators; a resumed training restores them
    all with :func:`restore_pipeline_state` so its augmentations continue exactly where they stopped.
    """
    return [{"numpy": node.random_generator.bit_generator.state, "python": node.py_random.getstate()}
            for node in _random_nodes(pipeline)]


def restore_pipeline_state(pipeline, state: list[dict]) -> None:
    """Put back what :func:`pipeline_state` took from a pipeline built the same way."""
    nodes = _random_nodes(pipeline)
    if len(nodes) != len(state):
        raise ValueError(f"augmentation state has {len(state)} nodes, the pipeline {len(nodes)}: it was saved from "
                         "another pipeline")
    for node, s in zip(nodes, state):
        node.random_generator.bit_generator.state = s["numpy"]
        python = s["python"]
        node.py_random.setstate((python[0], tuple(python[1]), python[2]))
