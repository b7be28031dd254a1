"""Compare incremental learning against training from scratch on GTSRB_48's test split.

    python bench/incremental_report.py artifacts/benchmark.pt artifacts/incremental48.pt artifacts/scratch48.pt ...

For each model: accuracy on the old classes (GTSRB ids 0-42), on the new classes (43-47) and overall, macro F1,
training seconds and train images processed (a compute proxy). Prints a Markdown table.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.data import datasets  # noqa: E402
from core.analysis.evaluation import evaluate_checkpoint  # noqa: E402
from core.learning.models import load_checkpoint  # noqa: E402

OLD = 43


def images_processed(ckpt: dict, info) -> int:
    """Train images seen in this model's own training (not its parent's)."""
    n_train = info.split_size("train")
    cfg = ckpt.get("config", {})
    total = 0
    for h in ckpt["history"]:
        if h.get("phase") == "new_rows":
            new = sum(v for c, v in info.counts["train"].items() if c >= OLD)
            total += new + OLD * cfg.get("replay_per_class", 0)
        else:
            total += cfg.get("max_train_images") or n_train
    return total


def main(paths: list[str]) -> None:
    info = datasets.get_dataset("GTSRB_48")
    test = datasets.load_split(info, "test")
    gtsrb = datasets.load_split("GTSRB", "test")
    old = test.labels < OLD
    print("| model | mode | epochs | GTSRB_48 test: old-class acc | new-class acc | overall acc | macro F1 "
          "| official GTSRB test acc | train s | train images |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in paths:
        ck = load_checkpoint(p)
        summary, preds = evaluate_checkpoint(ck, test.images, test.labels)
        correct = preds.y_pred == preds.y_true
        new_acc = f"{correct[~old].mean():.4f}" if max(ck["class_ids"]) >= OLD else "n/a (43-class model)"
        g_summary, _ = evaluate_checkpoint(ck, gtsrb.images, gtsrb.labels)
        print(f"| {Path(p).stem} | {ck['mode']} | {len(ck['history'])} | {correct[old].mean():.4f} | {new_acc} | "
              f"{summary['accuracy']:.4f} | {summary['macro_f1']:.4f} | {g_summary['accuracy']:.4f} | {ck['metrics'].get('train_seconds', 0):.0f} | "
              f"{images_processed(ck, info):,} |")


if __name__ == "__main__":
    main(sys.argv[1:])
