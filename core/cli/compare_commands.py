"""Command line: ``python -m core compare``: two models on one dataset split, image by image.

Each model is judged by its current report on the split (same model file, same dataset version); a model without
one is evaluated first, in the foreground, as ``python -m core evaluate`` does, so its report appears in the app.
"""
from __future__ import annotations

import argparse
import json
import sys

from core import runs
from core.analysis import model_diff
from core.data.datasets import SPLITS


def _compare(args: argparse.Namespace) -> int:
    if len(args.model or []) != 2:
        raise ValueError(f"give exactly two models: --model A --model B (got {len(args.model or [])})")
    a, b = args.model
    for name, cfg in model_diff.missing_evaluations(a, b, args.dataset, args.split).items():
        if not args.json:
            print(f"evaluating {name} on {args.dataset}/{args.split} (no current report)", file=sys.stderr)
        rec = runs.get(runs.start("evaluate", cfg, foreground=True))
        if rec["status"] != "done":
            raise ValueError(f"evaluation of {name} {rec['status']}: {rec.get('error') or rec.get('message')}")
    diff = model_diff.diff_models(a, b, args.dataset, args.split)
    if args.json:
        print(json.dumps(diff.summary()))
        return 0
    s = diff.summary()
    print(f"{a} vs {b} on {args.dataset}/{args.split}: {s['n']:,} images of {len(s['shared_classes'])} shared "
          f"classes; {a} right and {b} wrong: {s['a_right_b_wrong']}, {b} right and {a} wrong: "
          f"{s['b_right_a_wrong']}; McNemar exact p = {s['mcnemar_p']:.4g}"
          + ("" if s["track_p"] is None else f"; by track ({s['tracks']:,} tracks, each counted once) p = "
             f"{s['track_p']:.4g}"))
    if s["only_a"] or s["only_b"]:
        print(f"left out: classes only {a} predicts {s['only_a']}, only {b} predicts {s['only_b']}")
    for row in s["per_class"][:args.top]:
        print(f"  {row['class_id']:3d}: {row['name'][:40]:40s} n={row['n']:4d}  {row['accuracy_a']:.3f} -> "
              f"{row['accuracy_b']:.3f} ({row['delta']:+.3f})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the ``python -m core`` parser."""
    c = sub.add_parser("compare", help="compare two models on a dataset split: disagreements, McNemar's exact "
                                       "test, per-class accuracy deltas (evaluates a model first if needed)")
    c.add_argument("--model", action="append", required=True, help="a registered model; give it twice: A then B")
    c.add_argument("--dataset", required=True)
    c.add_argument("--split", default="test", choices=SPLITS)
    c.add_argument("--top", type=int, default=10, help="per-class rows printed (largest change first)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(func=_compare)
