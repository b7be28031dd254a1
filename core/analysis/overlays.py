"""Explanations drawn onto the image: an attribution heat map in red-yellow (:func:`overlay`), an anchor with
everything else greyed out (:func:`anchor_overlay`). Both return RGB uint8 images, at the 48 x 48 network input by
default or at the image's own size."""
from __future__ import annotations

import cv2
import numpy as np

from core.analysis.anchors import AnchorResult
from core.analysis.explain_checks import check_image
from core.base import config
from core.data.images import resize_to_input

#: Side of the network input, the default size of an overlay.
INPUT = config.INPUT_SIZE
#: Grey that :func:`anchor_overlay` blends everything outside the anchor towards.
OVERLAY_GREY = 160
#: The overlay's colours as a plotly colour scale for a heat map beside the image, with black at 0: the overlay
#: fades a pixel's colour out with its attribution, so "none" shows as the image there and as black here.
RED_YELLOW_SCALE = ((0.0, "rgb(0,0,0)"), (0.25, "rgb(128,0,0)"), (0.5, "rgb(255,0,0)"), (1.0, "rgb(255,255,0)"))


def output_size(size, image: np.ndarray) -> tuple[int, int]:
    if size is None:
        return INPUT, INPUT
    if isinstance(size, str) and size == "image":
        return int(image.shape[0]), int(image.shape[1])
    if (isinstance(size, tuple) and len(size) == 2
            and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in size)):
        return int(size[0]), int(size[1])
    raise ValueError(f"size must be None (network input, {INPUT}x{INPUT}), 'image' (the image's own size) or a "
                     f"(height, width) tuple of positive ints, got {size!r}")


def resize_for_display(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if hw == (INPUT, INPUT):
        return resize_to_input(image)  # exactly what the network saw
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if (h > hw[0] or w > hw[1]) else cv2.INTER_LINEAR
    return cv2.resize(image, (hw[1], hw[0]), interpolation=interp)



def _red_yellow(heat: np.ndarray) -> np.ndarray:
    """Colormap (..., ) in [0, 1] -> (..., 3) float RGB 0-255: dark red at 0, red at 0.5, yellow at 1."""
    r = np.clip(0.5 + heat, 0.0, 1.0)
    g = np.clip(2.0 * heat - 1.0, 0.0, 1.0)
    return np.stack([r, g, np.zeros_like(heat)], axis=-1) * 255.0


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.5,
            size: None | str | tuple[int, int] = None) -> np.ndarray:
    """Blend a red-yellow coloured heatmap onto the image.

    Parameters
    ----------
    image : np.ndarray (H, W, 3) uint8 RGB
    heatmap : np.ndarray (h, w) float in [0, 1], e.g. :attr:`IGResult.heatmap`
    alpha : float in [0, 1]
        Opacity of the colour where the heatmap is 1; it fades in proportion to the heatmap, so pixels with no
        attribution show the image unchanged.
    size : None, "image" or (height, width)
        Output size: None gives the 48 x 48 network input, "image" the image's own size (the heatmap is
        upsampled bilinearly).

    Returns
    -------
    np.ndarray (height, width, 3) uint8
    """
    image = check_image(image)
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2 or heatmap.size == 0 or not np.issubdtype(heatmap.dtype, np.number):
        raise ValueError(f"heatmap must be a 2-D numeric array, got shape {heatmap.shape} dtype {heatmap.dtype}; "
                         "pass IGResult.heatmap")
    heatmap = heatmap.astype(np.float32)
    if not np.isfinite(heatmap).all() or heatmap.min() < 0 or heatmap.max() > 1:
        raise ValueError("heatmap values must be finite and in [0, 1]; pass IGResult.heatmap or normalise "
                         "with h / h.max()")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    hw = output_size(size, image)
    base = resize_for_display(image, hw).astype(np.float32)
    if heatmap.shape != hw:
        heatmap = np.clip(cv2.resize(heatmap, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    weight = (alpha * heatmap)[..., None]
    out = (1.0 - weight) * base + weight * _red_yellow(heatmap)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)



def _check_mask(mask) -> np.ndarray:
    if isinstance(mask, AnchorResult):
        return mask.mask
    if not isinstance(mask, np.ndarray):
        raise ValueError("mask must be a 2-D boolean numpy array (h, w), such as AnchorResult.mask, "
                         f"got {type(mask).__name__}")
    if mask.ndim != 2 or mask.shape[0] < 1 or mask.shape[1] < 1:
        raise ValueError("mask must be a 2-D boolean array (h, w), such as AnchorResult.mask, got shape "
                         f"{mask.shape}")
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind not in "iuf":
        raise ValueError(f"mask must be a boolean array (or 0/1 numbers), got dtype {mask.dtype}")
    if not np.isin(mask, (0, 1)).all():
        raise ValueError(f"mask must be a boolean array (or 0/1 numbers), got {mask.dtype} values other than 0 "
                         "and 1 (a heatmap? threshold it first)")
    return mask.astype(bool)


def anchor_overlay(image: np.ndarray, mask: np.ndarray | AnchorResult, *,
                   size: None | str | tuple[int, int] = None) -> np.ndarray:
    """The image with everything outside the anchor greyed out (desaturated and faded towards light grey).

    Parameters
    ----------
    image : np.ndarray (H, W, 3) uint8 RGB, the explained image
    mask : np.ndarray (h, w) bool
        The anchor's pixels, normally ``AnchorResult.mask`` (48 x 48, network-input pixels); any 2-D mask
        covering the whole image works, upsampled nearest to the output size. 0/1 integer or float arrays
        are taken as boolean. An :class:`AnchorResult` is still accepted (its ``mask`` is used).
    size : None, "image" or (height, width)
        As in :func:`overlay`: None gives 48 x 48, "image" the image's own size.

    Returns
    -------
    np.ndarray (height, width, 3) uint8
        Pixels inside the mask unchanged; the others grey, ``(luma + OVERLAY_GREY) / 2`` in every channel.

    Raises
    ------
    ValueError
        If ``image`` is not (H, W, 3) uint8, ``mask`` is not a 2-D boolean-like array, or ``size`` is invalid.
    """
    image = check_image(image)
    mask = _check_mask(mask)
    hw = output_size(size, image)
    base = resize_for_display(image, hw)
    if mask.shape != hw:
        mask = cv2.resize(mask.astype(np.uint8), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    luma = base.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma
    grey = 0.5 * luma + 0.5 * OVERLAY_GREY
    out = base.copy()
    out[~mask] = np.clip(np.rint(grey[~mask]), 0, 255).astype(np.uint8)[:, None]
    return out
