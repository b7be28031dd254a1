"""Issue 22's walkthrough: does incremental learning keep what the base model knew?

Derives a workspace from the embedded sample (Sample48), adds the class "Purple diamond" with 24 synthetic images
(seeded: a purple diamond on a random background) split 16 train / 4 val / 4 test, trains incrementally from the
shipped ``benchmark`` model (43 GTSRB classes) with the TrainConfig defaults the Improve page uses, and prints
old-class and new-class accuracy before (``benchmark``) and after (the new model) on val and test.

    nice -n 10 env OMP_NUM_THREADS=1 python bench/bench_incremental_regression.py
    python bench/bench_incremental_regression.py --set lwf_weight=0 --set backbone_lr_scale=1 --splits val

``--set NAME=VALUE`` changes one training setting (repeatable; tune on val only). Everything is written under a
private data root (a temporary folder, removed at the end; ``--root`` keeps it), never under ``data/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

NEW_CLASS = "Purple diamond"
SPLIT_OF_24 = ["train"] * 16 + ["val"] * 4 + ["test"] * 4


def purple_diamonds(n: int, *, seed: int, size: int = 64) -> list[np.ndarray]:
    """``n`` RGB images: a purple diamond (with a light rim) at a random place and size on a random background
    (a colour gradient with noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for _ in range(n):
        base, grad = rng.uniform(30, 220, 3), rng.uniform(-70, 70, (2, 3))
        bg = base + grad[0] * xx[..., None] + grad[1] * yy[..., None] + rng.normal(0, 12, (size, size, 3))
        img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        cx, cy = size / 2 + rng.uniform(-5, 5, 2)
        r = size * rng.uniform(0.28, 0.42)
        rim = [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
        inner = [(cx, cy - 0.8 * r), (cx + 0.8 * r, cy), (cx, cy + 0.8 * r), (cx - 0.8 * r, cy)]
        draw.polygon(rim, fill=tuple(int(v) for v in rng.integers(200, 256, 3)))
        draw.polygon(inner, fill=(int(rng.integers(110, 160)), int(rng.integers(0, 50)), int(rng.integers(140, 200))))
        out.append(np.asarray(img))
    return out


def build_workspace(name: str, *, seed: int) -> str:
    """The walkthrough's workspace: Sample48 plus "Purple diamond" (24 images, 16/4/4)."""
    from core.data import workspace_changes, workspaces
    workspaces.derive("Sample48", name)
    cid = workspace_changes.add_class(name, NEW_CLASS)
    images = purple_diamonds(len(SPLIT_OF_24), seed=seed)
    workspace_changes.add_images(name, images, split=SPLIT_OF_24, class_id=cid,
                                 sources=[f"purple-diamond-{k}.png" for k in range(len(images))])
    return name


def parse_settings(pairs: list[str]) -> dict:
    from core.learning.training import TrainConfig
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    out = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        if key not in types:
            raise SystemExit(f"--set {pair}: unknown setting; valid: {', '.join(sorted(types))}")
        out[key] = json.loads(raw) if raw not in ("", None) and raw[0] in "0123456789-.tfn[" else raw
    return out


def line(split: str, cmp: dict) -> str:
    def pct(group: dict, when: str) -> str:
        if not group["images"]:
            return "no images"
        return f"{group[f'correct_{when}']}/{group['images']} = {100 * group[when]:.1f} %"
    old, new = cmp["old_classes"], cmp["new_classes"]
    news = ", ".join(f"{r['name']} {100 * r['after']:.0f} %" for r in cmp["per_class"] if not r["old"])
    worst = ", ".join(f"{r['class_id']}: {r['name']} {r['delta_points']:+.0f}" for r in cmp["regressions"][:5])
    return (f"{split:4s} old classes before {pct(old, 'before')}, after {pct(old, 'after')} "
            f"({100 * (old['after'] - old['before']):+.1f} pt) | new classes after {pct(new, 'after')} | "
            f"{cmp['regressed_images_total']} images lost | regressed: {worst or 'none'}"
            + (f"\n     new classes after: {news}" if news else ""))


def probe(path: str, base: dict, new: dict) -> dict:
    """The comparison on a larger set of old-class images (``images``, ``labels`` in an .npz, e.g. a seeded
    subset of GTSRB's official training images): a retention check with far more images than Sample48's val."""
    from core.learning import vs_base
    from core.learning.inference import predict_proba
    from core.learning.models import model_from_checkpoint
    data = np.load(path)
    preds = [np.asarray(c["class_ids"])[predict_proba(model_from_checkpoint(c), data["images"]).argmax(1)]
             for c in (base, new)]
    return vs_base.compare_predictions(data["labels"], *preds, old_ids=base["class_ids"],
                                       files=[str(i) for i in range(len(data["labels"]))],
                                       class_names=dict(zip(new["class_ids"], new["class_names"])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a training setting")
    ap.add_argument("--splits", default="val,test", help="splits to report (tune on val only)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic images")
    ap.add_argument("--root", help="data root to use and keep (default: a temporary one, removed)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--probe", metavar="NPZ", help="also compare on these old-class images (images, labels)")
    ap.add_argument("--train-seeds", default="0", help="training seeds, comma-separated (several: the mean too)")
    args = ap.parse_args()
    tmp = None
    if args.root is None:
        tmp = tempfile.TemporaryDirectory(prefix="tsw-bench-")
    os.environ["TSW_DATA_ROOT"] = args.root or tmp.name
    import torch
    from core.data import datasets
    from core.learning import registry, training, vs_base
    from core.learning.models import load_checkpoint
    torch.set_num_threads(args.threads)
    name = "walkthrough"
    if name not in {d.name for d in datasets.list_datasets()}:
        build_workspace(name, seed=args.seed)
    info = datasets.get_dataset(name)
    cfg = training.TrainConfig(**{"mode": "incremental", **parse_settings(args.set)})
    print(f"workspace {name}: {info.num_classes} classes, train {info.split_size('train')}, val "
          f"{info.split_size('val')}, test {info.split_size('test')}; settings changed from the defaults: "
          f"{ {k: v for k, v in dataclasses.asdict(cfg).items() if v != getattr(training.TrainConfig(), k)} }")
    parent = load_checkpoint(registry.model_path("benchmark"))
    seeds = [int(x) for x in args.train_seeds.split(",")]
    deltas: dict[str, list] = {s: [] for s in args.splits.split(",")}
    for seed in seeds:
        run_cfg = dataclasses.replace(cfg, seed=seed) if len(seeds) > 1 else cfg
        t0 = time.perf_counter()
        result = training.train(run_cfg, info, parent=parent, parent_name="benchmark")
        print(f"seed {run_cfg.seed}: trained in {time.perf_counter() - t0:.0f} s; best epoch "
              f"{result.checkpoint['metrics']['best_epoch']}, val acc per epoch "
              f"{[h['val_acc'] for h in result.history]}")
        for split in deltas:
            cmp = vs_base.compare_models(parent, result.checkpoint, info, split=split)
            old, new = cmp["old_classes"], cmp["new_classes"]
            deltas[split].append((100 * (old["after"] - old["before"]), 100 * new["after"]))
            print(line(split, cmp), flush=True)
        if args.probe:
            print(line("probe", probe(args.probe, parent, result.checkpoint)), flush=True)
    if len(seeds) > 1:
        for split, d in deltas.items():
            old_d, new_a = np.mean(d, axis=0)
            print(f"{split:4s} mean over seeds {seeds}: old classes {old_d:+.2f} pt (worst "
                  f"{min(x[0] for x in d):+.1f}), new classes {new_a:.1f} %")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
