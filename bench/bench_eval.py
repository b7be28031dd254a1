"""Evaluation throughput (images/s) of a model, and what moves it: batch size, channels_last, threads.

    python bench/bench_eval.py [--model artifacts/benchmark.pt] [--dataset GTSRB --split test]

Goal: >= 3,000 images/s for the published CNN on 2 cores. Prints numbers only.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.data import datasets  # noqa: E402
from core.data.images import preprocess  # noqa: E402
from core.learning.inference import predict_proba  # noqa: E402
from core.learning.models import build_model, load_checkpoint, model_from_checkpoint  # noqa: E402


def timed(fn, n_images: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_images / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=8192)
    args = ap.parse_args()
    model = model_from_checkpoint(load_checkpoint(args.model)) if args.model else build_model("published", 43).eval()
    if args.dataset:
        images = datasets.load_split(args.dataset, args.split).images[: args.n]
    else:
        images = np.random.default_rng(0).integers(0, 255, (args.n, 32, 32, 3), dtype=np.uint8)
    n = len(images)
    print(f"{n} images {images.shape[1:]}, torch threads {torch.get_num_threads()}")
    print(f"preprocess only          {timed(lambda: preprocess(images), n):8.0f} img/s")
    x = preprocess(images)
    for cl in (False, True):
        m = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        xx = x.contiguous(memory_format=torch.channels_last) if cl else x.contiguous()
        for bs in (128, 512, 2048):
            def run():
                with torch.inference_mode():
                    for s in range(0, n, bs):
                        m(xx[s:s + bs])
            print(f"model only  bs={bs:5d} channels_last={str(cl):5s} {timed(run, n):8.0f} img/s")
    print(f"end to end (predict_proba, uint8 in, probabilities out) {timed(lambda: predict_proba(model, images), n):8.0f} img/s")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        print(f"end to end, torch threads={threads}   {timed(lambda: predict_proba(model, images), n):8.0f} img/s")


if __name__ == "__main__":
    main()
