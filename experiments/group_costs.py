"""Which in-model augmentation group costs a model most: accuracy on a split with each group alone (p = 1), and
with all seven at the probabilities Difficult (0.15) and Testing (0.3) were built with.

    python experiments/group_costs.py MODEL [MODEL...] --dataset GTSRB_48 --split val

Meant for validation splits (choosing what to train against); every model meets the very same transformed images
(one seed per group). Prints one JSON object per model: {"model", "clean", "groups": {group: acc}, "mix": {p: acc}},
accuracies in percent. ``--dark-quartile`` also reports each group on the darkest quarter of the images.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIXES = (0.15, 0.3)


def group_costs(ckpt: dict, images: np.ndarray, labels: np.ndarray, *, seed: int = 5,
                dark_quartile: bool = False) -> dict:
    """Accuracy (percent) of the checkpoint's model: clean, per group at p = 1, and for each mix of :data:`MIXES`."""
    from core.data.augment import augment_images, list_groups
    from core.learning.inference import predict_proba
    from core.learning.models import model_from_checkpoint
    lookup = {int(c): i for i, c in enumerate(ckpt["class_ids"])}
    unknown = sorted({int(c) for c in labels} - set(lookup))
    if unknown:
        raise ValueError(f"the model has no output for classes {unknown}")
    if len(labels) == 0:
        raise ValueError("no images to measure")
    y = np.asarray([lookup[int(c)] for c in labels])
    model = model_from_checkpoint(ckpt)
    brightness = images.reshape(len(images), -1).mean(1)
    dark = brightness <= np.quantile(brightness, 0.25)

    def acc(x: np.ndarray) -> dict | float:
        ok = predict_proba(model, x).argmax(1) == y
        overall = round(float(ok.mean()) * 100, 2)
        return {"all": overall, "darkest_quarter": round(float(ok[dark].mean()) * 100, 2)} if dark_quartile else overall

    out = {"clean": acc(images), "groups": {}, "mix": {}}
    for k, g in enumerate(list_groups()):
        out["groups"][g] = acc(augment_images(images, groups=[g], p=1.0, seed=seed + k))
    for p in MIXES:
        out["mix"][str(p)] = acc(augment_images(images, p=p, seed=seed))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="checkpoint paths or registry names")
    ap.add_argument("--dataset", default="GTSRB_48")
    ap.add_argument("--split", default="val", choices=("train", "val", "test"))
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--dark-quartile", action="store_true")
    args = ap.parse_args(argv)
    from core.data.datasets import get_dataset, load_split
    from core.learning.models import load_checkpoint
    from core.learning.registry import model_path
    split = load_split(get_dataset(args.dataset), args.split)
    images, labels = split.images[:args.limit], split.labels[:args.limit]
    for name in args.models:
        res = group_costs(load_checkpoint(model_path(name)), images, labels, seed=args.seed,
                          dark_quartile=args.dark_quartile)
        print(json.dumps({"model": name, "dataset": args.dataset, "split": args.split, "images": len(labels), **res}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
