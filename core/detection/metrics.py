"""Detection metrics: matching detections to ground truth and average precision at IoU 0.5 (PASCAL VOC, all-point
interpolation), with the COCO convention for subsets.

Subsets (a GTSDB category, a size range) keep the ground truth in the subset; a detection matched to ground truth
outside it is ignored (neither right nor wrong), and an unmatched detection counts as a false positive only when it
could belong to the subset (its size in range; for a category subset, always, since the detector is
class-agnostic and a stray box is wrong for every category). End-to-end AP also needs the class right.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.detection.boxes import as_boxes, iou

IOU_MATCH = 0.5


@dataclass
class ImageEval:
    """One image's detections and truth, as arrays."""
    boxes: np.ndarray  # (N, 4) detections
    scores: np.ndarray  # (N,)
    gt_boxes: np.ndarray  # (M, 4)
    gt_keep: np.ndarray | None = None  # (M,) bool: the ground truth in the subset (None: all)
    pred_classes: np.ndarray | None = None  # (N,) int, -1 for "unknown sign" (end-to-end only)
    gt_classes: np.ndarray | None = None  # (M,) int (end-to-end only)
    pred_keep: np.ndarray | None = None  # (N,) bool: an unmatched detection counts as a false positive


def box_size(boxes) -> np.ndarray:
    """Long side of each box, pixels."""
    b = as_boxes(boxes)
    return np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def _match(ev: ImageEval, *, iou_threshold: float, with_class: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, is_tp) of the detections that count, and the number of ground-truth signs in the subset.

    Greedy by score: each detection takes the unmatched ground truth it overlaps most (>= iou_threshold); with
    ``with_class``, a match with the wrong class is a false positive and leaves that sign for a later detection.
    """
    gt_keep = np.ones(len(ev.gt_boxes), bool) if ev.gt_keep is None else ev.gt_keep
    pred_keep = np.ones(len(ev.boxes), bool) if ev.pred_keep is None else ev.pred_keep
    order = np.argsort(-ev.scores, kind="stable")
    overlaps = iou(ev.boxes, ev.gt_boxes) if len(ev.gt_boxes) else np.zeros((len(ev.boxes), 0))
    taken = np.zeros(len(ev.gt_boxes), bool)
    scores, tp = [], []
    for i in order:
        cand = overlaps[i].copy()
        cand[taken] = -1
        if with_class:
            cand[ev.gt_classes != ev.pred_classes[i]] = -1
        j = int(np.argmax(cand)) if len(cand) else -1
        if j >= 0 and cand[j] >= iou_threshold:
            taken[j] = True
            if gt_keep[j]:
                scores.append(ev.scores[i])
                tp.append(True)
            continue  # matched a sign outside the subset: ignored
        if with_class and len(overlaps[i]) and overlaps[i].max() >= iou_threshold:
            # right place, wrong class: a false positive wherever the sign it covers belongs
            j_any = int(np.argmax(overlaps[i]))
            if gt_keep[j_any]:
                scores.append(ev.scores[i])
                tp.append(False)
            continue
        if pred_keep[i]:
            scores.append(ev.scores[i])
            tp.append(False)
    return np.array(scores, dtype=np.float64), np.array(tp, dtype=bool), int(gt_keep.sum())


def average_precision(images: list[ImageEval], *, iou_threshold: float = IOU_MATCH,
                      with_class: bool = False) -> dict:
    """AP (all-point interpolated area under the precision-recall curve), plus the counts behind it.

    Returns {"ap", "signs", "detections", "recall_max", "precision_at_max_recall"}; "ap" is None when the subset has
    no ground truth.
    """
    scores, tp, n_gt = _pooled(images, iou_threshold=iou_threshold, with_class=with_class)
    if n_gt == 0:
        return {"ap": None, "signs": 0, "detections": int(len(scores)), "recall_max": None,
                "precision_at_max_recall": None}
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1)
    ap = _area(recall, precision)
    return {"ap": round(float(ap), 4), "signs": n_gt, "detections": int(len(scores)),
            "recall_max": round(float(recall[-1]) if len(recall) else 0.0, 4),
            "precision_at_max_recall": round(float(precision[-1]) if len(precision) else 0.0, 4)}


def _pooled(images: list[ImageEval], *, iou_threshold: float, with_class: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Every counted detection of ``images`` best score first: (scores, is_tp), and the signs in the subset."""
    parts = [_match(ev, iou_threshold=iou_threshold, with_class=with_class) for ev in images]
    scores = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
    tp = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, bool)
    order = np.argsort(-scores, kind="stable")
    return scores[order], tp[order], sum(p[2] for p in parts)


def _area(recall: np.ndarray, precision: np.ndarray) -> float:
    if len(recall) == 0:
        return 0.0
    r = np.concatenate([[0.0], recall, [recall[-1]]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    return float(np.sum((r[1:] - r[:-1]) * p[1:]))


def best_threshold(images: list[ImageEval], *, iou_threshold: float = IOU_MATCH) -> tuple[float, float]:
    """The score threshold with the best F1 over ``images`` (class-agnostic), and that F1; (1.0, 0.0) when there is
    no detection at all."""
    scores, tp, n_gt = _pooled(images, iou_threshold=iou_threshold, with_class=False)
    if len(scores) == 0:  # an untrained detector: nothing to keep, and nothing found
        return 1.0, 0.0
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    f1 = 2 * ctp / np.maximum(ctp + cfp + n_gt, 1)
    k = int(np.argmax(f1))
    return float(scores[k]), float(f1[k])
