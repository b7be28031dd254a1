"""On the device: put the shared data layout back together from the two parts ``pack.py`` wrote (same arrays).

    python3 .dev/b/unpack.py OUT_FOLDER

Part a is read from ``/tmp/parta``, where call 1 (``setup.sh``) copied it: the next call's carried ``.dev/b``
replaces the whole ``.dev`` folder there, ``.dev/a`` with it (seen 2026-12-04), while ``/tmp`` stays.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

A = Path("/tmp/parta")


def main(out: Path) -> None:
    (out / "gtsrb").mkdir(parents=True, exist_ok=True)
    with np.load(A / "train_a.npz") as a, np.load(".dev/b/train_b.npz") as b:
        np.savez(out / "gtsrb" / "gtsrb_train_32.npz", **{k: np.concatenate([a[k], b[k]]) for k in a.files})
    shutil.copy(".dev/b/gtsrb_test_32.npz", out / "gtsrb" / "gtsrb_test_32.npz")
    for f in ("signnames.csv", "gtsrb_meta.zip"):
        shutil.copy(A / f, out / "gtsrb" / f)
    shutil.copytree(A / "tsrd", out / "tsrd", dirs_exist_ok=True)
    with np.load(out / "gtsrb" / "gtsrb_train_32.npz") as d:
        print("GTSRB train images", d["images"].shape)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
