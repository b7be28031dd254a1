"""Seeded street scenes with ground truth: GTSRB sign crops pasted onto real photos without signs.

There is no sign-detection data offline (GTSDB is not here), so scenes are made: each sign is cut out of its GTSRB
crop with its class's shape mask (circle, triangle, inverted triangle, diamond, octagon; the crop's ROI says where
the sign is), scaled to 16-160 px, warped in perspective, blurred, matched to the brightness of the spot it lands
on, sometimes partly occluded, and the whole scene is JPEG-compressed. Hard negatives (red and blue discs, rings
of other colours, brake-light pairs, text, coloured boards) are drawn in too, so a detector learns that red and
round is not enough.

Splits never share signs or photos: ``train`` and ``val`` scenes use GTSRB *train* crops (disjoint tracks: val
holds every class's held-out tracks, :func:`core.data.built.split_by_track`) on :data:`TRAIN_BACKGROUNDS`;
``test`` scenes use GTSRB *test* crops on :data:`TEST_BACKGROUNDS` (or a user folder). The same seed gives the same
scene, pixel for pixel.
"""
from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.base import config
from core.data.built import split_by_track
from core.data.importers import load_npz, track_from_kaggle_path
from core.data.images import load_image
from core.detection.boxes import iou

SPLITS = ("train", "val", "test")
#: GTSDB's four detection categories, by GTSRB class id (the competition's grouping).
CATEGORIES = {
    "prohibitory": (0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 15, 16),
    "danger": (11, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31),
    "mandatory": (33, 34, 35, 36, 37, 38, 39, 40),
    "other": (6, 12, 13, 14, 17, 32, 41, 42),
}
CATEGORY_OF = {c: name for name, ids in CATEGORIES.items() for c in ids}
#: The outline of each GTSRB class's sign (everything not listed is round).
SHAPE_OF = {**{c: "triangle" for c in CATEGORIES["danger"]}, 12: "diamond", 13: "inverted_triangle", 14: "octagon"}
SHAPES = ("circle", "triangle", "inverted_triangle", "diamond", "octagon")
#: Pasted sign sizes (the sign's own box, long side), pixels.
MIN_SIGN, MAX_SIGN = 16, 160
#: Where the sign sits in a crop whose ROI is unknown (GTSRB keeps a margin of about 10 % around the sign).
DEFAULT_ROI = (0.1, 0.1, 0.9, 0.9)
#: Real photos without traffic signs, from scikit-image (``skimage.data``) and scikit-learn
#: (``load_sample_images``); none of them is downloaded at run time. Train and test never share a photo.
TRAIN_BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "brick", "grass", "gravel",
                     "immunohistochemistry", "hubble_deep_field")
TEST_BACKGROUNDS = ("china", "flower", "camera", "clock", "coins", "page", "moon", "horse")
#: The share of a background photo's width a scene shows (log-uniform in this range). Training patches show
#: much less (:data:`PATCH_VIEW`): a 192 px patch is a window of a full scene, at any pyramid level, so its
#: textures must have the scale they have there (a whole photo squeezed into a patch makes galaxies sign-sized).
VIEW = (0.45, 1.0)
PATCH_VIEW = (0.06, 1.0)
#: Probability that a scene gets hard negatives, and that a sign is partly occluded.
P_NEGATIVES, P_OCCLUDED = 0.6, 0.2


@dataclass
class Scene:
    """A made scene: the image and, for each sign in it, its box, GTSRB class and GTSDB category."""
    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (N, 4) float x0, y0, x1, y1 in pixels
    class_ids: np.ndarray  # (N,) int
    categories: tuple[str, ...]


@dataclass(frozen=True)
class SignCrops:
    """Sign crops to paste: images, labels and where the sign lies in each crop (fractions of width/height)."""
    images: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int
    roi: np.ndarray  # (N, 4) float fractions x0, y0, x1, y1

    def __len__(self) -> int:
        return len(self.labels)


def shared_data() -> Path:
    """The shared data folder beside the project (``../shared/data``)."""
    return config.PROJECT_ROOT.parent / "shared" / "data"


@functools.lru_cache(maxsize=4)
def sign_crops(split: str, *, source: str | None = None) -> SignCrops:
    """The crops a split's scenes paste: GTSRB train (train/val by track) or test from ``source`` (the shared data
    folder), or the shipped sample dataset's images when that folder is absent (tests on a bare clone)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    root = Path(source) if source else shared_data()
    npz = root / "gtsrb" / ("gtsrb_test_32.npz" if split == "test" else "gtsrb_train_32.npz")
    if not npz.is_file():
        return _sample_crops(split)
    d = load_npz(npz, ("images", "labels", "orig_size_wh", "roi_x1y1x2y2", "paths"))
    wh = d["orig_size_wh"].astype(np.float64)
    roi = d["roi_x1y1x2y2"].astype(np.float64) / np.concatenate([wh, wh], axis=1)
    idx = np.arange(len(d["labels"]))
    if split != "test":
        train_idx, val_idx = split_by_track(d["labels"], [track_from_kaggle_path(p) for p in d["paths"]], seed=0)
        idx = train_idx if split == "train" else val_idx
    return SignCrops(d["images"][idx], d["labels"][idx].astype(np.int64), np.clip(roi[idx], 0, 1))


def _sample_crops(split: str) -> SignCrops:
    root = config.SAMPLE_DIR / "datasets" / "Sample48"
    with open(root / "index.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    images = np.stack([load_image(root / r["file"]) for r in rows])
    return SignCrops(images, np.array([int(r["class_id"]) for r in rows]), np.tile(DEFAULT_ROI, (len(rows), 1)))


@functools.lru_cache(maxsize=None)
def _builtin_photo(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image  # noqa: PLC0415 - heavy import, only when used
        return load_sample_image(f"{name}.jpg")
    import skimage.data  # noqa: PLC0415 - heavy import, only when used
    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def backgrounds(split: str, *, folder: str | Path | None = None) -> list[np.ndarray]:
    """The sign-free photos a split's scenes are made on: the built-in set, or every image in ``folder``."""
    if folder is not None:
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
        if not files:
            raise ValueError(f"{folder}: no .jpg/.jpeg/.png/.webp photos to use as backgrounds")
        return [load_image(p) for p in files]
    names = TEST_BACKGROUNDS if split == "test" else TRAIN_BACKGROUNDS
    return [_builtin_photo(n) for n in names]


class _Painter:
    """Draws one scene with a seeded generator; each step is a small method so the recipe reads top to bottom."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], crops: SignCrops, photos: list[np.ndarray],
                 view: tuple[float, float] = VIEW):
        self.rng, self.size, self.crops, self.photos, self.view = rng, size, crops, photos, view

    def background(self) -> np.ndarray:
        rng, (w, h) = self.rng, self.size
        photo = self.photos[rng.integers(len(self.photos))]
        ph, pw = photo.shape[:2]
        scale = float(np.exp(rng.uniform(np.log(self.view[0]), np.log(self.view[1]))))
        cw, ch = max(16, int(pw * scale)), max(16, int(ph * scale))
        cw, ch = min(cw, pw), min(ch, int(cw * h / w) if int(cw * h / w) <= ph else ph)
        x0, y0 = rng.integers(0, pw - cw + 1), rng.integers(0, ph - ch + 1)
        image = cv2.resize(photo[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            image = image[:, ::-1]
        gain, bias = rng.uniform(0.7, 1.2), rng.uniform(-20, 20)
        return np.clip(image.astype(np.float32) * gain + bias, 0, 255)

    def negatives(self, image: np.ndarray) -> None:
        rng, (w, h) = self.rng, self.size
        for _ in range(rng.integers(1, 4)):
            kind = rng.choice(["disc", "ring", "lights", "text", "board"])
            r = int(rng.uniform(6, max(7.0, min(40.0, min(w, h) / 3))))  # fits small training patches too
            cx, cy = int(rng.uniform(r, w - r)), int(rng.uniform(r, h - r))
            red = (int(200 + rng.integers(0, 55)), int(rng.integers(0, 60)), int(rng.integers(0, 60)))
            blue = (int(rng.integers(0, 60)), int(rng.integers(40, 110)), int(150 + rng.integers(0, 105)))
            colour = red if rng.random() < 0.5 else blue
            if kind == "disc":
                cv2.circle(image, (cx, cy), r, colour, -1, cv2.LINE_AA)
            elif kind == "ring":  # rings of colours no sign uses, or red rings that are not round
                other = tuple(int(v) for v in rng.integers(0, 256, 3))
                cv2.ellipse(image, (cx, cy), (r, max(3, int(r * rng.uniform(0.3, 0.6)))), float(rng.uniform(0, 180)),
                            0, 360, other if rng.random() < 0.5 else colour, max(2, r // 5), cv2.LINE_AA)
            elif kind == "lights":  # a car's brake lights: two red blobs side by side
                gap = int(r * rng.uniform(2, 5))
                for dx in (-gap // 2, gap // 2):
                    cv2.ellipse(image, (cx + dx, cy), (max(3, r // 2), max(2, r // 3)), 0, 0, 360, red, -1, cv2.LINE_AA)
            elif kind == "text":
                word = "".join(rng.choice(list("ABCDEFGHKLMNOPRSTUVW0123456789"), size=int(rng.integers(3, 8))))
                scale = rng.uniform(0.4, 1.6)
                ink = np.zeros((h, w), np.uint8)  # putText draws on 8-bit images only: draw a mask, then paint
                cv2.putText(ink, word, (int(rng.uniform(0, w * 0.7)), cy), cv2.FONT_HERSHEY_SIMPLEX, scale, 255,
                            max(1, int(scale * 2)), cv2.LINE_AA)
                a = ink[..., None].astype(np.float32) / 255
                image[:] = image * (1 - a) + a * rng.integers(0, 256, 3).astype(np.float32)
            else:
                x1, y1 = min(w - 1, cx + int(r * rng.uniform(1, 3))), min(h - 1, cy + int(r * rng.uniform(0.5, 2)))
                cv2.rectangle(image, (cx, cy), (x1, y1), colour, -1)

    def sign(self, image: np.ndarray, placed: list[np.ndarray], *, size_range: tuple[float, float]) -> tuple | None:
        rng, (w, h) = self.rng, self.size
        k = int(rng.integers(len(self.crops)))
        lo, hi = size_range[0], min(size_range[1], 0.9 * min(w, h))
        if hi < lo:
            return None
        s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        for _ in range(10):  # find a spot that does not cover another sign
            x0, y0 = rng.uniform(0, w - s), rng.uniform(0, h - s)
            box = np.array([x0, y0, x0 + s, y0 + s])
            if not placed or _max_overlap(box, placed) < 0.05:
                break
        else:
            return None
        box = paste_sign(image, self.crops.images[k], self.crops.roi[k], self.crops.labels[k], box, rng)
        if box is None:
            return None
        if rng.random() < P_OCCLUDED:
            self.occlude(image, box)
        placed.append(box)
        return box, int(self.crops.labels[k])

    def occlude(self, image: np.ndarray, box: np.ndarray) -> None:
        """Cover up to a quarter of the sign with a bar (a pole, a branch) or a blob of background."""
        rng = self.rng
        x0, y0, x1, y1 = box
        bw, bh = x1 - x0, y1 - y0
        colour = tuple(float(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:  # vertical or horizontal bar
            t = max(2.0, rng.uniform(0.1, 0.25) * bw)
            if rng.random() < 0.5:
                xa = rng.uniform(x0, x1 - t)
                cv2.rectangle(image, (int(xa), int(y0 - bh)), (int(xa + t), int(y1 + bh)), colour, -1)
            else:
                ya = rng.uniform(y0, y1 - t)
                cv2.rectangle(image, (int(x0 - bw), int(ya)), (int(x1 + bw), int(ya + t)), colour, -1)
        else:  # a blob over a corner
            cx, cy = (x0, x1)[rng.integers(2)], (y0, y1)[rng.integers(2)]
            cv2.circle(image, (int(cx), int(cy)), int(max(2, 0.35 * min(bw, bh))), colour, -1, cv2.LINE_AA)


def _max_overlap(box: np.ndarray, others: list[np.ndarray]) -> float:
    return float(iou(box[None], np.stack(others)).max())


def shape_mask(shape: str, size: int) -> np.ndarray:
    """``(size, size)`` float32 mask in [0, 1] of a sign outline filling the square (anti-aliased edges)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")
    up = 4  # draw 4x larger, then shrink: smooth edges
    n = size * up
    mask = np.zeros((n, n), np.uint8)
    if shape == "circle":
        cv2.circle(mask, (n // 2, n // 2), n // 2 - 1, 255, -1)
    else:
        if shape == "triangle":
            pts = [(0, n - 1), (n // 2, int(n * 0.06)), (n - 1, n - 1)]
        elif shape == "inverted_triangle":
            pts = [(0, 0), (n - 1, 0), (n // 2, int(n * 0.94))]
        elif shape == "diamond":
            pts = [(n // 2, 0), (n - 1, n // 2), (n // 2, n - 1), (0, n // 2)]
        else:  # octagon
            a = np.deg2rad(22.5 + 45 * np.arange(8))
            pts = [(int(n / 2 + (n / 2 - 1) * np.cos(t) / np.cos(np.pi / 8)),
                    int(n / 2 + (n / 2 - 1) * np.sin(t) / np.cos(np.pi / 8))) for t in a]
        cv2.fillPoly(mask, [np.array(pts, np.int32)], 255)
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def paste_sign(image: np.ndarray, crop: np.ndarray, roi: np.ndarray, class_id: int, box: np.ndarray,
               rng: np.random.Generator) -> np.ndarray | None:
    """Paste the sign of ``crop`` (its ``roi`` fractions) into float ``image`` at ``box`` (in place), warped,
    blurred and lit like the spot. Returns the pasted sign's actual box (the warped mask's extent), or None."""
    h, w = image.shape[:2]
    ch, cw = crop.shape[:2]
    x0, y0, x1, y1 = (roi * [cw, ch, cw, ch]).round().astype(int)
    sign = crop[max(0, y0):max(y0 + 2, y1), max(0, x0):max(x0 + 2, x1)]
    s = int(round(box[2] - box[0]))
    pad = max(2, s // 4)
    sign = cv2.resize(sign, (s, s), interpolation=cv2.INTER_LINEAR if s > sign.shape[0] else cv2.INTER_AREA)
    mask = shape_mask(SHAPE_OF.get(int(class_id), "circle"), s)
    # Canvas with padding so perspective can move corners outwards.
    n = s + 2 * pad
    canvas = np.zeros((n, n, 3), np.float32)
    canvas[pad:pad + s, pad:pad + s] = sign
    alpha = np.zeros((n, n), np.float32)
    alpha[pad:pad + s, pad:pad + s] = mask
    j = 0.12 * s  # perspective: each corner moves up to 12 % of the side
    src = np.float32([[pad, pad], [pad + s, pad], [pad + s, pad + s], [pad, pad + s]])
    dst = src + rng.uniform(-j, j, (4, 2)).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    canvas = cv2.warpPerspective(canvas, m, (n, n), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpPerspective(alpha, m, (n, n), flags=cv2.INTER_LINEAR)
    sigma = rng.uniform(0, 0.04 * s + 0.3) if rng.random() < 0.6 else 0
    if sigma > 0.3:
        canvas = cv2.GaussianBlur(canvas, (0, 0), sigma)
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
    ox, oy = int(round(box[0])) - pad, int(round(box[1])) - pad
    # Clip the canvas to the image.
    cx0, cy0 = max(0, -ox), max(0, -oy)
    cx1, cy1 = min(n, w - ox), min(n, h - oy)
    if cx1 - cx0 < 4 or cy1 - cy0 < 4:
        return None
    region = image[oy + cy0:oy + cy1, ox + cx0:ox + cx1]
    a = alpha[cy0:cy1, cx0:cx1, None]
    c = canvas[cy0:cy1, cx0:cx1]
    # Brightness matched to the spot: move the sign's mean luminance part of the way to the surroundings'.
    inside = a[..., 0] > 0.5
    if inside.any():
        sign_mean = c[inside].mean()
        spot_mean = region.mean()
        target = sign_mean + rng.uniform(0.2, 0.6) * (spot_mean - sign_mean)
        c = c * (target / max(sign_mean, 1.0))
    image[oy + cy0:oy + cy1, ox + cx0:ox + cx1] = region * (1 - a) + np.clip(c, 0, 255) * a
    ys, xs = np.nonzero(alpha > 0.5)
    if len(xs) == 0:
        return None
    bx0, by0 = max(0, xs.min() + ox), max(0, ys.min() + oy)
    bx1, by1 = min(w, xs.max() + 1 + ox), min(h, ys.max() + 1 + oy)
    if bx1 - bx0 < 0.5 * (xs.max() + 1 - xs.min()) or by1 - by0 < 0.5 * (ys.max() + 1 - ys.min()):
        return None  # mostly outside the image: not a sign anyone could see
    return np.array([bx0, by0, bx1, by1], np.float64)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def make_scene(seed: int, *, split: str = "test", size: tuple[int, int] = (640, 480),
               n_signs: tuple[int, int] = (1, 3), sign_sizes: tuple[float, float] = (MIN_SIGN, MAX_SIGN),
               negatives: bool = True, jpeg: bool = True, source: str | None = None,
               folder: str | Path | None = None, view: tuple[float, float] = VIEW) -> Scene:
    """One scene of ``size`` (width, height) with ``n_signs`` (inclusive range) signs of ``sign_sizes`` px.

    Deterministic: the same arguments give the same pixels and boxes. ``folder``: sign-free photos to use instead
    of the split's built-in backgrounds (``--backgrounds DIR``); ``view``: the share of a photo's width shown.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if size[0] < 32 or size[1] < 32:
        raise ValueError(f"a scene must be at least 32x32 pixels, got {size[0]}x{size[1]}")
    rng = np.random.default_rng([int(seed), SPLITS.index(split)])
    painter = _Painter(rng, (int(size[0]), int(size[1])), sign_crops(split, source=source),
                       backgrounds(split, folder=folder) if folder else _split_photos(split), view)
    image = painter.background()
    if negatives and rng.random() < P_NEGATIVES:
        painter.negatives(image)
    placed: list[np.ndarray] = []
    found = [painter.sign(image, placed, size_range=sign_sizes)
             for _ in range(int(rng.integers(n_signs[0], n_signs[1] + 1)))]
    found = [f for f in found if f is not None]
    image = np.clip(image, 0, 255).astype(np.uint8)
    if jpeg:
        image = _jpeg(image, int(rng.integers(35, 96)))
    boxes = np.stack([f[0] for f in found]) if found else np.zeros((0, 4))
    ids = np.array([f[1] for f in found], dtype=np.int64)
    return Scene(image, boxes, ids, tuple(CATEGORY_OF.get(int(c), "other") for c in ids))


@functools.lru_cache(maxsize=3)
def _split_photos(split: str) -> list[np.ndarray]:
    return backgrounds(split)


def make_video(seed: int, *, n_frames: int = 24, size: tuple[int, int] = (640, 360), n_signs: int = 2,
               split: str = "test", source: str | None = None) -> tuple[list[np.ndarray], list[Scene]]:
    """A dashcam-like clip: ``n_signs`` signs that grow and drift outwards over ``n_frames`` frames, as when the
    camera drives towards them. Returns the frames (RGB uint8) and each frame's ground truth."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    rng = np.random.default_rng([int(seed), 7])
    w, h = size
    crops = sign_crops(split, source=source)
    painter = _Painter(rng, (w, h), crops, _split_photos(split))
    base = painter.background()
    picks = rng.integers(len(crops), size=n_signs)
    sides = [(-1) ** k for k in range(n_signs)]
    frames, truth = [], []
    for t in range(n_frames):
        f = t / max(1, n_frames - 1)
        image = base.copy()
        boxes, ids = [], []
        for k, side in zip(picks, sides):
            s = 20 + f * 70
            cx = w / 2 + side * (0.12 + 0.25 * f) * w
            cy = h * (0.40 - 0.1 * f)
            box = np.array([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2])
            sign_rng = np.random.default_rng([int(seed), int(k), 11])  # the same warp in every frame
            pasted = paste_sign(image, crops.images[k], crops.roi[k], crops.labels[k], box, sign_rng)
            if pasted is not None:
                boxes.append(pasted)
                ids.append(int(crops.labels[k]))
        frame = np.clip(image, 0, 255).astype(np.uint8)
        frames.append(frame)
        truth.append(Scene(frame, np.stack(boxes) if boxes else np.zeros((0, 4)), np.array(ids, np.int64),
                           tuple(CATEGORY_OF.get(c, "other") for c in ids)))
    return frames, truth
