"""Augmenting a training epoch's batches in worker processes, for a machine with many cores (a GPU's host).

The default feeder augments in one background thread with one pipeline whose random state runs on from batch to
batch (:class:`core.learning.epoch.BatchFeeder`). That thread caps a GPU training at a few thousand images a second.
:class:`AugmentPool` spreads the batches over ``workers`` processes instead; each batch is augmented by the same
pipeline (same groups, ``p``, hardening) reseeded from (training seed, rank, epoch, batch index), so the result
depends neither on the number of workers nor on which one took a batch, and a resumed training needs no saved
augmentation state. The two modes draw different augmentations from the same seed.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from core.data.augment import build_pipeline, hardening_groups, list_groups
from core.data.images import resize_batch

_PIPELINES: dict[tuple, object] = {}


def batch_seed(seed: int, rank: int, epoch: int, batch: int) -> int:
    """The augmentation seed of one batch: a hash of (training seed, rank, epoch, batch index)."""
    return int(np.random.SeedSequence([int(seed), int(rank), int(epoch), int(batch)]).generate_state(1)[0])


def augment_batch(images: np.ndarray, seed: int, p: float, harden_p: float = 0.0,
                  groups: tuple[str, ...] | None = None, hardening: tuple[str, ...] | None = None,
                  harden_at: str = "source") -> np.ndarray:
    """``images`` (uint8, N x H x W x 3) augmented by the training pipeline seeded with ``seed``, resized to the
    network input. Runs in a worker process (or in this one): its pipeline is built once per process, from the
    group names the pool's owner passes (``None``: this process's registries), in their order."""
    groups = tuple(list_groups()) if groups is None else tuple(groups)
    hardening = tuple(hardening_groups()) if hardening is None else tuple(hardening)
    key = (float(p), float(harden_p), groups, hardening, harden_at)
    if key not in _PIPELINES:
        _PIPELINES[key] = build_pipeline(groups, p=p, seed=0, harden_p=harden_p, hardening=hardening,
                                         harden_at=harden_at)
    pipe = _PIPELINES[key]
    pipe.set_random_seed(int(seed))
    return resize_batch(np.stack([pipe(image=im)["image"] for im in images]))


def _init_worker() -> None:
    # One thread per worker: the workers are the parallelism (and OpenCV's own pool would oversubscribe).
    import cv2
    cv2.setNumThreads(1)


class AugmentPool:
    """``workers`` processes that augment batches (:func:`augment_batch`) in order, a few batches ahead."""

    def __init__(self, workers: int, *, p: float, harden_p: float = 0.0, seed: int = 0, rank: int = 0,
                 ahead: int | None = None, harden_at: str = "source"):
        if workers < 1:
            raise ValueError(f"an augmentation pool needs at least 1 worker, got {workers}")
        self.workers, self.p, self.harden_p, self.seed, self.rank = workers, p, harden_p, seed, rank
        self.harden_at = harden_at
        # the owner's group names, in its order: a worker builds the very pipeline this process would
        self.groups, self.hardening = tuple(list_groups()), tuple(hardening_groups())
        self.ahead = ahead or 2 * workers
        env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # read by the spawned workers as they start, then put back
        try:
            # spawn, not fork: the parent may hold torch's thread pool or a GPU context, which a fork inherits.
            self._ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def batches(self, epoch: int, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The augmented, resized batches of ``chunks`` (the epoch's raw batches, in order)."""
        pending = []
        for b, imgs in enumerate(chunks):
            pending.append(self._ex.submit(augment_batch, imgs, batch_seed(self.seed, self.rank, epoch, b),
                                           self.p, self.harden_p, self.groups, self.hardening, self.harden_at))
            if len(pending) >= self.ahead:
                yield pending.pop(0).result()
        for f in pending:
            yield f.result()

    def close(self) -> None:
        self._ex.shutdown(wait=True, cancel_futures=True)
