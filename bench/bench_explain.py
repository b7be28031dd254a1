"""Latency of one explanation per image: Integrated Gradients and Anchors (published CNN unless a checkpoint is given).

    python bench/bench_explain.py [checkpoint.pt]

Goals on 2 cores: IG <= 0.1 s, Anchors <= 5 s per image. Uses 10 random 32 x 32 RGB images and random weights
unless a checkpoint is given. Prints numbers only.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.analysis.explain import anchor_explanation, integrated_gradients  # noqa: E402
from core.learning.models import build_model, load_checkpoint, model_from_checkpoint  # noqa: E402

N_IMAGES = 10
IMAGE_SIDE = 32  # GTSRB-sized; the explainers resize to the 48 x 48 network input
SEED = 0


def main() -> None:
    torch.manual_seed(SEED)
    if len(sys.argv) > 1:
        ckpt = load_checkpoint(sys.argv[1])
        model, arch, source = model_from_checkpoint(ckpt), ckpt["architecture"], sys.argv[1]
    else:
        model, arch, source = build_model("published", 43), "published", "random weights"
    model.eval()
    images = np.random.default_rng(SEED).integers(0, 256, (N_IMAGES, IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
    print(f"model: {arch} ({source}); {N_IMAGES} random {IMAGE_SIDE}x{IMAGE_SIDE} images")
    default_threads = torch.get_num_threads()
    # Also at 1 thread: with another job busy on the cores (a training run), 2 torch threads wait on each other
    # at every op and run several times slower than 1; the app decides, so show both.
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        run(model, images, threads)
    torch.set_num_threads(default_threads)


def run(model, images: np.ndarray, threads: int) -> None:
    integrated_gradients(model, images[0])  # warm-up: first call pays for allocator and kernel setup
    ig_times = []
    for img in images:
        t0 = time.perf_counter()
        integrated_gradients(model, img)
        ig_times.append(time.perf_counter() - t0)
    print(f"[{threads} thread(s)] integrated_gradients (steps=32): median {statistics.median(ig_times):.3f} s, "
          f"max {max(ig_times):.3f} s per image")

    an_times, sizes, samples, met = [], [], [], 0
    for i, img in enumerate(images):
        t0 = time.perf_counter()
        res = anchor_explanation(model, img, seed=i)
        an_times.append(time.perf_counter() - t0)
        sizes.append(len(res.anchor))
        samples.append(res.num_samples)
        met += res.met_threshold
    print(f"[{threads} thread(s)] anchor_explanation (defaults): median {statistics.median(an_times):.2f} s, "
          f"max {max(an_times):.2f} s per image; median anchor size {statistics.median(sizes)}, "
          f"median {statistics.median(samples):.0f} perturbed images classified, threshold met {met}/{len(images)}")

if __name__ == "__main__":
    main()
