"""Argument checks at the public edge of the explanation functions (:mod:`core.analysis.attributions`,
:mod:`core.analysis.anchors`, :mod:`core.analysis.overlays`): each raises ``ValueError`` naming the argument, what
it got and the fix."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}; "
                         "load files with core.data.images.load_image")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0-255), got {image.dtype}; convert with "
                         "np.clip(x, 0, 255).astype(np.uint8) (multiply by 255 first if it is 0-1 float)")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must have shape (H, W, 3) RGB, got {image.shape}; greyscale or RGBA images "
                         "should go through core.data.images.load_image")
    return image


def check_probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not (0.0 < value < 1.0):
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum \
            or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)  # results are frozen dataclasses; keep their arrays frozen too
    return a

