"""Write the fixed novelty protocol's two sets from the shared data.

    python bench/novelty_sets.py --source ../shared/data --out /tmp/novelty

``known.npz``: the official GTSRB test set (12,630 images, the benchmark's classes). ``novel.npz``: the TSRD test
images of the classes GTSRB does not have (``core.data.builds.tsrd_not_in_gtsrb``), first copies only (523). Before
2026-12-04 the novel set also held TSRD 55's 26 images, GTSRB's own "No entry" sign under another name (549). Then:

    python -m core novelty --model benchmark --known-npz /tmp/novelty/known.npz --novel-npz /tmp/novelty/novel.npz --json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.data.builds import tsrd_not_in_gtsrb  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    src, out = Path(args.source), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with np.load(src / "gtsrb" / "gtsrb_test_32.npz") as g:
        np.savez(out / "known.npz", images=g["images"], labels=g["labels"])
    with np.load(src / "tsrd" / "tsrd_test_32.npz") as t:
        keep = tsrd_not_in_gtsrb(t["labels"]) & t["first_copy"]
        np.savez(out / "novel.npz", images=t["images"][keep], labels=t["labels"][keep])
    print(f"known {len(np.load(out / 'known.npz')['images'])}, novel {int(keep.sum())} -> {out}")


if __name__ == "__main__":
    main()
