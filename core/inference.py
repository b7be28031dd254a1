"""Batched inference shared by training (validation), evaluation, prediction and embeddings."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from core.images import preprocess

EVAL_BATCH = 128  # measured fastest on 2 cores with channels_last (bench/bench_eval.py)


def _batches(images, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield start, preprocess(images[start:start + batch_size]).contiguous(memory_format=torch.channels_last)


def predict_proba(model: torch.nn.Module, images: np.ndarray | list[np.ndarray], *, batch_size: int = EVAL_BATCH,
                  progress: Callable[[float], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """Softmax probabilities (N, K) float32 for RGB uint8 images (N, H, W, 3) or a list of any sizes."""
    model.eval()
    # Outside inference mode: converting parameters inside it would turn them into inference tensors,
    # which autograd (training, Integrated Gradients) can no longer use.
    model.to(memory_format=torch.channels_last)
    out = np.zeros((len(images), model.num_classes), np.float32)
    with torch.inference_mode():
        for start, x in _batches(images, batch_size):
            if should_stop is not None and should_stop():
                raise Cancelled("stopped by request")
            out[start:start + len(x)] = torch.softmax(model(x), dim=1).numpy()
            if progress is not None:
                progress(min(1.0, (start + len(x)) / max(len(images), 1)))
    return out


def embed(model: torch.nn.Module, images: np.ndarray | list[np.ndarray], *, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Penultimate-layer features (N, 300) float32."""
    model.eval()
    model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        feats = [model.embed(x).numpy() for _, x in _batches(images, batch_size)]
    return np.concatenate(feats) if feats else np.zeros((0, 300), np.float32)


class Cancelled(Exception):
    """Raised inside long work when its job was asked to stop."""
