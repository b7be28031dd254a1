"""``python -m core issues find``: the data issues of a dataset split as a model sees it (likely mislabelled
images, leakage across splits, outliers), ranked. It is the ``issues`` run the Explore page's Data issues tab
starts, in the foreground, or the finished one still valid for the dataset's version (then nothing is computed).
"""
from __future__ import annotations

import argparse
import json
import sys

from core import runs
from core.analysis.issues_run import IssuesRun, latest_issues, load_issues
from core.data import datasets


def _find(args: argparse.Namespace) -> int:
    cfg = IssuesRun(model=args.model, dataset=args.dataset, split=args.split)
    rec = None if args.again else latest_issues(cfg.model, cfg.dataset, cfg.split)
    if rec is None:
        def echo(frac: float, msg: str = "", entry: dict | None = None) -> None:
            if not args.json:
                print(f"[{frac:6.1%}] {msg}", file=sys.stderr, flush=True)
        run_id = runs.start("issues", cfg, foreground=True, echo=echo)
        rec = runs.get(run_id)
        if rec["status"] != "done":
            raise ValueError(f"issues run {run_id} {rec['status']}: {rec.get('error') or rec.get('message')}")
    found = load_issues(rec["id"])
    out = {"run": rec["id"],
           "mislabelled": [{"image_id": r["file"], "given": r["class_id"], "suggested": r["suggested"],
                            "score": r["score"]} for r in found.mislabelled],
           "leaks": [{"image_id": r["file"], "class_id": r["class_id"], "pair": r["pair"], "near": r["near"],
                      "near_split": r["near_split"], "near_class_id": r["near_class_id"], "score": r["score"]}
                     for r in found.leaks],
           "outliers": [{"image_id": r["file"], "class_id": r["class_id"], "score": r["score"]}
                        for r in found.outliers]}
    if args.json:
        print(json.dumps(out))
        return 0
    info = datasets.get_dataset(args.dataset)
    for name, rows in (("likely mislabelled", found.mislabelled), ("leakage", found.leaks),
                       ("outliers", found.outliers)):
        print(f"{name}: {len(rows):,}")
        for r in rows[:args.show]:
            print(f"  {r['file']}  {r['reason']}")
    if found.outlier_note:
        print(found.outlier_note)
    print(f"(run {rec['id']}; {info.name} version {info.fingerprint})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the ``python -m core`` parser."""
    p = sub.add_parser("issues", help="data issues of a dataset split: likely mislabelled images, leakage, outliers",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description="""\
  issues find --dataset D --split S --model M [--again] [--json]

Reuses the newest finished result for the dataset's current version; --again finds them anew. Act on the
findings with: images relabel|move|delete --dataset WORKSPACE ID...  (undo: images undo)
""")
    p.add_argument("action", choices=["find"])
    p.add_argument("--dataset", required=True, help="dataset or workspace")
    p.add_argument("--split", default="train", choices=datasets.SPLITS, help="split to examine (default: train)")
    p.add_argument("--model", required=True, help="model: registry name (python -m core models list)")
    p.add_argument("--again", action="store_true", help="find anew even if a valid result exists")
    p.add_argument("--show", type=int, default=10, help="findings printed per list without --json (default: 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_find)
