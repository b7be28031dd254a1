"""The one image loader and the one preprocessing function.

Training, evaluation, prediction and explanations all go through :func:`preprocess`, so they cannot disagree.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from core.base import config

# Refuse, rather than warn about, images above our own pixel limit; we check the header ourselves first.
Image.MAX_IMAGE_PIXELS = config.MAX_IMAGE_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False
cv2.setNumThreads(1)

#: Per-channel mean and std of GTSRB train (RGB, 0-1 scale), applied in :func:`preprocess`.
MEAN = np.array([0.340, 0.312, 0.321], dtype=np.float32)
STD = np.array([0.272, 0.251, 0.257], dtype=np.float32)
SUPPORTED_FORMATS = ("PNG", "JPEG", "PPM", "WEBP", "BMP", "GIF", "TIFF")


class ImageError(ValueError):
    """An input that is not a usable image; the message names the file and what is wrong."""


def load_image(source: str | os.PathLike | bytes, *, name: str | None = None,
               max_pixels: int = config.MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an image file or bytes into an RGB array.

    Parameters
    ----------
    source : path or bytes
    name : str, optional
        Shown in error messages (defaults to the path).
    max_pixels : int
        Images with more pixels are refused from their header, before the pixels are decoded.

    Returns
    -------
    np.ndarray (H, W, 3) uint8, RGB, upright (EXIF orientation applied). Alpha is composited on white; greyscale
    and palette images become RGB.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "upload")
    if isinstance(source, bytes):
        if len(source) == 0:
            raise ImageError(f"{label}: the file is empty (0 bytes)")
        fp = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{label}: no such file")
        if path.stat().st_size == 0:
            raise ImageError(f"{label}: the file is empty (0 bytes)")
        fp = path
    try:
        with Image.open(fp) as im:
            if im.format not in SUPPORTED_FORMATS:
                raise ImageError(f"{label}: unsupported format {im.format}; use one of {', '.join(SUPPORTED_FORMATS)}")
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(f"{label}: image is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,}; "
                                 "crop or downscale it first")
            if w < 1 or h < 1:
                raise ImageError(f"{label}: image has no pixels ({w}x{h})")
            im.load()
            # A phone photo stores its pixels sideways plus an EXIF orientation tag: show it (and measure boxes on
            # it) the way every viewer does.
            return _to_rgb(ImageOps.exif_transpose(im))
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{label}: image too large, above the limit of {max_pixels:,} pixels ({e}); "
                         "crop or downscale it first") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image file (or an unknown format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{label}: the image is corrupt or truncated ({e})") from None


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        arr = (255 * arr / max(arr.max(), 1)).astype(np.uint8)
        im = Image.fromarray(arr)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def pixel_hash(image: np.ndarray) -> str:
    """Hash of an image's pixels and shape: equal for the same image whatever file format carried it."""
    return hashlib.sha256(f"{image.shape}".encode() + np.ascontiguousarray(image).tobytes()).hexdigest()[:32]


def encode_png(image: np.ndarray) -> bytes:
    """Deterministic PNG bytes for an (H, W, 3) uint8 RGB array."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def resize_to_input(image: np.ndarray, size: int = config.INPUT_SIZE) -> np.ndarray:
    """Resize one (H, W, 3) uint8 image to (size, size, 3): area averaging to shrink, bilinear to enlarge."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def preprocess(images: np.ndarray | list[np.ndarray], *, size: int = config.INPUT_SIZE) -> torch.Tensor:
    """Turn RGB uint8 images into the network input.

    Parameters
    ----------
    images : np.ndarray (N, H, W, 3) or (H, W, 3) uint8, or a list of (H_i, W_i, 3) arrays of any sizes

    Returns
    -------
    torch.Tensor (N, 3, size, size) float32, normalised with :data:`MEAN` and :data:`STD`.
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    if len(images) == 0:
        return torch.empty((0, 3, size, size), dtype=torch.float32)
    return normalise(resize_batch(images, size)).contiguous()


def resize_batch(images: np.ndarray | list[np.ndarray], size: int = config.INPUT_SIZE) -> np.ndarray:
    """(N, size, size, 3) uint8: every image resized to the network input (no copy of a batch already that size)."""
    if len(images) == 0:
        return np.empty((0, size, size, 3), np.uint8)
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1:3] == (size, size):
        return np.ascontiguousarray(images, dtype=np.uint8)
    return np.stack([resize_to_input(np.asarray(im, dtype=np.uint8), size) for im in images])


def normalise(batch: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float32 normalised with :data:`MEAN` and :data:`STD`, in channels-last
    memory layout (a view of the pixels' own order: no transpose copy; the layout fast CPU convolutions want)."""
    if not batch.flags.writeable:  # a read-only array (a cached split): torch wants to be allowed to write
        batch = batch.copy()
    # Scaled in the pixels' own (N, S, S, 3) order, the channel constants broadcast along the contiguous last axis:
    # the same operations and values as on the (N, 3, S, S) view, in half the time (1.6 -> 0.9 ms for 128 x 48 px).
    x = torch.from_numpy(batch).float().div_(255.0)
    x.sub_(torch.from_numpy(MEAN)).div_(torch.from_numpy(STD))
    return x.permute(0, 3, 1, 2)


def deprocess(x: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`preprocess` for display: (N, 3, S, S) tensor -> (N, S, S, 3) uint8."""
    mean = torch.from_numpy(MEAN).view(1, 3, 1, 1)
    std = torch.from_numpy(STD).view(1, 3, 1, 1)
    arr = (x.detach().cpu() * std + mean).clamp(0, 1).mul(255).round().byte()
    return arr.permute(0, 2, 3, 1).numpy()
