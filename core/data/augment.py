"""The seven augmentation groups as albumentations pipelines: selectable, combinable, permutable, seeded.

Each group is one record (:func:`register_group` beside its builder; :func:`list_groups`, :func:`get_group`), read
by training, dataset builds, curation's variants, the CLI and the pages. :func:`groups_version` is the set's
version: a training's resumable state records it (:data:`UNSTAMPED_VERSION` for states from before).

Training can add the harsher **hardening** groups (:data:`HARDENING`, :func:`hardening_groups`; JPEG / low
resolution, heavy noise, random erasing, glare and dusk) with ``build_pipeline(harden_p=...)``; they never take
part in dataset builds, and :func:`pipeline_version` is the version a hardened training records. With
``harden_at="input"`` they act on the image at the network input size (after the seven groups and the resize)
rather than on the source image, so their pixel-scale damage (8x8 JPEG blocks, per-pixel noise) is what the
network sees, as in the corruption benchmark (:mod:`core.analysis.corruptions`), instead of being smoothed by
the upscaling of a 32 px source.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402

from core.base import config  # noqa: E402
from core.base.registries import Registry  # noqa: E402
from core.data.images import resize_to_input  # noqa: E402


@dataclass(frozen=True)
class Group:
    """One augmentation group: ``build() -> transforms``, one of which a pipeline draws when the group fires."""

    name: str
    label: str
    build: Callable[[], list[A.BasicTransform]]
    description: str
    version: int = 1


#: The group set's version of training states saved before states recorded it (the seven below, version 1).
UNSTAMPED_VERSION = "5de885d0"
#: The groups, in the order the published system listed them (tests may put a toy record in its ``table``).
REGISTRY: Registry[Group] = Registry("augmentation group")


def register_group(name: str, *, label: str, description: str, version: int = 1):
    """Decorator: register ``build() -> transforms`` as augmentation group ``name`` (see :class:`Group`)."""
    def add(build: Callable[[], list[A.BasicTransform]]) -> Callable[[], list[A.BasicTransform]]:
        REGISTRY.add(Group(name, label, build, description, version))
        return build
    return add


def list_groups() -> tuple[str, ...]:
    """Names of the augmentation groups, in their published order."""
    return REGISTRY.names()


def get_group(name: str) -> Group:
    """The record of group ``name``; ValueError listing the valid names for an unknown one."""
    return REGISTRY.get(name)


def groups_version() -> str:
    """Version of the group set (changes when a group is added, removed or has its version raised)."""
    return REGISTRY.version()


# -- the groups ----------------------------------------------------------------------------------------------------

@register_group("brightness_contrast", label="Brightness & contrast",
                description="under- and over-exposure: brightness, contrast and gamma")
def _brightness_contrast() -> list[A.BasicTransform]:
    return [A.RandomBrightnessContrast(brightness_limit=0.35, contrast_limit=0.35, p=1),
            A.RandomGamma(gamma_limit=(60, 160), p=1)]


@register_group("shift_rotate", label="Shift & rotate",
                description="an off-centre, tilted crop: shift up to 12 %, rotate up to 18 degrees, scale 0.9-1.1")
def _shift_rotate() -> list[A.BasicTransform]:
    return [A.Affine(translate_percent=(-0.12, 0.12), rotate=(-18, 18), scale=(0.9, 1.1), border_mode=0, fill=0, p=1)]


@register_group("blur_distortion", label="Blur (Gaussian, median, motion) & optical distortion",
                description="a soft or moving camera and lens distortion")
def _blur_distortion() -> list[A.BasicTransform]:
    return [A.GaussianBlur(blur_limit=(3, 5), p=1), A.MedianBlur(blur_limit=3, p=1),
            A.MotionBlur(blur_limit=(3, 7), p=1), A.OpticalDistortion(distort_limit=(-0.4, 0.4), p=1)]


@register_group("noise", label="Noise (ISO, Gaussian, multiplicative)",
                description="sensor noise of a small or dark camera")
def _noise() -> list[A.BasicTransform]:
    return [A.ISONoise(color_shift=(0.01, 0.06), intensity=(0.2, 0.6), p=1),
            A.GaussNoise(std_range=(0.04, 0.14), p=1),
            A.MultiplicativeNoise(multiplier=(0.75, 1.25), per_channel=True, p=1)]


@register_group("colour", label="Hue, saturation & colour jitter",
                description="faded paint, tinted light and white-balance shifts")
def _colour() -> list[A.BasicTransform]:
    return [A.HueSaturationValue(hue_shift_limit=12, sat_shift_limit=35, val_shift_limit=25, p=1),
            A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.35, hue=0.04, p=1)]


@register_group("dropout", label="Dropout & cutout",
                description="dead pixels and occluding patches (stickers, branches)")
def _dropout() -> list[A.BasicTransform]:
    return [A.PixelDropout(dropout_prob=0.04, p=1),
            A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.1, 0.25), hole_width_range=(0.1, 0.25),
                            fill=0, p=1)]


@register_group("affine_perspective", label="Affine & perspective",
                description="a sign seen from the side: shear, scale and perspective")
def _affine_perspective() -> list[A.BasicTransform]:
    return [A.Affine(shear=(-12, 12), scale=(0.85, 1.15), border_mode=0, fill=0, p=1),
            A.Perspective(scale=(0.03, 0.09), p=1)]


# -- hardening: training only, never in dataset builds ----------------------------------------------------------
# The seven groups above also make the Difficult and Testing datasets, so they stay as they are. These are harsher
# and train only (``build_pipeline(harden_p=...)``, the trainer's ``--harden-p``): against the corruptions a
# street camera adds (JPEG, low resolution, heavy noise, occluding stickers, glare and dusk). They are
# albumentations' own transforms, not the corruption benchmark's code (``core.analysis.corruptions``).

#: Training-only hardening groups (see above); not in :func:`list_groups`.
HARDENING: Registry[Group] = Registry("hardening group")


def _harden(name: str, *, label: str, description: str, version: int = 1):
    def add(build: Callable[[], list[A.BasicTransform]]) -> Callable[[], list[A.BasicTransform]]:
        HARDENING.add(Group(name, label, build, description, version))
        return build
    return add


class RgbJpeg(A.ImageCompression):
    """JPEG as a camera or a browser writes it: the image's channels are RGB, so its red goes to the full-resolution
    luminance at 0.299. albumentations 2.0.8 hands the RGB array to OpenCV, which reads it as BGR: red then
    weighs 0.114 and most of a red sign's rim lands in the subsampled, coarsely quantised chroma."""

    def apply(self, img: np.ndarray, quality: int, image_type: str, **params) -> np.ndarray:
        bgr = np.ascontiguousarray(img[..., ::-1])
        return np.ascontiguousarray(super().apply(bgr, quality, image_type, **params)[..., ::-1])


# version 2 (2026-12-04): the JPEG is RgbJpeg's; version 1 compressed the channels swapped (see RgbJpeg)
@_harden("compression", label="JPEG & low resolution", description="JPEG quality 5-50, or downscaled to 30-70 %",
         version=2)
def _compression() -> list[A.BasicTransform]:
    return [RgbJpeg(compression_type="jpeg", quality_range=(5, 50), p=1),
            A.Downscale(scale_range=(0.3, 0.7), p=1)]


@_harden("heavy_noise", label="Heavy noise", description="shot noise, strong Gaussian noise, salt and pepper")
def _heavy_noise() -> list[A.BasicTransform]:
    return [A.ShotNoise(scale_range=(0.05, 0.4), p=1), A.GaussNoise(std_range=(0.08, 0.2), p=1),
            A.SaltAndPepper(amount=(0.01, 0.1), p=1)]


@_harden("erasing", label="Random erasing", description="one patch of 4-15 % of the image in a random colour")
def _erasing() -> list[A.BasicTransform]:
    return [A.Erasing(scale=(0.04, 0.15), ratio=(0.5, 2.0), fill="random_uniform", p=1)]


@_harden("exposure", label="Glare & dusk", description="brightness shifted by up to half the range")
def _exposure() -> list[A.BasicTransform]:
    return [A.RandomBrightnessContrast(brightness_limit=(-0.5, 0.5), contrast_limit=(-0.2, 0.2), p=1)]


def hardening_groups() -> tuple[str, ...]:
    """Names of the training-only hardening groups."""
    return HARDENING.names()


#: Where the hardening groups act: on the source image, among the seven groups (the original way), or on the
#: image already resized to the network input, after them.
HARDEN_AT = ("source", "input")


def pipeline_version(harden_p: float = 0.0, harden_at: str = "source") -> str:
    """Version of a training pipeline's group set: :func:`groups_version`, plus the hardening set's when used
    (and where it acts, when not on the source image)."""
    if harden_p <= 0:
        return groups_version()
    return groups_version() + f"+{HARDENING.version()}" + ("@input" if harden_at == "input" else "")


class ToInputSize(A.ImageOnlyTransform):
    """Resize to the network input exactly as inference does (:func:`core.data.images.resize_to_input`)."""

    def __init__(self, size: int = config.INPUT_SIZE, p: float = 1.0):
        super().__init__(p=p)
        self.size = size

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        return resize_to_input(img, self.size)


def _group(record: Group, p: float) -> A.BasicTransform:
    """One group: a OneOf over its transforms, applied with probability ``p``."""
    return A.OneOf(record.build(), p=p)


def build_pipeline(groups: Sequence[str] | None = None, *, p: float | Sequence[float] = 0.5,
                   permute: bool = True, seed: int | None = 0, harden_p: float = 0.0,
                   hardening: Sequence[str] | None = None, harden_at: str = "source") -> A.Compose:
    """A pipeline that applies each chosen group (default: all) with probability ``p`` (one per group or one for
    all), and with ``harden_p`` > 0 each training-only hardening group too (``hardening``, default
    :func:`hardening_groups`, in that order): among the groups on the source image (``harden_at="source"``), or
    after them on the image resized to the network input (``"input"``; the pipeline then outputs that size).

    Several groups can hit one image (combine); with ``permute`` their order is drawn anew for every image.
    The same ``seed`` gives the same sequence of outputs.
    """
    if not 0 <= harden_p <= 1:
        raise ValueError(f"the hardening probability must lie in [0, 1], got {harden_p}")
    groups = list(list_groups() if groups is None else groups)
    if not groups:
        raise ValueError("choose at least one augmentation group")
    probs = [float(p)] * len(groups) if np.isscalar(p) else [float(q) for q in p]
    if len(probs) != len(groups):
        raise ValueError(f"got {len(probs)} probabilities for {len(groups)} groups; give one per group or one for all")
    if any(not 0 <= q <= 1 for q in probs):
        raise ValueError(f"probabilities must lie in [0, 1], got {probs}")
    if harden_at not in HARDEN_AT:
        raise ValueError(f"harden_at must be one of {', '.join(HARDEN_AT)}, got {harden_at!r}")
    parts = [_group(get_group(g), q) for g, q in zip(groups, probs)]
    hard = [_group(HARDENING.get(g), float(harden_p))
            for g in (hardening_groups() if hardening is None else hardening)] if harden_p > 0 else []
    if harden_at == "source" or not hard:
        return A.Compose([_body(parts + hard, permute)], seed=seed)
    return A.Compose([_body(parts, permute), ToInputSize(), _body(hard, permute)], seed=seed)


def _body(parts: list[A.BasicTransform], permute: bool) -> A.BasicTransform:
    # RandomOrder, not SomeOf: SomeOf sorts the indices it draws, so its order never varies.
    return A.RandomOrder(parts, n=len(parts), replace=False, p=1) if permute else A.Sequential(parts, p=1)


def augment_images(images: np.ndarray, *, groups: Sequence[str] | None = None, p: float | Sequence[float] = 0.5,
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
