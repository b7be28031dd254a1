"""Split the shared data into two parts that each fit a device call (64 MiB with the working tree).

    python experiments/device/pack.py [--rows 23500] [--source ../shared/data]

Writes ``.dev/a`` (GTSRB train rows ``:rows``, a 100-image stand-in test split for timing, signnames, pictograms, TSRD 32 px) and ``.dev/b`` (GTSRB train rows
``rows:``, GTSRB test), both ignored by git (``.git/info/exclude``). ``unpack.py`` on the device puts the same arrays
back together, so the datasets it builds have the same versions as here. See ``experiments/device/README.md``.
"""
from __future__ import annotations

import argparse
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np


def write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An npz (a zip of .npy members, as ``np.load`` reads it) compressed with LZMA."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA) as z:
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.save(buf, v, allow_pickle=False)
            z.writestr(k + ".npy", buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=23500, help="GTSRB train rows in part a")
    ap.add_argument("--source", type=Path, default=Path("../shared/data"))
    args = ap.parse_args()
    a, b = Path(".dev/a"), Path(".dev/b")
    (a / "tsrd").mkdir(parents=True, exist_ok=True)
    b.mkdir(parents=True, exist_ok=True)
    with np.load(args.source / "gtsrb" / "gtsrb_train_32.npz") as d:
        train = {k: d[k] for k in d.files}
    write(a / "train_a.npz", {k: v[:args.rows] for k, v in train.items()})
    fake = {k: v[:100] for k, v in train.items()}  # a stand-in test split for setup.sh's timing build
    fake["paths"] = np.array([f"{i:05d}.ppm" for i in range(100)])
    write(a / "fake_test.npz", fake)
    write(b / "train_b.npz", {k: v[args.rows:] for k, v in train.items()})
    for f in ("signnames.csv", "gtsrb_meta.zip"):
        shutil.copy(args.source / "gtsrb" / f, a / f)
    for f in (args.source / "tsrd").iterdir():
        if "_48" not in f.name:
            shutil.copy(f, a / "tsrd" / f.name)
    shutil.copy(args.source / "gtsrb" / "gtsrb_test_32.npz", b / "gtsrb_test_32.npz")


if __name__ == "__main__":
    main()
