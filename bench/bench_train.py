"""Training speed, and whether what speeds it up changes results. Prints numbers only.

    python bench/bench_train.py [--dataset GTSRB_48] [--arch published] [--images N]
        seconds per epoch with and without in-model augmentation (our trainer, default settings)
    python bench/bench_train.py --vs-bare [--rounds 2] [--images N]
        side by side in one process, alternating: a bare PyTorch loop over the same images pre-resized to tensors
        (float32, default memory layout, AdamW, batch 128, no augmentation: what one writes first), against our
        trainer with in-model augmentation on, in fp32 and at its default arithmetic (bf16 where the CPU has it)
    python bench/bench_train.py --loader-workers 0 12 [--device cuda] [--images N]
        seconds of an augmented epoch with the feeder thread (0) and with N augmentation worker processes (the
        second of two epochs: the first includes the workers' start-up); for a GPU machine with many cores
    python bench/bench_train.py --check-precision [--epochs 3] [--seeds 0 1 2]
        the same trainings in fp32 and bf16 per seed: best validation accuracy of each (results must agree
        within seed noise)
    python bench/bench_train.py --check-engine [--epochs 3] [--seeds 0 1 2]
        the same trainings augmented by the albumentations engine and by the batch engine, per seed: best
        validation accuracy, and accuracy on validation images augmented by the albumentations groups (agree within
        seed noise: the batch engine draws from the same distributions)

Goal (issue 12): our epoch with augmentation >= 1.5x faster than the bare loop's, on the same machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from core.data import datasets
from core.learning import distributed, memory, training  # noqa: E402
from core.data.images import preprocess  # noqa: E402
from core.learning.models import build_model  # noqa: E402


def bare_epoch(x: torch.Tensor, y: torch.Tensor, arch: str, num_classes: int, seed: int = 0) -> float:
    """Seconds for one epoch of the plainest loop: pre-made tensors, shuffled batches of 128, AdamW, fp32, the
    network's layers run one after another (``plain_forward``: none of the model's own training shortcuts)."""
    torch.manual_seed(seed)
    model = build_model(arch, num_classes).train()
    forward = plain_forward(model)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    order = torch.randperm(len(y))
    t0 = time.perf_counter()
    for s in range(0, len(y), 128):
        idx = order[s:s + 128]
        loss = F.cross_entropy(forward(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def plain_forward(model):
    """The model's layers in order, as one writes them first: lcn, stn, features, head, classifier."""
    return lambda x: model.classifier(model.head(model.features(model.stn(model.lcn(x)))))


def ours_epoch(info, arch: str, images: int, precision: str, augment: bool = True) -> float:
    """Seconds of our trainer's training pass (validation excluded) for one epoch of ``images`` images."""
    cfg = training.TrainConfig(architecture=arch, epochs=1, augment=augment, max_train_images=images,
                               precision=precision)
    return training.train(cfg, info).history[0]["train_pass_seconds"]


def vs_bare(info, arch: str, images: int, rounds: int) -> None:
    split = datasets.load_split(info, "train")
    pick = np.random.default_rng(0).choice(len(split.labels), images, replace=False)
    classes = sorted(set(int(c) for c in split.labels))
    lookup = {c: i for i, c in enumerate(classes)}
    x = preprocess(split.images[pick])
    y = torch.tensor([lookup[int(c)] for c in split.labels[pick]])
    auto = distributed.resolve_precision("auto", torch.device("cpu"))
    # Our trainer sets the allocator's thresholds for its process (core/learning/memory.py): set them first, so
    # the bare loop runs under them too and every round compares the loops alone.
    kept = memory.keep_freed_maps()
    print(f"{images} images/epoch of {info.name}, arch {arch}, torch threads {torch.get_num_threads()}, "
          f"kernel set {torch.backends.cpu.get_cpu_capability()}, default arithmetic here: {auto}, "
          f"allocator thresholds for both: {kept}")
    times: dict[str, list[float]] = {"bare loop (fp32, no augmentation)": [], "ours, augment, fp32": [],
                                     f"ours, augment, default ({auto})": []}
    for r in range(rounds):  # alternate, so a drift in machine speed hits every variant alike
        for name in times:
            if name.startswith("bare"):
                t = bare_epoch(x, y, arch, len(classes), seed=r)
            else:
                t = ours_epoch(info, arch, images, "fp32" if "fp32" in name else "auto")
            times[name].append(t)
            print(f"  round {r + 1}: {name:38s} {t:7.1f} s  ({images / t:6.0f} img/s)", flush=True)
    bare = statistics.median(times["bare loop (fp32, no augmentation)"])
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"median {name:38s} {t:7.1f} s  {images / t:6.0f} img/s  speed-up vs bare loop {bare / t:4.2f}x")


def check_setting(info, arch: str, epochs: int, seeds: list[int], images: int | None, setting: str,
                  values: tuple[str, str]) -> None:
    """The same trainings with each of two values of one ``TrainConfig`` setting per seed: best validation
    accuracy, and the accuracy on validation images augmented by the albumentations groups at that epoch."""
    acc: dict[str, list[float]] = {v: [] for v in values}
    aug: dict[str, list[float]] = {v: [] for v in values}
    for seed in seeds:
        for value in values:
            cfg = training.TrainConfig(architecture=arch, epochs=epochs, seed=seed, max_train_images=images,
                                       **{setting: value})
            res = training.train(cfg, info)
            best, epoch = res.checkpoint["metrics"]["best_val_acc"], res.checkpoint["metrics"]["best_epoch"]
            on_aug = next((h for h in res.history if h["epoch"] == epoch), {}).get("val_aug_acc", float("nan"))
            acc[value].append(best)
            aug[value].append(on_aug)
            print(f"seed {seed} {setting}={value}: best val acc {best:.4f}, augmented val acc {on_aug:.4f}  "
                  f"({res.seconds:.0f} s)", flush=True)
    for value in values:
        sd = statistics.stdev(acc[value]) if len(seeds) > 1 else float("nan")
        print(f"{value}: mean best val acc {statistics.mean(acc[value]):.4f} (sd over seeds {sd:.4f}), "
              f"augmented val {statistics.mean(aug[value]):.4f}")
    diffs = [b - a for a, b in zip(acc[values[0]], acc[values[1]])]
    print(f"{values[1]} - {values[0]} per seed: {', '.join(f'{d:+.4f}' for d in diffs)}")


def loader_workers(info, args, n: int) -> None:
    """An augmented epoch's pass with the feeder thread and with worker processes, side by side (second epochs)."""
    print(f"{n} images/epoch of {info.name}, arch {args.arch}, device {args.device}, {os.cpu_count()} cores")
    for w in args.loader_workers:
        cfg = training.TrainConfig(architecture=args.arch, epochs=2, augment=True, augment_p=0.3,
                                   max_train_images=args.images, loader_workers=w, device=args.device)
        t = training.train(cfg, info).history[-1]["train_pass_seconds"]
        print(f"loader_workers={w:3d}  pass {t:6.1f} s  ({n / t:6.0f} img/s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="GTSRB_48")
    ap.add_argument("--arch", default="published")
    ap.add_argument("--images", type=int, default=None, help="cap images per epoch (default: the whole split)")
    ap.add_argument("--vs-bare", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--check-precision", action="store_true")
    ap.add_argument("--check-engine", action="store_true")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--loader-workers", type=int, nargs="+", default=None,
                    help="time augmented epochs with each of these worker counts (0 = the feeder thread)")
    ap.add_argument("--device", default="auto", choices=distributed.DEVICES)
    args = ap.parse_args()
    info = datasets.get_dataset(args.dataset)
    datasets.load_split(info, "train")  # fill the cache first, so we time training, not decoding
    n = args.images or info.split_size("train")
    if args.vs_bare:
        vs_bare(info, args.arch, n, args.rounds)
        return
    if args.check_precision or args.check_engine:
        setting, values = (("precision", ("fp32", "bf16")) if args.check_precision
                           else ("augment_engine", ("albumentations", "batch")))
        check_setting(info, args.arch, args.epochs, args.seeds, args.images, setting, values)
        return
    if args.loader_workers is not None:
        loader_workers(info, args, n)
        return
    print(f"dataset {info.name}: {n} train images/epoch, arch {args.arch}, torch threads {torch.get_num_threads()}")
    for augment in (False, True):
        cfg = training.TrainConfig(architecture=args.arch, epochs=1, augment=augment, max_train_images=args.images)
        t0 = time.perf_counter()
        res = training.train(cfg, info)
        h = res.history[0]
        print(f"augment={str(augment):5s}  pass {h['train_pass_seconds']:6.1f} s  "
              f"({n / h['train_pass_seconds']:6.0f} img/s)  epoch incl. validation {h['seconds']:6.1f} s  "
              f"total incl. data load {time.perf_counter() - t0:6.1f} s  ({res.checkpoint['metrics']['precision']})")


if __name__ == "__main__":
    main()
