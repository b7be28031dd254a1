"""Command line: ``python -m core datasets build|list|import|derive|delete``, ``classes``, ``images``, ``train``,
``evaluate``, ``novelty``, ``robustness``, ``predict``, ``detect``, ``runs list``, ``models list|delete``.

Run ``python -m core <command> --help`` for each command's options. The ``train`` flags are generated from the
fields of :class:`core.learning.training.TrainConfig`, so every setting is reachable here with the same default
and help. Long work (training, evaluation, imports) runs as runs, the same ones the app starts.
"""
from __future__ import annotations

import argparse
import json
import sys

import core.kinds  # noqa: F401  (registers every run kind)
from core import runs
from core.cli import (analysis_commands, compare_commands, curation_commands, data_commands, detect_commands,
                      detector_commands, generate_commands, export_commands, issues_commands, train_commands)
from core.learning import registry


def _list_runs(args: argparse.Namespace) -> int:
    found = runs.list_runs(args.kind, statuses=tuple(args.status) if args.status else None)
    keys = ("id", "kind", "status", "title", "progress", "message", "created", "updated", "inputs", "result", "error")
    rows = [{k: r.get(k) for k in keys} for r in found]
    print(json.dumps(rows) if args.json else "\n".join(
        f"{r['id']:40s} {r['status']:11s} {r['progress'] or 0:6.1%}  {r['title']}" for r in rows))
    return 0


def _list_models(args: argparse.Namespace) -> int:
    found = registry.list_models()
    rows = [{"name": m.name, "path": str(m.path), "architecture": m.architecture, "num_classes": m.num_classes,
             "dataset": m.dataset, "parent": m.parent, "mode": m.mode, "epochs": m.epochs, "shipped": m.shipped,
             "metrics": m.metrics, "version": registry.file_version(m.path)} for m in found]
    print(json.dumps(rows) if args.json else "\n".join(m.label() for m in found))
    return 0


def _models(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list_models(args)
    if not args.name:
        raise ValueError("models delete needs a NAME (a trained model; shipped models are read-only)")
    registry.delete_model(args.name)
    print(f"deleted model {args.name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    data_commands.add_commands(sub)
    curation_commands.add_commands(sub)
    train_commands.add_commands(sub)
    analysis_commands.add_commands(sub)
    detect_commands.add_commands(sub)
    issues_commands.add_commands(sub)
    compare_commands.add_commands(sub)
    export_commands.add_commands(sub)
    detector_commands.add_commands(sub)
    generate_commands.add_commands(sub)
    r = sub.add_parser("runs", help="list runs (all long work: training, evaluation, imports, maps...), newest first")
    r.add_argument("action", choices=["list"])
    r.add_argument("--kind", choices=runs.kind_names())
    r.add_argument("--status", nargs="+", help="only runs with these statuses (queued, running, done, failed, ...)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_list_runs)
    m = sub.add_parser("models", help="list the registered models (shipped and trained), or delete a trained one")
    m.add_argument("action", choices=["list", "delete"])
    m.add_argument("name", nargs="?", help="delete: the model")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_models)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "items", None) is not None and not any(e.startswith("-") for e in extra):
        args.items += extra  # PATH/ID arguments after options: "images add --class 3 a.png b.png"
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except ValueError as e:  # our errors carry the fix; no traceback for the user
        print(f"error: {e}", file=sys.stderr)
        return 2
