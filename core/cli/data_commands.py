"""``python -m core datasets build|list|import|derive|delete``: built datasets and workspaces."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.base import config
from core.data import builds, built, datasets, workspaces


def _build(args: argparse.Namespace) -> int:
    if args.sample:
        path = builds.build_sample(Path(args.source), seed=args.seed)
        print(f"built embedded sample at {path}")
        return 0
    names = tuple(args.only) if args.only else builds.STANDARD_DATASETS
    timings = builds.build_standard(Path(args.source), seed=args.seed, names=names,
                                    progress=lambda f, m="", e=None: print(m, file=sys.stderr))
    print(json.dumps(timings))
    return 0


def _import(args: argparse.Namespace) -> int:
    if not (args.layout and args.path and args.name):
        raise ValueError("datasets import needs --layout, --path and --name")
    path = builds.import_dataset(args.layout, Path(args.path), name=args.name, seed=args.seed)
    print(json.dumps(built.read_info(path).summary()))
    return 0


def _derive(args: argparse.Namespace) -> int:
    if not (args.base and args.name):
        raise ValueError("datasets derive needs --from BASE and --name NAME")
    info = workspaces.derive(args.base, args.name)
    print(json.dumps(info.summary()) if args.json else f"workspace {info.name} derived from {args.base}, "
          f"version {info.fingerprint}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    name = args.target or args.name
    if not name:
        raise ValueError("datasets delete needs a NAME (a workspace)")
    workspaces.delete(name)
    print(f"deleted workspace {name}")
    return 0


def _list(args: argparse.Namespace) -> int:
    infos = datasets.list_datasets()
    if args.json:
        print(json.dumps([i.summary() for i in infos]))
        return 0
    for i in infos:
        s = i.summary()["splits"]
        kind = "(embedded sample)" if i.embedded else (f"workspace of {i.base}" if i.kind == "workspace" else "built")
        print(f"{i.name:12s} {i.num_classes:3d} classes  train {s['train']:6d}  val {s['val']:6d}  "
              f"test {s['test']:6d}  version {i.fingerprint}  {kind}")
    return 0


_ACTIONS = {"build": _build, "list": _list, "import": _import, "derive": _derive, "delete": _delete}


def _datasets(args: argparse.Namespace) -> int:
    return _ACTIONS[args.action](args)


def add_commands(sub) -> None:
    d = sub.add_parser("datasets", help="build, list, import, derive or delete datasets",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description="""\
Built datasets never change; users change workspaces, derived from a built dataset copy-on-write:
  python -m core datasets derive --from Testing --name Main
  python -m core datasets list          # workspaces with their base and version
  python -m core datasets delete Main   # workspaces only
""")
    d.add_argument("action", choices=list(_ACTIONS),
                   help="build the standard datasets, list datasets, import your own download, derive a "
                        "workspace from a built dataset, delete a workspace")
    d.add_argument("target", nargs="?", help="delete: the workspace to delete")
    d.add_argument("--source", default=str(config.PROJECT_ROOT.parent / "shared" / "data"),
                   help="folder with gtsrb/ and tsrd/ npz files (default: ../shared/data)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--only", nargs="+", choices=builds.STANDARD_DATASETS,
                   help="build only these datasets")
    d.add_argument("--sample", action="store_true", help="rebuild the embedded sample (data/sample) instead")
    d.add_argument("--json", action="store_true", help="list as JSON")
    d.add_argument("--layout", choices=builds.IMPORT_LAYOUTS, help="import: layout of --path")
    d.add_argument("--path", help="import: folder of the download (layout folder: also a .zip, e.g. from "
                                  "export dataset)")
    d.add_argument("--from", dest="base", help="derive: the built dataset the workspace starts from")
    d.add_argument("--name", help="import, derive: name of the new dataset")
    d.set_defaults(func=_datasets)
