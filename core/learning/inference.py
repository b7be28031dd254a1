"""Batched inference shared by training (validation), evaluation, prediction and embeddings."""
from __future__ import annotations

import numpy as np
import torch

from core.data.images import preprocess
from core.base.progress import ProgressFn, StopFn, check
from core.learning.tta import VIEWS, views

EVAL_BATCH = 128  # measured fastest on 2 cores with channels_last (bench/bench_eval.py)


def _batches(images, batch_size: int, device: torch.device = torch.device("cpu")):
    for start in range(0, len(images), batch_size):
        yield start, preprocess(images[start:start + batch_size]).contiguous(
            memory_format=torch.channels_last).to(device)


def _device(model: torch.nn.Module) -> torch.device:
    """Where the model's weights are (a model trained on a GPU is validated there)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def predict_proba(model: torch.nn.Module, images: np.ndarray | list[np.ndarray], *, batch_size: int = EVAL_BATCH,
                  progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                  tta: bool = False) -> np.ndarray:
    """Softmax probabilities (N, K) float32 for RGB uint8 images (N, H, W, 3) or a list of any sizes; with ``tta``
    the mean over the test-time views of :mod:`core.learning.tta` (one forward pass per view)."""
    model.eval()
    # Outside inference mode: converting parameters inside it would turn them into inference tensors,
    # which autograd (training, Integrated Gradients) can no longer use.
    model.to(memory_format=torch.channels_last)
    out = np.zeros((len(images), model.num_classes), np.float32)
    with torch.inference_mode():
        for start, x in _batches(images, batch_size, _device(model)):
            check(should_stop)
            if tta:
                p = sum(torch.softmax(model(v), dim=1) for v in views(x)) / len(VIEWS)
            else:
                p = torch.softmax(model(x), dim=1)
            out[start:start + len(x)] = p.cpu().numpy()
            if progress is not None:
                done = start + len(x)
                progress(min(1.0, done / max(len(images), 1)), f"predicting: {done:,}/{len(images):,} images")
    return out


def embed(model: torch.nn.Module, images: np.ndarray | list[np.ndarray], *, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Penultimate-layer features (N, 300) float32."""
    model.eval()
    model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        feats = [model.embed(x).cpu().numpy() for _, x in _batches(images, batch_size, _device(model))]
    return np.concatenate(feats) if feats else np.zeros((0, 300), np.float32)
