"""Seconds per training epoch on GTSRB train, with and without in-model augmentation.

    python bench/bench_train.py [--dataset GTSRB] [--arch published] [--images N]

Goal on the 2-core machine: <= 60 s per epoch with augmentation (published CNN). Prints numbers only.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

from core import datasets, training  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="GTSRB")
    ap.add_argument("--arch", default="published")
    ap.add_argument("--images", type=int, default=None, help="cap images per epoch (default: the whole split)")
    args = ap.parse_args()
    info = datasets.get_dataset(args.dataset)
    datasets.load_split(info, "train")  # fill the cache first, so we time training, not decoding
    n = args.images or info.split_size("train")
    print(f"dataset {info.name}: {n} train images/epoch, arch {args.arch}, torch threads {torch.get_num_threads()}")
    for augment in (False, True):
        cfg = training.TrainConfig(architecture=args.arch, epochs=1, augment=augment, max_train_images=args.images)
        t0 = time.perf_counter()
        res = training.train(cfg, info)
        h = res.history[0]
        print(f"augment={str(augment):5s}  epoch {h['seconds']:6.1f} s  ({n / h['seconds']:6.0f} img/s)  "
              f"total incl. data load + val {time.perf_counter() - t0:6.1f} s")


if __name__ == "__main__":
    main()
