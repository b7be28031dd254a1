"""The learned sign detector: a small fully convolutional centre-heatmap network run on an image pyramid.

Design (CenterNet-style, sized for 2 CPU cores):

- The network sees an RGB image and outputs, every 4 pixels (stride 4), a sign-centre score (a heatmap whose peaks
  are sign centres), the centre's sub-cell offset and the sign's log width and height. Dilated 3x3 convolutions
  give each output a receptive field of about 127 px, at about 57k multiply-adds per output cell with the default
  channels (:data:`CHANNELS`) and 111k with the shipped detector's wider ones (24-32-48-48-64-64, 109k parameters).
- It is trained on signs of :data:`TRAIN_SIZES` px; a few-scale pyramid (:data:`LEVELS`) covers 16-160 px signs
  and more: each level keeps the boxes of the sizes it was trained for, then non-maximum suppression merges levels.
- It is class-agnostic: what the sign is, is the classifier's job (:mod:`core.detection.pipeline`).

The checkpoint is a plain dict (``model``, ``arch``, ``levels``, ``min_score``, ``train``, ``metrics``), saved
atomically and loaded with ``weights_only=True``.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.base.files import atomic_write_bytes
from core.detection.boxes import nms

#: Output stride of the network, pixels.
STRIDE = 4
#: Sign sizes (long side, px) the network is trained to find at one pyramid level.
TRAIN_SIZES = (12.0, 96.0)
#: Pyramid levels (image scale factors) and, per level, the smallest sign (in that level's pixels) it reports:
#: the full-resolution level reports every size; coarser levels only the signs too large for the finer ones.
LEVELS = ((1.0, 0.0), (0.5, 40.0), (0.25, 40.0))
#: Heatmap peaks below this are not even candidates (the operating threshold, ``min_score``, is higher).
CANDIDATE_SCORE = 0.05
#: Most candidates kept per image before non-maximum suppression.
MAX_CANDIDATES = 200
#: Default channel widths of the stem (2 layers) and the dilated body (4 layers).
CHANNELS = (16, 24, 32, 32, 48, 48)
MEAN = torch.tensor([0.45, 0.45, 0.45]).view(1, 3, 1, 1)
STD = torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1)


def _conv(cin: int, cout: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class HeatmapNet(nn.Module):
    """RGB (B, 3, H, W) in [0, 1] -> (B, 5, ceil(H/4), ceil(W/4)): centre logit, offset x/y (0-1 of a cell),
    log width/height in cells."""

    def __init__(self, channels: tuple[int, ...] = CHANNELS):
        super().__init__()
        c = channels
        self.stem = nn.Sequential(_conv(3, c[0], stride=2), _conv(c[0], c[1], stride=2))
        self.body = nn.Sequential(_conv(c[1], c[2]), _conv(c[2], c[3], dilation=2), _conv(c[3], c[4], dilation=4),
                                  _conv(c[4], c[5], dilation=8))
        self.head = nn.Sequential(nn.Conv2d(c[5], 32, 1), nn.ReLU(inplace=True), nn.Conv2d(32, 5, 1))
        # Start the heatmap near "no sign" (prior 1 %), as CenterNet/RetinaNet do: a balanced start drowns the
        # focal loss in easy negatives for the first hundreds of steps.
        nn.init.constant_(self.head[-1].bias[:1], -4.6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem((x - MEAN) / STD)))


# ---------------------------------------------------------------------------------------------------------------
# Training targets and loss


def make_targets(boxes_per_image: list[np.ndarray], out_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Heatmap (B, 1, h, w) with a Gaussian per sign centre, and regression targets/mask at the centre cells."""
    b, (h, w) = len(boxes_per_image), out_hw
    heat = np.zeros((b, 1, h, w), np.float32)
    reg = np.zeros((b, 4, h, w), np.float32)
    mask = np.zeros((b, 1, h, w), np.float32)
    ys, xs = np.mgrid[0:h, 0:w]
    for i, boxes in enumerate(boxes_per_image):
        for x0, y0, x1, y1 in boxes:
            cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
            bw, bh = max(1.0, x1 - x0) / STRIDE, max(1.0, y1 - y0) / STRIDE
            j, k = min(w - 1, int(cx)), min(h - 1, int(cy))
            sigma = max(0.6, 0.15 * (bw + bh) / 2)
            g = np.exp(-((xs - j) ** 2 + (ys - k) ** 2) / (2 * sigma ** 2))
            heat[i, 0] = np.maximum(heat[i, 0], g)
            reg[i, :, k, j] = (cx - j, cy - k, np.log(bw), np.log(bh))
            mask[i, 0, k, j] = 1
    return {"heat": torch.from_numpy(heat), "reg": torch.from_numpy(reg), "mask": torch.from_numpy(mask)}


def detection_loss(out: torch.Tensor, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """CenterNet's penalty-reduced focal loss on the heatmap plus L1 on offsets and log sizes at sign centres."""
    logit, reg = out[:, :1], out[:, 1:]
    heat, mask = targets["heat"], targets["mask"]
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    neg_weight = (1 - heat) ** 4
    pos_loss = (torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = (torch.log(1 - p) * p ** 2 * neg_weight * (1 - pos)).sum()
    n = pos.sum().clamp(min=1)
    focal = -(pos_loss + neg_loss) / n
    off = torch.sigmoid(reg[:, :2])
    pred = torch.cat([off, reg[:, 2:]], dim=1)
    l1 = (F.l1_loss(pred, targets["reg"], reduction="none") * mask).sum() / (mask.sum().clamp(min=1) * 4)
    return focal + l1, {"focal": float(focal.detach()), "l1": float(l1.detach())}


# ---------------------------------------------------------------------------------------------------------------
# Inference


def to_tensor(images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1]."""
    arr = np.array(np.stack(images) if isinstance(images, list) else images, copy=True)  # writable for torch
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255)


def decode(out: torch.Tensor, *, min_score: float = CANDIDATE_SCORE,
           max_candidates: int = MAX_CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
    """Network output for one image (5, h, w) -> boxes (N, 4) in that input's pixels and scores (N,)."""
    heat = torch.sigmoid(out[0:1])
    peaks = heat == F.max_pool2d(heat[None], 3, stride=1, padding=1)[0]
    score = (heat * peaks)[0]
    flat = score.flatten()
    k = min(max_candidates, int((flat >= min_score).sum()))
    if k == 0:
        return np.zeros((0, 4)), np.zeros(0)
    top = torch.topk(flat, k)
    w = score.shape[1]
    ys, xs = (top.indices // w).numpy(), (top.indices % w).numpy()
    reg = out[1:, ys, xs].numpy()
    off = 1 / (1 + np.exp(-reg[:2]))
    cx, cy = (xs + off[0]) * STRIDE, (ys + off[1]) * STRIDE
    bw, bh = np.exp(np.clip(reg[2], -3, 6)) * STRIDE, np.exp(np.clip(reg[3], -3, 6)) * STRIDE
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    return boxes.astype(np.float64), top.values.numpy().astype(np.float64)


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


@dataclass
class LearnedDetector:
    """A trained :class:`HeatmapNet` and how to run it: ``propose(image)`` -> boxes, scores."""
    net: HeatmapNet
    name: str = "detector"
    version: str = ""
    #: the shipped operating threshold (chosen on validation scenes), the default ``--min-score``
    min_score: float = 0.3
    levels: tuple[tuple[float, float], ...] = LEVELS
    meta: dict = field(default_factory=dict)

    @torch.inference_mode()
    def propose(self, image: np.ndarray, *, min_score: float = CANDIDATE_SCORE) -> tuple[np.ndarray, np.ndarray]:
        """Sign candidates in ``image`` (H, W, 3) uint8: boxes (N, 4) in its pixels and scores (N,), best first,
        after non-maximum suppression across pyramid levels."""
        all_boxes, all_scores = [], []
        for scale, smallest in self.levels:
            level = _resize(image, scale)
            if min(level.shape[:2]) < 2 * STRIDE:
                continue
            boxes, scores = decode(self.net(to_tensor(level[None]))[0], min_score=min_score)
            size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) if len(boxes) else boxes[:, 0]
            keep = size >= smallest
            all_boxes.append(boxes[keep] / scale)
            all_scores.append(scores[keep])
        boxes = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4))
        scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
        h, w = image.shape[:2]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        keep = nms(boxes, scores)
        return boxes[keep], scores[keep]


def save_detector(path: Path, net: HeatmapNet, *, min_score: float, train: dict, metrics: dict | None = None,
                  channels: tuple[int, ...] = CHANNELS) -> None:
    """Write the checkpoint dict atomically."""
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "arch": {"kind": "heatmap", "channels": list(channels),
                                                     "stride": STRIDE},
                "levels": [list(level) for level in LEVELS], "min_score": float(min_score), "train": train,
                "metrics": metrics or {}}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_detector_file(path: Path, *, name: str | None = None) -> LearnedDetector:
    """Load a detector checkpoint (``weights_only=True``); a file that is not one raises ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such detector file; train one with `python -m core detector train`")
    data = path.read_bytes()
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds on a bad file; one message for all
        raise ValueError(f"{path}: not a detector checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("arch", {}).get("kind") != "heatmap":
        raise ValueError(f"{path}: not a detector checkpoint (a classifier? detectors have arch kind 'heatmap')")
    net = HeatmapNet(tuple(ckpt["arch"]["channels"]))
    net.load_state_dict(ckpt["model"])
    net.eval()
    return LearnedDetector(net, name=name or path.stem, version=hashlib.sha256(data).hexdigest()[:12],
                           min_score=float(ckpt["min_score"]),
                           levels=tuple((float(a), float(b)) for a, b in ckpt["levels"]),
                           meta={"train": ckpt.get("train", {}), "metrics": ckpt.get("metrics", {})})
