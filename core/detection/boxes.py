"""Box arithmetic on ``(N, 4)`` float arrays of ``x0, y0, x1, y1`` in pixels (x1, y1 exclusive edges)."""
from __future__ import annotations

import numpy as np

#: Two detections of one sign overlap at least this much (IoU) and the weaker is suppressed.
NMS_IOU = 0.4


def as_boxes(boxes) -> np.ndarray:
    """Any sequence of 4-number boxes -> float64 ``(N, 4)`` (an empty input -> ``(0, 4)``)."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) x0, y0, x1, y1; got shape {arr.shape}")
    return arr


def area(boxes) -> np.ndarray:
    b = as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def iou(a, b) -> np.ndarray:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): ``(N, M)``."""
    a, b = as_boxes(a), as_boxes(b)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes, scores, *, iou_threshold: float = NMS_IOU) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the boxes kept, best score first. A box is dropped when it
    overlaps a better-scoring kept box by more than ``iou_threshold``; ties keep the earlier box."""
    b = as_boxes(boxes)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f"{len(b)} boxes need as many scores, got {len(s)}")
    order = np.argsort(-s, kind="stable")
    keep: list[int] = []
    while len(order):
        i = order[0]
        keep.append(int(i))
        if len(order) == 1:
            break
        overlap = iou(b[i:i + 1], b[order[1:]])[0]
        order = order[1:][overlap <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def scale_boxes(boxes, *, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Map boxes measured on an image of ``from_size`` (width, height) onto the same image at ``to_size``."""
    b = as_boxes(boxes).copy()
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    b[:, [0, 2]] *= sx
    b[:, [1, 3]] *= sy
    return b


def clip_boxes(boxes, *, size: tuple[int, int]) -> np.ndarray:
    """Clip boxes to an image of ``size`` (width, height)."""
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, size[0])
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, size[1])
    return b


def expand(boxes, *, margin: float, size: tuple[int, int]) -> np.ndarray:
    """Grow each box by ``margin`` of its width/height on every side (clipped to ``size``): a detection's box is the
    sign itself, and the classifier was trained on crops with a margin around the sign (GTSRB keeps about 10 %)."""
    b = as_boxes(boxes).copy()
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    b += np.stack([-margin * w, -margin * h, margin * w, margin * h], axis=1)
    return clip_boxes(b, size=size)
