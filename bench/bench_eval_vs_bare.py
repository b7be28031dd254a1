"""The evaluate command against a bare PyTorch loop of the same network, as whole processes (issue 25, item 6).

    # the bare loop alone (what one writes first: load the npz, resize, normalise, forward in batches, accuracy)
    python bench/bench_eval_vs_bare.py --model artifacts/benchmark.pt --npz ../shared/data/gtsrb/gtsrb_test_32.npz
    # side by side, A B A B ..., ratio pair by pair (farm-bench: this workplace's timer)
    farm-bench -n 3 --timeout 600 --vs 'python bench/bench_eval_vs_bare.py --model artifacts/benchmark.pt \\
        --npz ../shared/data/gtsrb/gtsrb_test_32.npz' -- python -m core evaluate --model artifacts/benchmark.pt \\
        --npz ../shared/data/gtsrb/gtsrb_test_32.npz --json

A ratio below 1 (wall A / wall B) means the project's command is faster than the bare loop. The bare loop builds
the network with ``core.learning.models`` (the same modules and weights) and does everything else with plain
numpy/torch: bilinear resizing of the whole batch with ``F.interpolate``, default memory layout, batch 256,
``torch.inference_mode``. Prints its accuracy and wall time, so both can be checked to agree.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.learning.models import build_model  # noqa: E402

MEAN = torch.tensor([0.340, 0.312, 0.321]).view(1, 3, 1, 1)
STD = torch.tensor([0.272, 0.251, 0.257]).view(1, 3, 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint path")
    ap.add_argument("--npz", required=True, help="npz with images (N, H, W, 3) uint8 and labels (N,)")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    t0 = time.perf_counter()
    ckpt = torch.load(args.model, map_location="cpu", weights_only=True)
    net = build_model(ckpt["architecture"], len(ckpt["class_ids"]))
    net.load_state_dict(ckpt["weights"])
    net.eval()
    with np.load(args.npz) as z:
        images, labels = z["images"], z["labels"]
    ids = torch.as_tensor(ckpt["class_ids"])
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(images), args.batch):
            x = torch.from_numpy(images[start:start + args.batch]).permute(0, 3, 1, 2).float().div(255)
            x = F.interpolate(x, size=(48, 48), mode="bilinear", align_corners=False)
            pred = ids[net((x - MEAN) / STD).argmax(1)]
            correct += int((pred.numpy() == labels[start:start + args.batch]).sum())
    print(f"bare loop: accuracy {correct / len(labels):.4f} on {len(labels):,} images, "
          f"{time.perf_counter() - t0:.2f} s after imports")


if __name__ == "__main__":
    main()
