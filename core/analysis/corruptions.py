"""A corruption benchmark in the style of ImageNet-C (Hendrycks & Dietterich 2019), built for sign images.

Twelve corruptions in six families (noise, blur, colour, contrast and light, compression, geometry and
occlusion), each at five severities, applied at the network's input size (48 px) so one severity means the same
on every dataset. Everything is seeded by (seed, corruption, severity): every model meets the very same corrupted
images. :func:`robustness` measures a model on them: accuracy per corruption and severity, their mean (mean
corruption accuracy, mCA) and the clean accuracy beside it.

The corruptions overlap in kind with the training augmentations (:mod:`core.data.augment`) as ImageNet-C overlaps
with common augmentations; their parameters and implementations are this module's own.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from core.base import config
from core.data.images import resize_batch
from core.learning.inference import predict_proba
from core.base.progress import ProgressFn, StopFn, check, silent

SEVERITIES = (1, 2, 3, 4, 5)
Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gaussian_noise(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (0.04, 0.06, 0.08, 0.11, 0.15)[s - 1] * 255
    return _clip(batch + rng.normal(0.0, sigma, batch.shape))


def shot_noise(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    photons = (60, 25, 12, 6, 3)[s - 1]
    return _clip(rng.poisson(batch / 255.0 * photons) / photons * 255)


def impulse_noise(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    amount = (0.01, 0.02, 0.04, 0.07, 0.10)[s - 1]
    out = batch.copy()
    hit = rng.random(batch.shape) < amount
    out[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255)
    return out


def gaussian_blur(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (0.6, 0.9, 1.2, 1.6, 2.0)[s - 1]
    return np.stack([cv2.GaussianBlur(im, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) for im in batch])


def motion_blur(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    length = (3, 5, 7, 9, 11)[s - 1]
    out = np.empty_like(batch)
    for i, im in enumerate(batch):  # a line kernel at a random angle per image
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
        out[i] = cv2.filter2D(im, -1, kernel / max(kernel.sum(), 1e-6), borderType=cv2.BORDER_REFLECT)
    return out


def _hsv_map(batch: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``fn`` to each image in HSV (float: H in degrees 0-360, S and V in 0-1)."""
    out = np.empty_like(batch)
    for i, im in enumerate(batch):
        hsv = cv2.cvtColor(im.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
        out[i] = _clip(cv2.cvtColor(fn(hsv), cv2.COLOR_HSV2RGB) * 255)
    return out


def brightness(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Brighter or darker (V up or down, at random per image): signs are met in glare and at dusk."""
    delta = (0.1, 0.2, 0.3, 0.4, 0.5)[s - 1]
    signs = np.where(rng.random(len(batch)) < 0.5, 1.0, -1.0)
    out = np.empty_like(batch)
    for i, im in enumerate(batch):
        hsv = cv2.cvtColor(im.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
        hsv[..., 2] = np.clip(hsv[..., 2] + signs[i] * delta, 0, 1)
        out[i] = _clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255)
    return out


def contrast(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.7, 0.55, 0.4, 0.3, 0.2)[s - 1]
    mean = batch.mean(axis=(1, 2, 3), keepdims=True)
    return _clip((batch - mean) * c + mean)


def saturate(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Washed-out colour (faded paint, haze)."""
    k = (0.7, 0.5, 0.35, 0.2, 0.1)[s - 1]
    return _hsv_map(batch, lambda hsv: np.dstack([hsv[..., 0], hsv[..., 1] * k, hsv[..., 2]]))


def colour_shift(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """A white-balance error: each channel scaled by its own factor (a colour cast)."""
    spread = (0.08, 0.14, 0.2, 0.27, 0.35)[s - 1]
    gains = 1.0 + rng.uniform(-spread, spread, (len(batch), 1, 1, 3))
    return _clip(batch * gains)


def jpeg(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    quality = (40, 25, 15, 10, 6)[s - 1]
    out = np.empty_like(batch)
    for i, im in enumerate(batch):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(im, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out[i] = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


def pixelate(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    size = batch.shape[1]
    small = max(4, round(size * (0.7, 0.55, 0.45, 0.35, 0.27)[s - 1]))
    return np.stack([cv2.resize(cv2.resize(im, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                                interpolation=cv2.INTER_NEAREST) for im in batch])


def rotate(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """A small tilt, to either side; the border repeats the edge (as a crop from a larger photo would show)."""
    limit = (5, 10, 15, 20, 25)[s - 1]
    size = batch.shape[1]
    out = np.empty_like(batch)
    for i, im in enumerate(batch):
        angle = float(rng.uniform(0.6, 1.0) * limit * rng.choice((-1, 1)))
        rot = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, 1.0)
        out[i] = cv2.warpAffine(im, rot, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def occlusion(batch: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """A flat-coloured square (a sticker, a branch, snow) at a random place inside the image."""
    side = round(batch.shape[1] * (0.15, 0.2, 0.25, 0.3, 0.35)[s - 1])
    size = batch.shape[1]
    out = batch.copy()
    for i in range(len(batch)):
        y, x = rng.integers(0, size - side + 1, 2)
        out[i, y:y + side, x:x + side] = rng.integers(0, 256, 3, dtype=np.uint8)
    return out


#: Family -> corruptions, in the order reports list them.
FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("gaussian_blur", "motion_blur"),
    "colour": ("saturate", "colour_shift"),
    "light and contrast": ("brightness", "contrast"),
    "compression": ("jpeg", "pixelate"),
    "geometry and occlusion": ("rotate", "occlusion"),
}
CORRUPTIONS: dict[str, Corruption] = {name: globals()[name] for names in FAMILIES.values() for name in names}


def _seed(seed: int, name: str, severity: int) -> np.random.Generator:
    return np.random.default_rng([seed, list(CORRUPTIONS).index(name), severity])


def corrupt(images: np.ndarray | list[np.ndarray], name: str, severity: int, *, seed: int = 0) -> np.ndarray:
    """``images`` at the network input size with corruption ``name`` at ``severity`` (1-5); same seed, same output.

    Returns (N, 48, 48, 3) uint8, a new array.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    batch = resize_batch(images, config.INPUT_SIZE)
    if len(batch) == 0:
        return batch.copy()
    return CORRUPTIONS[name](batch, severity, _seed(seed, name, severity))


def robustness(model, images: np.ndarray, targets: np.ndarray, *, names: tuple[str, ...] | None = None,
               severities: tuple[int, ...] = SEVERITIES, seed: int = 0, progress: ProgressFn | None = None,
               should_stop: StopFn | None = None) -> dict:
    """Accuracy of ``model`` on clean and corrupted copies of ``images``.

    ``targets`` are class *indices* of the model's output (not class ids). Returns ``{"n", "clean", "by_corruption":
    {name: {severity: acc}}, "mean_by_corruption", "mean_by_family", "mca", "relative_mca"}`` with accuracies in
    [0, 1]; mCA is the mean over every corruption and severity, relative mCA that divided by the clean accuracy.
    """
    names = tuple(names or CORRUPTIONS)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; valid: {', '.join(CORRUPTIONS)}")
    if len(targets) == 0:
        raise ValueError("no images to measure robustness on")
    progress = progress or silent
    base = resize_batch(images, config.INPUT_SIZE)
    accuracy = lambda x: float((predict_proba(model, x).argmax(1) == targets).mean())  # noqa: E731
    clean = accuracy(base)
    table: dict[str, dict[int, float]] = {}
    total, done = len(names) * len(severities), 0
    for name in names:
        table[name] = {}
        for s in severities:
            check(should_stop, "robustness measurement cancelled")
            table[name][s] = accuracy(corrupt(base, name, s, seed=seed))
            done += 1
            progress(done / total, f"{name} severity {s}: {table[name][s]:.2%}")
    per = {n: float(np.mean(list(v.values()))) for n, v in table.items()}
    families = {f: float(np.mean([per[n] for n in ns if n in per])) for f, ns in FAMILIES.items()
                if any(n in per for n in ns)}
    mca = float(np.mean(list(per.values())))
    return {"n": int(len(targets)), "seed": seed, "severities": list(severities), "clean": clean,
            "by_corruption": table, "mean_by_corruption": per, "mean_by_family": families, "mca": mca,
            "relative_mca": mca / clean if clean > 0 else float("nan")}
