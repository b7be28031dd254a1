"""Novelty and accuracy of one or more models on validation data only (run with the GTSRB dataset built):

    TSW_DATA_ROOT=... python bench/novelty_val.py artifacts/benchmark.pt /tmp/oe.pt [--json]

Known = GTSRB val (by track), novel = the TSRD *train* images (first copies) of the classes GTSRB lacks, disjoint
from the protocol's TSRD *test* images. This is where outlier-exposure candidates were chosen (README,
"Discovery"); the test protocol (`python -m core novelty`) is run once, for the chosen model.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402

from core.analysis import novelty
from core.data import datasets  # noqa: E402
from core.data.builds import tsrd_not_in_gtsrb  # noqa: E402
from core.learning.models import load_checkpoint, model_from_checkpoint  # noqa: E402

METHODS = ("msp", "energy", "mahalanobis", "knn", "fused")


def measure(path: str, train, val, novel_images) -> dict:
    t0 = time.perf_counter()
    ckpt = load_checkpoint(Path(path))
    model = model_from_checkpoint(ckpt).eval()
    lookup = {int(c): i for i, c in enumerate(ckpt["class_ids"])}
    det = novelty.fit(model, train.images, np.array([lookup[int(c)] for c in train.labels]), val.images,
                      model_version=path)
    out = novelty.layer_outputs(model, val.images)
    acc = float((out["logits"].argmax(1) == np.array([lookup[int(c)] for c in val.labels])).mean())
    known = det.scores(model, val.images, METHODS, outputs=out)
    novel = det.scores(model, novel_images, METHODS)
    return {"model": path, "val_acc": round(acc, 5), "seconds": round(time.perf_counter() - t0, 1),
            "methods": {m: novelty.auroc_fpr95(known[m], novel[m]) for m in METHODS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    train, val = datasets.load_split("GTSRB", "train"), datasets.load_split("GTSRB", "val")
    z = np.load(ROOT.parent / "shared" / "data" / "tsrd" / "tsrd_train_32.npz")
    novel_images = z["images"][tsrd_not_in_gtsrb(z["labels"]) & z["first_copy"]]
    for path in args.models:
        r = measure(path, train, val, novel_images)
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            print(f"{path}: val acc {r['val_acc']:.4f}  " + "  ".join(
                f"{m} {v['auroc']:.4f}/{v['fpr95']:.3f}" for m, v in r["methods"].items()), flush=True)


if __name__ == "__main__":
    main()
