"""Near-duplicate images: a small perceptual descriptor and the similarity at which two images are "the same".

On the sample, a model's penultimate features put two different images of one class as close (median cosine
0.95-0.97) as an image and its re-encoded copy; this descriptor keeps re-encoded copies >= 0.986 and 99 % of
distinct images below :data:`NEAR_DUPLICATE`. Used by imports (duplicate and leakage checks) and data issues.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

#: Cosine similarity of the perceptual descriptors at or above which two images are near-duplicates.
NEAR_DUPLICATE = 0.97
#: Side of the grey thumbnail a descriptor is made of.
DESCRIPTOR_SIDE = 16


def descriptors(images: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 256) float32 perceptual descriptors: 16 x 16 grey, zero mean, unit norm."""
    out = np.zeros((len(images), DESCRIPTOR_SIDE * DESCRIPTOR_SIDE), np.float32)
    for i, im in enumerate(images):
        g = cv2.resize(cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2GRAY), (DESCRIPTOR_SIDE, DESCRIPTOR_SIDE),
                       interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        g -= g.mean()
        out[i] = g / (np.linalg.norm(g) + 1e-6)
    return out
