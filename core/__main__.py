"""Command line: ``python -m core datasets build|list``, ``train``, ``evaluate``, ``predict``.

Run ``python -m core <command> --help`` for each command's options.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core import config


def _datasets(args: argparse.Namespace) -> int:
    from core import builds, datasets
    if args.action == "build":
        if args.sample:
            path = builds.build_sample(Path(args.source), seed=args.seed)
            print(f"built embedded sample at {path}")
            return 0
        names = tuple(args.only) if args.only else ("GTSRB", "GTSRB_48", "Difficult", "Testing")
        timings = builds.build_standard(Path(args.source), seed=args.seed, names=names,
                                        progress=lambda m: print(m, file=sys.stderr))
        print(json.dumps(timings))
        return 0
    infos = datasets.list_datasets()
    if args.json:
        print(json.dumps([i.summary() for i in infos]))
    else:
        for i in infos:
            s = i.summary()["splits"]
            print(f"{i.name:12s} {i.num_classes:3d} classes  train {s['train']:6d}  val {s['val']:6d}  "
                  f"test {s['test']:6d}  {'(embedded sample)' if i.embedded else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("datasets", help="build or list datasets")
    d.add_argument("action", choices=["build", "list"])
    d.add_argument("--source", default=str(config.PROJECT_ROOT.parent / "shared" / "data"),
                   help="folder with gtsrb/ and tsrd/ npz files (default: ../shared/data)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--only", nargs="+", choices=["GTSRB", "GTSRB_48", "Difficult", "Testing"],
                   help="build only these datasets")
    d.add_argument("--sample", action="store_true", help="rebuild the embedded sample (data/sample) instead")
    d.add_argument("--json", action="store_true", help="list as JSON")
    d.set_defaults(func=_datasets)
    try:
        from core import cli_model
        cli_model.add_commands(sub)
    except ImportError:
        pass
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # our errors carry the fix; no traceback for the user
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
