"""Finding label errors a model has learnt. Prints numbers only (no asserts).

A workspace is derived from GTSRB (the official train set, split by track), 2 % of its training labels are flipped
(seeded), once uniformly at random to another class, once to the class the base model finds most similar (its
second most probable class); 2 % of the test labels too. The base model (``benchmark``, trained on the clean
labels) is then trained further on the flipped labels (``train --mode resume``), so it learns them; then the
issues of the training split are ranked two ways:

- **in-sample**: self-confidence from the trained model's own probabilities (what the Data issues tab used);
- **out-of-sample**: self-confidence from K-fold logistic regression on the trained model's frozen penultimate
  features (:func:`core.analysis.label_issues.cross_validated_probs`, what it uses now);

and, on the test split (held out: the model's probabilities as they are), the same in-sample ranking.
Reported per ranking: precision at k (k = images flipped), recall in the top 2k, and the confident-learning
flagged set (:func:`core.analysis.label_issues.find_label_issues`): its size, precision and recall.

    TSW_DATA_ROOT=/tmp/root python bench/bench_label_issues.py                # full train split (35,219), 1 epoch
    TSW_DATA_ROOT=/tmp/root python bench/bench_label_issues.py --quick        # 8,000 train images, 1 epoch
    ... --train-images 8000 --epochs 4                                        # fewer images, learnt longer
    ... --train-images 1000 --epochs 40 --memorise   # no augmentation, smoothing or val: the model learns the flips

GTSRB must be built in the data root (python -m core datasets build --only GTSRB). CPU only, niced, one thread.
Goals (issue 22): precision@k >= 0.90 for random flips, >= 0.80 for similar-class flips, recall@2k >= 0.95.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.analysis import label_issues  # noqa: E402
from core.analysis.novelty import layer_outputs  # noqa: E402
from core.base import config  # noqa: E402
from core.data import datasets, workspace_changes, workspaces  # noqa: E402
from core.learning import models, registry  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent


def softmax(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def flips(labels: np.ndarray, probs: np.ndarray, columns: np.ndarray, *, kind: str, rate: float,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices to flip (seeded, ``rate`` of them) and their new labels: another class uniformly at random, or the
    model's most probable class other than the given one (``similar``)."""
    idx = np.sort(rng.choice(len(labels), int(round(rate * len(labels))), replace=False))
    if kind == "random":
        new = np.array([rng.choice(columns[columns != labels[i]]) for i in idx])
    else:
        p = probs[idx].copy()
        p[np.arange(len(idx)), np.searchsorted(columns, labels[idx])] = -1.0
        new = columns[p.argmax(1)]
    return idx, new


def relabel(ws: str, files: list[str], new: np.ndarray) -> None:
    for c in np.unique(new):
        workspace_changes.relabel_images(ws, [f for f, n in zip(files, new) if n == c], class_id=int(c))


def scores(truth_flipped: np.ndarray, given: np.ndarray, probs: np.ndarray) -> dict:
    """precision@k, recall@2k of the self-confidence ranking, and the confident-learning set's size/precision/recall
    (``given``: column indices; ``truth_flipped``: bool (N,))."""
    k = int(truth_flipped.sum())
    order = np.argsort(label_issues.self_confidence(given, probs), kind="stable")
    found, _ = label_issues.find_label_issues(given, probs)
    hit = truth_flipped[found].sum()
    return {"k": k, "precision@k": round(float(truth_flipped[order[:k]].mean()), 4),
            "recall@2k": round(float(truth_flipped[order[:2 * k]].sum() / k), 4),
            "flagged": int(len(found)), "flagged_precision": round(float(hit / max(len(found), 1)), 4),
            "flagged_recall": round(float(hit / k), 4)}


def train(ws: str, base: str, out: Path, *, epochs: int, lr: float, memorise: bool = False) -> float:
    t = time.perf_counter()
    cmd = ["nice", "-n", "10", sys.executable, "-m", "core", "train", "--dataset", ws, "--mode", "resume", "--base",
           base, "--epochs", str(epochs), "--lr", str(lr), "--device", "cpu", "--out", str(out), "--quiet"]
    if memorise:  # no augmentation, no label smoothing: nothing keeps the network from fitting the wrong labels
        cmd += ["--no-augment", "--label-smoothing", "0"]
    subprocess.run(cmd, cwd=PROJECT, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                   stdout=subprocess.DEVNULL)  # its summary; failures still show on stderr
    return time.perf_counter() - t


def one_kind(kind: str, args, base_ckpt: dict, base_model, columns: np.ndarray) -> dict:
    rng = np.random.default_rng(args.seed)
    ws = f"bench-label-issues-{kind}"
    if workspaces.is_workspace(ws):
        workspaces.delete(ws)
    workspaces.derive(args.dataset, ws)
    info = datasets.get_dataset(ws)
    if args.train_images:  # fewer images: the rest to the trash (seeded), before anything is flipped
        rows = datasets.read_index(info, "train")
        drop = rng.choice(len(rows), max(0, len(rows) - args.train_images), replace=False)
        if len(drop):
            workspace_changes.delete_images(ws, [rows[i]["file"] for i in drop])
    truth = {}
    for split in ("train", "test"):
        arr = datasets.load_split(datasets.get_dataset(ws), split)
        probs = softmax(layer_outputs(base_model, arr.images)["logits"])
        idx, new = flips(arr.labels, probs, columns, kind=kind, rate=args.rate, rng=rng)
        relabel(ws, [arr.files[i] for i in idx], new)
        truth[split] = {arr.files[i] for i in idx}
    if args.memorise:  # no validation images: training keeps the epoch that fits the (flipped) training labels best
        workspace_changes.delete_images(ws, list(datasets.load_split(datasets.get_dataset(ws), "val").files))
    out = Path(config.models_dir()) / f"{ws}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    seconds = train(ws, args.model, out, epochs=args.epochs, lr=args.lr, memorise=args.memorise)
    ckpt = models.load_checkpoint(out)
    model = models.model_from_checkpoint(ckpt)
    result = {"kind": kind, "train_s": round(seconds, 1)}
    for split in ("train", "test"):
        arr = datasets.load_split(datasets.get_dataset(ws), split)
        flipped = np.array([f in truth[split] for f in arr.files])
        outputs = layer_outputs(model, arr.images)
        given = np.searchsorted(columns, arr.labels)
        result[f"{split}_in_sample"] = scores(flipped, given, softmax(outputs["logits"]))
        agrees = outputs["logits"].argmax(1) == given
        result[f"{split}_accuracy_on_given"] = round(float(agrees.mean()), 4)
        result[f"{split}_flips_learnt"] = round(float(agrees[flipped].mean()), 4)  # predicts the wrong label
        if split == "train":
            t = time.perf_counter()
            probs, classes = label_issues.cross_validated_probs(outputs["pen"], arr.labels, seed=args.seed)
            result["cv_s"] = round(time.perf_counter() - t, 1)
            result["train_out_of_sample"] = scores(flipped, np.searchsorted(classes, arr.labels), probs)
    if not args.keep:
        workspaces.delete(ws)
        out.unlink(missing_ok=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="GTSRB", help="built dataset to derive from (default GTSRB)")
    ap.add_argument("--model", default="benchmark", help="base model, trained on the clean labels")
    ap.add_argument("--rate", type=float, default=0.02, help="share of labels flipped (default 0.02)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of training on the flipped labels (default 1)")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3, the trainer's)")
    ap.add_argument("--train-images", type=int, default=0, help="keep this many train images (0: all)")
    ap.add_argument("--kinds", default="random,similar")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="8,000 train images and 1 epoch")
    ap.add_argument("--memorise", action="store_true",
                    help="train without augmentation, label smoothing or validation images (the kept epoch is the one "
                         "that fits the training labels best), so the model learns the flipped labels")
    ap.add_argument("--keep", action="store_true", help="keep the workspaces and models made")
    args = ap.parse_args()
    if args.quick:
        args.train_images, args.epochs = args.train_images or 8000, 1
    torch.set_num_threads(1)
    base_ckpt = models.load_checkpoint(registry.model_path(args.model))
    base_model = models.model_from_checkpoint(base_ckpt)
    columns = np.asarray([int(c) for c in base_ckpt["class_ids"]])
    print(json.dumps({"dataset": args.dataset, "model": args.model, "rate": args.rate, "epochs": args.epochs,
                      "lr": args.lr,
                      "train_images": args.train_images or "all", "seed": args.seed}), flush=True)
    for kind in args.kinds.split(","):
        t = time.perf_counter()
        result = one_kind(kind, args, base_ckpt, base_model, columns)
        result["total_s"] = round(time.perf_counter() - t, 1)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
