"""The sixteen transforms of the seven augmentation groups (:mod:`core.data.augment`) on whole batches: tensor
operations, and OpenCV image by image where a loop over a few small images costs less (warps, filters, colour
conversions: albumentations' own OpenCV calls).

Each function takes ``x`` (n, 3, H, W) float32 pixel values in [0, 255] and a ``torch.Generator``, draws one set
of parameters per image from the distribution albumentations 2.0.8 draws them from (same ranges and axes, same
kernel and matrix construction, same borders and interpolation; read from its source), and returns the batch
transformed, clipped to [0, 255] and quantised the way that transform's uint8 output is (truncated for lookup
tables, rounded for OpenCV filters and warps). The random streams are torch's, so the images differ from
albumentations' for the same seed; the distributions are the same. Known simplifications: ISONoise's hue jitter
(a standard deviation below 0.04 degrees) is left out, and a batch's ColorJitter draws one order of its four
operations for all its images (each image still gets a uniformly random order, as in albumentations).
"""
from __future__ import annotations

import functools
import math

import cv2

import numpy as np
import torch
import torch.nn.functional as F

def uniform(gen: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    """(n,) float64 uniform on [low, high)."""
    return torch.rand(n, generator=gen, dtype=torch.float64) * (high - low) + low


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.to(torch.float32).view(-1, 1, 1, 1)


def _floor(x: torch.Tensor) -> torch.Tensor:
    """A uint8 lookup table's output: clipped, then truncated."""
    return x.clamp_(0, 255).floor_()


def _round(x: torch.Tensor) -> torch.Tensor:
    """OpenCV's saturating cast to uint8: rounded, then clipped."""
    return x.round_().clamp_(0, 255)


def grey(x: torch.Tensor) -> torch.Tensor:
    """(n, 1, H, W): OpenCV's RGB -> grey weights."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


# -- colour spaces (OpenCV's uint8 conventions: hue in 0..180, saturation and value in 0..255) -----------------------

def rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(h in [0, 180), s and v in [0, 255]), each (n, H, W): OpenCV's float conversion, image by image (for a few
    small images faster than the same formulas as tensor operations)."""
    hsv = torch.from_numpy(np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2HSV) for im in _hwc(x)]))
    return hsv[..., 0] / 2, hsv[..., 1] * 255, hsv[..., 2]


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`rgb_to_hsv`: (n, 3, H, W) in [0, 255], not yet rounded."""
    hsv = torch.stack([(h % 180) * 2, s / 255, v], -1).to(torch.float32).numpy()
    return torch.from_numpy(np.stack([cv2.cvtColor(im, cv2.COLOR_HSV2RGB) for im in hsv])).permute(0, 3, 1, 2)


def _hwc(x: torch.Tensor) -> np.ndarray:
    """(n, 3, H, W) -> (n, H, W, 3) float32 numpy, for OpenCV."""
    return x.permute(0, 2, 3, 1).contiguous().numpy()


# -- geometry ---------------------------------------------------------------------------------------------------------

def warp(x: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """Each image through its forward homography ``matrix`` (n, 3, 3), pixel coordinates with pixel centres at
    integers: OpenCV's ``warpPerspective`` (bilinear, outside = 0) image by image, as albumentations warps, rounded."""
    _, _, h, w = x.shape
    return _round(_per_image_cv(x, lambda i, im: cv2.warpPerspective(
        im, matrix[i], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)).contiguous())


@functools.lru_cache(maxsize=8)
def _pixels(h: int, w: int) -> np.ndarray:
    """(1, h*w, 3) float64: every pixel's (x, y, 1), row by row."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([xs, ys, np.ones_like(xs)], -1).reshape(1, h * w, 3)


def _sample(x: torch.Tensor, sx: np.ndarray, sy: np.ndarray) -> torch.Tensor:
    """Bilinear samples at source pixel coordinates ``sx``, ``sy`` (n, H*W), zeros outside, rounded."""
    n, _, h, w = x.shape
    grid = np.stack([(2 * sx + 1) / w - 1, (2 * sy + 1) / h - 1], -1).reshape(n, h, w, 2).astype(np.float32)
    return _round(F.grid_sample(x, torch.from_numpy(grid), mode="bilinear", padding_mode="zeros",
                                align_corners=False))


def _draw(gen: torch.Generator, n: int, low: float, high: float) -> np.ndarray:
    return uniform(gen, n, low, high).numpy()


def affine_matrix(n: int, h: int, w: int, *, tx, ty, shear_x, shear_y, scale_x, scale_y, rotate) -> np.ndarray:
    """(n, 3, 3) float64: albumentations' ``Affine`` matrix C T Sh R S C^-1 about the pixel-centre image centre
    (angles in degrees, translations in pixels; each argument a scalar or (n,))."""
    def eye() -> np.ndarray:
        return np.tile(np.eye(3), (n, 1, 1))
    centre, back, t, sh, rot, sc = eye(), eye(), eye(), eye(), eye(), eye()
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    centre[:, 0, 2], centre[:, 1, 2], back[:, 0, 2], back[:, 1, 2] = cx, cy, -cx, -cy
    t[:, 0, 2], t[:, 1, 2] = tx, ty
    sh[:, 0, 1], sh[:, 1, 0] = np.tan(np.deg2rad(shear_x)), np.tan(np.deg2rad(shear_y))
    r = np.deg2rad(np.asarray(rotate, np.float64) % 360)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = np.cos(r), np.sin(r), -np.sin(r), np.cos(r)
    sc[:, 0, 0], sc[:, 1, 1] = scale_x, scale_y
    return centre @ t @ sh @ rot @ sc @ back


def shift_rotate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Affine(translate_percent=(-0.12, 0.12), rotate=(-18, 18), scale=(0.9, 1.1), border 0)."""
    n, _, h, w = x.shape
    tx, ty = np.trunc(_draw(gen, n, -0.12, 0.12) * w), np.trunc(_draw(gen, n, -0.12, 0.12) * h)
    m = affine_matrix(n, h, w, tx=tx, ty=ty, shear_x=0.0, shear_y=0.0, scale_x=_draw(gen, n, 0.9, 1.1),
                      scale_y=_draw(gen, n, 0.9, 1.1), rotate=_draw(gen, n, -18, 18))
    return warp(x, m)


def shear_scale(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Affine(shear=(-12, 12), scale=(0.85, 1.15), border 0): both shear axes, both scales drawn independently."""
    n, _, h, w = x.shape
    m = affine_matrix(n, h, w, tx=0.0, ty=0.0, shear_x=-_draw(gen, n, -12, 12), shear_y=-_draw(gen, n, -12, 12),
                      scale_x=_draw(gen, n, 0.85, 1.15), scale_y=_draw(gen, n, 0.85, 1.15), rotate=0.0)
    return warp(x, m)


def perspective_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(n, 3, 3) homographies taking the quads ``src`` (n, 4, 2) to ``dst`` (n, 4, 2): OpenCV's
    ``getPerspectiveTransform`` on float32 points, as albumentations calls it."""
    return np.stack([cv2.getPerspectiveTransform(a.astype(np.float32), b.astype(np.float32))
                     for a, b in zip(src, dst)])


def perspective(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Perspective(scale=(0.03, 0.09)), keep_size: corners moved inwards by half-normal fractions of the size, then
    (as albumentations does) the warped quad's bounding size stretched back to the image, anchored at the top left."""
    n, _, h, w = x.shape
    s = _draw(gen, n, 0.03, 0.09).reshape(n, 1, 1)
    j = np.abs(torch.randn(n, 4, 2, generator=gen, dtype=torch.float64).numpy() * s) % 0.32
    quad = np.stack([j[:, 0], np.stack([1 - j[:, 1, 0], j[:, 1, 1]], -1), 1 - j[:, 2],
                     np.stack([j[:, 3, 0], 1 - j[:, 3, 1]], -1)], 1) * np.array([w, h], np.float64)
    rect = np.broadcast_to(np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64), (n, 4, 2))
    side = lambda a, b: np.linalg.norm(quad[:, a] - quad[:, b], axis=-1)  # noqa: E731
    mw = np.trunc(np.maximum(side(1, 0), side(2, 3)))
    mh = np.trunc(np.maximum(side(2, 1), side(3, 0)))
    zoom = np.zeros((n, 3, 3))
    zoom[:, 0, 0], zoom[:, 1, 1], zoom[:, 2, 2] = w / mw, h / mh, 1
    return warp(x, zoom @ perspective_matrix(quad, rect))


def optical_distortion(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """OpticalDistortion(distort_limit=(-0.4, 0.4)), camera mode: k1 = k2 = k, focal length = the image size."""
    n, _, h, w = x.shape
    k = _draw(gen, n, -0.4, 0.4).reshape(n, 1)
    pixels = _pixels(h, w)[0]
    u, v = (pixels[:, 0] - (w - 1) / 2) / w, (pixels[:, 1] - (h - 1) / 2) / h
    r2 = u * u + v * v
    f = 1 + k * r2 + k * r2 * r2
    return _sample(x, w * u * f + w / 2, h * v * f + h / 2)


# -- filters --------------------------------------------------------------------------------------------------------

def _per_image_cv(x: torch.Tensor, apply) -> torch.Tensor:
    """``apply(i, image)`` (an OpenCV call on one (H, W, 3) float32 image) on each image: for these few small
    images a loop of OpenCV calls costs less than a grouped convolution's set-up."""
    return torch.from_numpy(np.stack([apply(i, im) for i, im in enumerate(_hwc(x))])).permute(0, 3, 1, 2)


def _filter(x: torch.Tensor, kernels: np.ndarray) -> torch.Tensor:
    """Each image correlated with its own odd square kernel (n, k, k), border reflect-101 (``cv2.filter2D``),
    rounded."""
    kernels = kernels.astype(np.float32)
    return _round(_per_image_cv(x, lambda i, im: cv2.filter2D(im, -1, kernels[i])).contiguous())


def gaussian_blur(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """GaussianBlur(blur_limit=(3, 5)): sigma uniform in [0.5, 3], kernel 3 (1/3) or 5 (2/3)."""
    n = len(x)
    sigma = _draw(gen, n, 0.5, 3.0).reshape(n, 1)
    size = np.where(torch.randint(3, 6, (n,), generator=gen).numpy() == 3, 3, 5).reshape(n, 1)
    i = np.arange(-2, 3, dtype=np.float64).reshape(1, 5)
    taps = np.exp(-0.5 * (i / sigma) ** 2) * (np.abs(i) <= size // 2)
    taps = taps / taps.sum(1, keepdims=True)
    return _filter(x, taps[:, :, None] * taps[:, None, :])


def median_blur(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """MedianBlur(3): the 3 x 3 median per channel, border replicated."""
    return _per_image_cv(x, lambda i, im: cv2.medianBlur(im, 3)).contiguous()


def motion_kernel(size: int, angle: float, direction: float, shift_x: float, shift_y: float) -> np.ndarray:
    """albumentations' motion-blur line (``allow_shifted``), centred in a 7 x 7 kernel that sums to 1. Written out
    rather than calling albumentations' ``create_motion_kernel`` (equal, a test checks): that one costs twice as
    much per image (0.98 against 0.48 ms for 10 images)."""
    c = half = size // 2
    start, end = (-half, half * (1 - abs(direction))) if direction < 0 else (-half * (1 - direction), half)
    t = np.linspace(start, end, size)
    rad = math.radians(angle)
    xs = np.clip(np.round(c + math.cos(rad) * t + shift_x), 0, size - 1).astype(int)
    ys = np.clip(np.round(c + math.sin(rad) * t + shift_y), 0, size - 1).astype(int)
    kernel = np.zeros((7, 7), np.float64)
    off = 3 - half
    kernel[ys + off, xs + off] = 1.0
    return kernel / kernel.sum()


def motion_blur(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """MotionBlur(blur_limit=(3, 7)): a line of 3, 5 or 7 pixels at any angle, shifted by up to a quarter of it."""
    n = len(x)
    size = (torch.randint(0, 3, (n,), generator=gen) * 2 + 3).tolist()
    angle, direction = uniform(gen, n, 0, 360).tolist(), uniform(gen, n, -1, 1).tolist()
    sx, sy = uniform(gen, n, -1, 1).tolist(), uniform(gen, n, -1, 1).tolist()
    kernels = [motion_kernel(k, a, d, u * (k // 2) / 2, v * (k // 2) / 2)
               for k, a, d, u, v in zip(size, angle, direction, sx, sy)]
    return _filter(x, np.stack(kernels))


# -- pixel values ---------------------------------------------------------------------------------------------------

def brightness_contrast(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """RandomBrightnessContrast(0.35, 0.35): ``x * alpha + beta``, alpha in [0.65, 1.35], beta in +-0.35 of 255."""
    n = len(x)
    alpha, beta = 1 + uniform(gen, n, -0.35, 0.35), uniform(gen, n, -0.35, 0.35) * 255
    return _floor(x * _per_image(alpha) + _per_image(beta))


def gamma(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """RandomGamma((60, 160)): ``255 (x / 255) ** g``, g in [0.6, 1.6]."""
    g = uniform(gen, len(x), 0.6, 1.6)
    return _floor(255 * (x / 255).pow(_per_image(g)))


def iso_noise(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """ISONoise(color_shift=(0.01, 0.06), intensity=(0.2, 0.6)): Poisson counts per pixel (mean: intensity times the
    spread of the image's HLS lightness) each lift the lightness by intensity * (1 - L), hue and saturation kept."""
    n = len(x)
    uniform(gen, n, 0.01, 0.06)  # the colour shift: its hue jitter is below 0.04 degrees, left out
    intensity = _per_image(uniform(gen, n, 0.2, 0.6))
    rgb = x / 255
    light = (rgb.max(1, keepdim=True)[0] + rgb.min(1, keepdim=True)[0]) / 2
    lam = intensity * light.std(dim=(1, 2, 3), unbiased=False, keepdim=True)
    counts = torch.poisson(lam.expand_as(light).contiguous(), generator=gen)
    new = (light + counts * intensity * (1 - light)).clamp(0, 1)
    span, new_span = 1 - (2 * light - 1).abs(), 1 - (2 * new - 1).abs()
    ratio = torch.where(span > 0, new_span / torch.where(span > 0, span, torch.ones_like(span)), 0.0)
    return _round((new + ratio * (rgb - light)).clamp(0, 1) * 255)


def gauss_noise(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """GaussNoise(std_range=(0.04, 0.14)): independent noise per pixel and channel, truncated to whole levels."""
    sigma = uniform(gen, len(x), 0.04, 0.14) * 255
    return (x + torch.trunc(torch.randn(x.shape, generator=gen) * _per_image(sigma))).clamp_(0, 255)


def multiplicative_noise(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """MultiplicativeNoise((0.75, 1.25), per_channel): one factor per image and channel."""
    m = uniform(gen, len(x) * 3, 0.75, 1.25).to(torch.float32).view(-1, 3, 1, 1)
    return _floor(x * m)


def hue_saturation_value(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """HueSaturationValue(12, 35, 25): hue shifted by up to 12 (of 180), saturation and value by whole levels up
    to 34 and 24 (grey pixels stay grey)."""
    n = len(x)
    dh, ds, dv = (uniform(gen, n, -lim, lim).to(torch.float32).view(n, 1, 1) for lim in (12, 35, 25))
    h, s, v = rgb_to_hsv(x)
    h = ((h.round() + dh) % 180).floor()
    s = torch.where(s.round() > 0, (s.round() + torch.trunc(ds)).clamp(0, 255), 0.0)
    v = (v + torch.trunc(dv)).clamp(0, 255)
    return _round(hsv_to_rgb(h, s, v))


def color_jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """ColorJitter(brightness=0.25, contrast=0.25, saturation=0.35, hue=0.04), its four operations in a random
    order (one order per call)."""
    n = len(x)
    bf, cf = _per_image(uniform(gen, n, 0.75, 1.25)), _per_image(uniform(gen, n, 0.75, 1.25))
    sf, hf = _per_image(uniform(gen, n, 0.65, 1.35)), uniform(gen, n, -0.04, 0.04).to(torch.float32).view(n, 1, 1)
    for op in torch.randperm(4, generator=gen).tolist():
        if op == 0:
            x = _floor(x * bf)
        elif op == 1:
            mean = grey(x).mean(dim=(1, 2, 3), keepdim=True)
            x = _floor(x * cf + mean * (1 - cf))
        elif op == 2:
            x = _round(x * sf + grey(x) * (1 - sf))
        else:
            h, s, v = rgb_to_hsv(x)
            x = _round(hsv_to_rgb(((h.round() + 180 * hf) % 180).floor(), s, v))
    return x


def pixel_dropout(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """PixelDropout(0.04): each pixel (all its channels) set to 0 with probability 0.04."""
    n, _, h, w = x.shape
    keep = torch.rand(n, 1, h, w, generator=gen) >= 0.04
    return x * keep


def coarse_dropout(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """CoarseDropout(1-3 holes of 10-25 % of the height and width each, fill 0), holes anywhere inside."""
    n, _, h, w = x.shape
    holes = torch.randint(1, 4, (n, 1), generator=gen)
    hh = torch.trunc(h * uniform(gen, n * 3, 0.1, 0.25)).view(n, 3)
    ww = torch.trunc(w * uniform(gen, n * 3, 0.1, 0.25)).view(n, 3)
    y0 = torch.floor(torch.rand(n, 3, generator=gen, dtype=torch.float64) * (h - hh + 1))
    x0 = torch.floor(torch.rand(n, 3, generator=gen, dtype=torch.float64) * (w - ww + 1))
    rows = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w)
    inside = ((rows >= y0[..., None, None]) & (rows < (y0 + hh)[..., None, None])
              & (cols >= x0[..., None, None]) & (cols < (x0 + ww)[..., None, None]))
    active = (torch.arange(3).view(1, 3) < holes)[..., None, None]
    return x * ~(inside & active).any(1, keepdim=True)
