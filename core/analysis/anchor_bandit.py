"""The sampling side of the Anchors search (:mod:`core.analysis.anchors`): perturbations drawn and labelled by the
model, every labelled sample kept for reuse, and the KL confidence bounds and exploration rate of KL-LUCB
(Kaufmann & Kalyanakrishnan 2013)."""
from __future__ import annotations

import math

import numpy as np

from core.base.progress import StopFn, check
from core.learning.inference import predict_proba

#: A removed superpixel is kept with this probability in a perturbation (the paper's and alibi's 0.5).
KEEP_PROBABILITY = 0.5
#: Every new candidate gets at least this many labelled perturbations before the bandit starts, topped up
#: in one batched model call; most come free from earlier samples (see ``Sampler.stats``).
MIN_INITIAL_SAMPLES = 32
#: Constants of the KL-LUCB exploration rate (Kaufmann & Kalyanakrishnan 2013; alibi uses the same values).
KL_ALPHA, KL_K = 1.1, 405.5
#: Bisection steps for the KL confidence bounds: 2**-17 < 1e-5, far below any precision we report.
KL_BISECT_STEPS = 17


def kl_bernoulli(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    eps = 1e-12  # keeps log finite at p or q in {0, 1}
    p = np.clip(p, eps, 1 - eps)
    q = np.clip(q, eps, 1 - eps)
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def kl_upper(p: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Largest q >= p with KL(p, q) <= level (bisection; returns the conservative end)."""
    p = np.asarray(p, float)
    lo, hi = p.copy(), np.ones_like(p)
    for _ in range(KL_BISECT_STEPS):
        mid = (lo + hi) / 2
        over = kl_bernoulli(p, mid) > level
        hi = np.where(over, mid, hi)
        lo = np.where(over, lo, mid)
    return hi


def kl_lower(p: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Smallest q <= p with KL(p, q) <= level (bisection; returns the conservative end)."""
    p = np.asarray(p, float)
    lo, hi = np.zeros_like(p), p.copy()
    for _ in range(KL_BISECT_STEPS):
        mid = (lo + hi) / 2
        over = kl_bernoulli(p, mid) > level
        lo = np.where(over, mid, lo)
        hi = np.where(over, hi, mid)
    return lo


def lucb_beta(n_arms: int, t: int, delta: float) -> float:
    """Exploration rate of KL-LUCB at round t (Kaufmann & Kalyanakrishnan 2013, eq. for beta(t, delta))."""
    temp = math.log(KL_K * n_arms * t ** KL_ALPHA / delta)
    return temp + math.log(temp)


class Sampler:
    """Draws and labels perturbations and keeps every labelled sample for reuse.

    A sample drawn for anchor A keeps A and each other superpixel with probability 1/2. Conditioned on also
    containing B, with A a subset of B, it is an exact draw for anchor B, so every new candidate starts with
    the matching samples of its ancestors and of the (A = empty) coverage samples instead of fresh ones.
    """

    def __init__(self, model, small: np.ndarray, seg_index: np.ndarray, n_seg: int, fill: np.ndarray,
                 prediction: int, rng: np.random.Generator, should_stop: StopFn | None):
        self.model, self.small, self.seg_index, self.n_seg = model, small, seg_index, n_seg
        self.fill, self.prediction, self.rng, self.should_stop = fill, prediction, rng, should_stop
        self._present: list[np.ndarray] = []
        self._source: list[np.ndarray] = []
        self._correct: list[np.ndarray] = []
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.stats: dict[tuple[int, ...], list[int]] = {}  # anchor -> [samples, correct]

    @property
    def num_samples(self) -> int:
        return sum(len(c) for c in self._correct)

    def _arrays(self):
        if self._cache is None:
            self._cache = (np.concatenate(self._present), np.concatenate(self._source),
                           np.concatenate(self._correct))
        return self._cache

    def _anchor_mask(self, anchor: tuple[int, ...]) -> np.ndarray:
        m = np.zeros(self.n_seg, bool)
        m[list(anchor)] = True
        return m

    def draw(self, requests: list[tuple[tuple[int, ...], int]]) -> list[np.ndarray]:
        """Label ``n`` new perturbations for each (anchor, n), in one model call; returns their correctness."""
        requests = [(a, n) for a, n in requests if n > 0]
        if not requests:
            return []
        present, source = [], []
        for anchor, n in requests:
            m = self._anchor_mask(anchor)
            present.append((self.rng.random((n, self.n_seg)) < KEEP_PROBABILITY) | m)
            source.append(np.broadcast_to(m, (n, self.n_seg)))
        present_all = np.concatenate(present)
        correct = self._label(present_all)
        self._present.append(present_all)
        self._source.append(np.concatenate(source))
        self._correct.append(correct)
        self._cache = None
        out, start = [], 0
        for anchor, n in requests:
            c = correct[start:start + n]
            start += n
            if anchor in self.stats:
                self.stats[anchor][0] += n
                self.stats[anchor][1] += int(c.sum())
            out.append(c)
        return out

    def _label(self, present: np.ndarray) -> np.ndarray:
        check(self.should_stop)
        keep_pixel = present[:, self.seg_index]  # (N, 48, 48)
        images = np.where(keep_pixel[..., None], self.small, self.fill)
        proba = predict_proba(self.model, images, should_stop=self.should_stop)
        return proba.argmax(axis=1) == self.prediction

    def init_stats(self, anchors: list[tuple[int, ...]]) -> None:
        """Start each new anchor's counts from the reusable samples, then top up to MIN_INITIAL_SAMPLES."""
        present, source, correct = self._arrays()
        for anchor in anchors:
            if anchor in self.stats:
                continue
            m = self._anchor_mask(anchor)
            valid = present[:, m].all(axis=1) & ~(source[:, ~m].any(axis=1))
            self.stats[anchor] = [int(valid.sum()), int(correct[valid].sum())]
        self.draw([(a, MIN_INITIAL_SAMPLES - self.stats[a][0]) for a in anchors])

    def coverage(self, anchor: tuple[int, ...], coverage_present: np.ndarray) -> float:
        if not anchor:
            return 1.0
        return float(coverage_present[:, list(anchor)].all(axis=1).mean())

