"""How many *known* signs a model's novelty check calls "probably not one of its classes", clean and under blur and
JPEG, at the threshold it ships with (issue 25: at most 2 %). Prints numbers only.

    TSW_DATA_ROOT=... python bench/novelty_flagged.py artifacts/benchmark_oe.pt [--images 2000] [--json]

Known = the official GTSRB test images (a seeded sample of ``--images``), at the network's input size (``--val``:
GTSRB val instead, where candidates are compared), clean and with the corruption benchmark's Gaussian blur, motion
blur and JPEG (``core.analysis.corruptions``) at severities 1-5. The detector is the model's own (the shipped
``.novelty.npz`` beside it, else fitted from its training dataset and cached, as the app does); its thresholds were
set on validation data."""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402

from core.analysis import corruptions, novelty  # noqa: E402
from core.learning.models import load_checkpoint, model_from_checkpoint  # noqa: E402

CORRUPTIONS = ("gaussian_blur", "motion_blur", "jpeg")
METHODS = ("msp", "fused")


def flagged(model_path: Path, images: np.ndarray, labels: np.ndarray | None = None, *, methods=METHODS,
            names=CORRUPTIONS, seed: int = 0) -> dict:
    """Share of ``images`` (all known) above each method's shipped threshold: ``{"clean": {m: share}, "jpeg":
    {severity: {m: share}}, ...}``, plus the thresholds used. With ``labels`` (class ids), ``"read"`` holds the
    same layout for the images the model still classifies correctly, with its accuracy under ``"accuracy"``: how
    many of the flags fall on signs it would have read right."""
    ckpt = load_checkpoint(model_path)
    model = model_from_checkpoint(ckpt).eval()
    det = novelty.load_or_fit(model_path, model, ckpt)
    ids = np.asarray([int(c) for c in ckpt["class_ids"]])

    def share(batch: np.ndarray) -> tuple[dict, dict]:
        outputs = novelty.layer_outputs(model, batch)
        s = det.scores(model, batch, methods, outputs=outputs)
        flags = {m: det.novel(s, m) for m in methods}
        if labels is None:
            return {m: round(float(f.mean()), 4) for m, f in flags.items()}, {}
        right = ids[outputs["logits"].argmax(1)] == labels
        read = {"accuracy": round(float(right.mean()), 4)}
        read.update({m: round(float(f[right].mean()), 4) if right.any() else 0.0 for m, f in flags.items()})
        return {m: round(float(f.mean()), 4) for m, f in flags.items()}, read

    out = {"model": str(model_path), "n": len(images), "thresholds": {m: det.thresholds[m] for m in methods}}
    out["clean"], read = share(images)
    reads = {"clean": read}
    for name in names:
        out[name], reads[name] = {}, {}
        for sev in corruptions.SEVERITIES:
            out[name][sev], reads[name][sev] = share(corruptions.corrupt(images, name, sev, seed=seed))
    out["worst"] = {m: max([out["clean"][m]] + [out[n][s][m] for n in names for s in corruptions.SEVERITIES])
                    for m in methods}
    if labels is not None:
        out["read"] = reads
    return out


def _line(shares: dict, read: dict) -> str:
    """One printed row: each method's share flagged, then (accuracy, shares among the images read right)."""
    return "  ".join(f"{m} {x:.2%}" for m, x in shares.items()) + "  (" + "  ".join(
        f"{m} {x:.2%}" for m, x in read.items()) + ")"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--images", type=int, default=2000, help="sample of the official test (seed 0)")
    ap.add_argument("--test-npz", default=str(ROOT.parent / "shared" / "data" / "gtsrb" / "gtsrb_test_32.npz"))
    ap.add_argument("--val", action="store_true", help="GTSRB val (the built dataset) instead of the official test: "
                    "where candidates are compared (its clean share is the threshold's 1 %% by construction)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated (default {','.join(METHODS)})")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    methods = tuple(args.methods.split(","))
    if args.val:
        from core.data import datasets
        split = datasets.load_split("GTSRB", "val")
        images, labels = split.images, split.labels
    else:
        with np.load(args.test_npz) as z:
            images, labels = z["images"], z["labels"]
    pick = np.sort(np.random.default_rng(0).choice(len(images), min(args.images, len(images)), replace=False))
    for path in args.models:
        r = flagged(Path(path), images[pick], labels[pick], methods=methods)
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        split = "val" if args.val else "test"
        print(f"{path}: {r['n']} known {split} images; share flagged unknown at the shipped thresholds")
        print("  (in brackets: accuracy, and the share flagged among the images still classified correctly)")
        print("  clean            " + _line(r["clean"], r["read"]["clean"]))
        for name in CORRUPTIONS:
            for sev, v in r[name].items():
                print(f"  {name:13s} s{sev} " + _line(v, r["read"][name][sev]))
        print("  worst      " + "  ".join(f"{m} {v:.2%}" for m, v in r["worst"].items()), flush=True)


if __name__ == "__main__":
    main()
