"""Image quality of generated images as FID and KID, computed on our own classifier's penultimate features
(:func:`core.learning.inference.embed`, 300 values per image) rather than Inception's: the features that decide
what our model learns, and no weights fetched from anywhere.

- FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to the two sets' features. Biased
  upwards for small sets, so compare it only with a floor measured at the same sizes (two halves of real images).
- KID (Binkowski et al. 2018): the unbiased squared MMD with the cubic polynomial kernel
  ``k(a, b) = (a.b / d + 1) ** 3``, averaged over random subsets; unbiased at any size, so usable per class.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg

#: Subsets KID averages over, and their largest size.
KID_SUBSETS = 50
KID_SUBSET_SIZE = 1000


def _check(a: np.ndarray, b: np.ndarray, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be two (N, D) arrays of the same D, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < minimum:
        raise ValueError(f"need at least {minimum} images in each set, got {len(a)} and {len(b)}")
    return a, b


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between the Gaussians of features ``a`` (N, D) and ``b`` (M, D); 0 for identical sets."""
    a, b = _check(a, b, 2)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    if not np.isfinite(covmean).all():  # singular product (few images): regularise, as the reference code does
        eps = np.eye(len(cov_a)) * 1e-6
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real
    return float(max(0.0, ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean)))


def kid(a: np.ndarray, b: np.ndarray, *, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance of features ``a`` (N, D) and ``b`` (M, D): mean and standard deviation over
    ``subsets`` random subsets of ``min(N, M, subset_size)`` images each. Near 0 (and can be slightly negative:
    unbiased) when both come from one distribution."""
    a, b = _check(a, b, 2)
    m = min(len(a), len(b), subset_size)
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(off - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))
