"""ROI-framed copies of the GTSRB source files, for an experiment on input framing (issue 25; results in
``experiments/stronger.md``, eleventh session).

The shared 32x32 GTSRB images are whole source images, the sign plus its margin, squashed to a square. That margin is
5 px or more in the original, so the sign fills 59-84 % of the side (1st-99th percentile), more in large images than
small ones. The records the issue cites cut each image to its ROI first. This script does the same from the ROI that
each npz row stores (``roi_x1y1x2y2``, inclusive corners in original pixels, scaled by 32 / ``orig_size_wh``).
It resizes that box back to 32x32 with Pillow's bilinear filter, using a float ``box``, so nothing is rounded to
whole pixels. Every other key is copied unchanged, so the same build gives the same track split. Then:

    python experiments/roi_framing.py --source ../shared/data --out /tmp/roisrc
    TSW_DATA_ROOT=/tmp/tsw_roi python -m core datasets build --source /tmp/roisrc --only GTSRB

The TSRD files are copied too, because the build reads them.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 32


def roi_boxes(orig_size_wh: np.ndarray, roi_x1y1x2y2: np.ndarray, *, side: int = SIDE) -> np.ndarray:
    """(N, 4) float boxes (left, top, right, bottom) in a ``side``-pixel image for GTSRB's inclusive ROI corners."""
    wh = orig_size_wh.astype(np.float64)
    r = roi_x1y1x2y2.astype(np.float64)
    edges = np.stack([r[:, 0], r[:, 1], r[:, 2] + 1, r[:, 3] + 1], axis=1)
    return np.clip(edges * side / np.concatenate([wh, wh], axis=1), 0, side)


def roi_framed(images: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Each (side, side, 3) uint8 image cut to its box and resized back to its size (bilinear)."""
    out = np.empty_like(images)
    for i, (image, box) in enumerate(zip(images, boxes)):
        size = image.shape[1], image.shape[0]
        out[i] = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR, box=tuple(box)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="../shared/data", help="folder with gtsrb/ and tsrd/")
    ap.add_argument("--out", required=True, help="new source folder (gtsrb/ ROI-framed, tsrd/ copied)")
    args = ap.parse_args()
    src, out = Path(args.source), Path(args.out)
    (out / "gtsrb").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        name = f"gtsrb_{split}_{SIDE}.npz"
        with np.load(src / "gtsrb" / name) as d:
            arrays = {k: d[k] for k in d.files}
        arrays["images"] = roi_framed(arrays["images"], roi_boxes(arrays["orig_size_wh"], arrays["roi_x1y1x2y2"]))
        np.savez_compressed(out / "gtsrb" / name, **arrays)
        print(split, len(arrays["images"]))
    for extra in (src / "gtsrb").iterdir():
        if extra.suffix != ".npz":
            shutil.copy(extra, out / "gtsrb" / extra.name)
    shutil.copytree(src / "tsrd", out / "tsrd", dirs_exist_ok=True)


if __name__ == "__main__":
    main()
