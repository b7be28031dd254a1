"""Command line: ``python -m core export dataset|model|report``: files for use outside the workbench.

  python -m core export dataset Main --out main.zip          # class folders + labels.csv (re-importable)
  python -m core export model incremental48 --out m.pt       # TorchScript + m.json (the model's card)
  python -m core export report ID --format csv --out r.csv   # one table (--table); --format json: all of it

Each refuses an existing file unless ``--force``, and writes through a temp file, so an interrupted export
leaves nothing at ``--out``.
"""
from __future__ import annotations

import argparse
import sys

from core.analysis import report_export
from core.data import export as data_export
from core.learning import export as model_export


def _progress(fraction: float, message: str = "", entry: dict | None = None) -> None:
    print(f"{fraction:6.1%} {message}", file=sys.stderr)


def _dataset(args: argparse.Namespace) -> int:
    res = data_export.export_dataset(args.name, args.out, overwrite=args.force, progress=_progress)
    splits = ", ".join(f"{s} {n:,}" for s, n in res.per_split.items())
    print(f"wrote {res.path}: {data_export.plural(res.images, 'image')} ({splits}), "
          f"{data_export.plural(res.classes, 'class', 'classes')}"
          + (f"; {data_export.plural(res.left_out, 'image')} without a class (Extra) left out" if res.left_out else ""))
    return 0


def _model(args: argparse.Namespace) -> int:
    res = model_export.export_model(args.name, args.out, overwrite=args.force)
    print(f"wrote {res.path} (TorchScript, {len(res.card['classes'])} classes) and its card {res.card_path}; "
          f"logits match the checkpoint within {res.max_logit_diff:.1e}")
    return 0


def _report(args: argparse.Namespace) -> int:
    res = report_export.export_report(args.name, args.out, fmt=args.format, table=args.table, overwrite=args.force)
    what = f"the {res.table.replace('_', '-')} table" if res.table else "the whole report"
    print(f"wrote {res.path}: {what} as {res.fmt.upper()}")
    return 0


_ACTIONS = {"dataset": _dataset, "model": _model, "report": _report}


def _export(args: argparse.Namespace) -> int:
    return _ACTIONS[args.what](args)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the ``python -m core`` parser."""
    e = sub.add_parser("export", help="export a dataset (zip), a model (TorchScript + card) or a report (CSV/JSON)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__)
    e.add_argument("what", choices=list(_ACTIONS), help="what to export")
    e.add_argument("name", help="the dataset or workspace, the model (name or .pt file), or the report id")
    e.add_argument("--out", required=True, help="the file to write (.zip, .pt, .csv or .json)")
    e.add_argument("--format", choices=report_export.FORMATS, default="csv", help="report: csv or json")
    e.add_argument("--table", choices=report_export.TABLES, default="predictions",
                   help="report as csv: which table (json holds all of them)")
    e.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    e.set_defaults(func=_export)
