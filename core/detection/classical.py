"""Classical sign proposals: colour segmentation in HSV, then connected regions shaped like a sign.

The approach the learned detector (:mod:`core.detection.detector`) was compared against. German signs are red,
blue or yellow-bordered, so thresholding hue and saturation finds most of them; what it cannot see are the grey
and white "end of restriction" signs, and it proposes every red or blue blob (brake lights, shop signs), which only
the classifier can then reject. Scores are the region's colour fill and compactness, 0-1.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.detection.boxes import nms

#: HSV ranges (OpenCV: hue 0-179) of sign colours: (low, high) pairs; red wraps around hue 0.
COLOUR_RANGES = {
    "red": (((0, 90, 50), (10, 255, 255)), ((165, 90, 50), (179, 255, 255))),
    "blue": (((100, 120, 40), (130, 255, 255)),),
    "yellow": (((15, 120, 90), (35, 255, 255)),),
}
#: Regions smaller or larger than this (long side, px) are not proposed.
MIN_SIDE, MAX_SIDE = 12, 400
#: Width / height of a sign's box stays within this range (perspective and occlusion included).
MAX_ASPECT = 1.8


@dataclass
class ColourDetector:
    """Colour-segmentation proposals; ``propose(image)`` -> boxes, scores."""
    name: str = "colour"
    version: str = "hsv-1"
    #: no learned score to calibrate: the classifier does the rejecting; keep every plausible region
    min_score: float = 0.2

    def propose(self, image: np.ndarray, *, min_score: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4) and scores (N,) of colour regions shaped like signs in ``image`` (H, W, 3) uint8."""
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        boxes, scores = [], []
        kernel = np.ones((3, 3), np.uint8)
        for ranges in COLOUR_RANGES.values():
            mask = np.zeros(image.shape[:2], np.uint8)
            for lo, hi in ranges:
                mask |= cv2.inRange(hsv, np.array(lo, np.uint8), np.array(hi, np.uint8))
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            for x, y, w, h, filled in stats[1:]:
                side = max(w, h)
                if side < MIN_SIDE or side > MAX_SIDE or max(w / h, h / w) > MAX_ASPECT:
                    continue
                fill = filled / float(w * h)
                # A sign's coloured part fills 25-100 % of its box (a red ring about 35 %); a long thin stroke
                # or a speck of colour does not.
                if fill < 0.2:
                    continue
                squareness = min(w, h) / side
                boxes.append((x, y, x + w, y + h))
                scores.append(0.5 * squareness + 0.5 * min(1.0, fill / 0.6))
        if not boxes:
            return np.zeros((0, 4)), np.zeros(0)
        b, s = np.array(boxes, np.float64), np.array(scores, np.float64)
        keep = nms(b, s)
        keep = keep[s[keep] >= min_score]
        return b[keep], s[keep]
