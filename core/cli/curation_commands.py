"""``python -m core classes ...`` and ``images ...``: a workspace's classes and images (adding images is an import
run, like the app's; its flags take their defaults and help from :class:`core.curation.importing.ImportSettings`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from core import runs
from core.base.text import plural
from core.cli.config_flags import add_config_flags
from core.analysis import label_actions
from core.curation import importing
from core.curation.import_run import ImportRun
from core.data import augment, datasets, workspace_changes, workspaces
from core.data.images import load_image
from core.learning import registry


def _classes(args: argparse.Namespace) -> int:
    if args.action == "list":
        info = datasets.get_dataset(args.dataset)
        out = [{"class_id": c, "name": n, "images": sum(info.counts.get(s, {}).get(c, 0) for s in datasets.SPLITS)}
               for c, n in sorted(info.classes.items())]
        print(json.dumps(out) if args.json else "\n".join(f"{r['class_id']:4d}  {r['name']}  ({r['images']} images)"
                                                         for r in out))
        return 0
    if args.action == "add":
        if not args.name:
            raise ValueError("classes add needs --name")
        pict = load_image(args.pictogram) if args.pictogram else None
        cid = workspace_changes.add_class(args.dataset, args.name, pictogram=pict)
    else:
        if args.id is None:
            raise ValueError(f"classes {args.action} needs --id")
        cid = args.id
        if args.action == "rename":
            workspace_changes.rename_class(args.dataset, cid, args.name or "")
        else:
            workspace_changes.remove_class(args.dataset, cid)
    name = datasets.get_dataset(args.dataset).classes.get(cid)
    print(json.dumps({"class_id": cid, "name": name}) if args.json else f"{args.action}: class {cid} {name or ''}")
    return 0


def _class_arg(text: str) -> int:
    if text == workspaces.EXTRA:
        return workspaces.EXTRA_CLASS
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a class id (integer) or '{workspaces.EXTRA}', got {text!r}") from None


def _default_model() -> str:
    name = importing.default_segregation_model([m.name for m in registry.list_models()])
    if name is None:
        raise ValueError("smart segregation needs a model for its features and none is registered; give --model "
                         "or use --to test")
    return name


def _add_images(args: argparse.Namespace) -> int:
    if args.class_id is None:
        raise ValueError("images add needs --class ID (or --class extra)")
    # no --to: the Extra bucket for class 'extra', else the settings' default destination
    to = {"to": args.to} if args.to else {"to": workspaces.EXTRA} if args.class_id == workspaces.EXTRA_CLASS else {}
    settings = importing.ImportSettings(dataset=args.dataset, class_id=args.class_id, variants=args.variants,
                                        groups=tuple(g for g in (args.augment or "").split(",") if g), **to,
                                        val_ratio=args.val_ratio, seed=args.seed, on_leak=args.on_leak)
    cfg = ImportRun(settings, paths=tuple(str(Path(p).absolute()) for p in args.items),
                    model=args.model or (_default_model() if settings.to == "trainval" else None))
    run = runs.wait(runs.start("import", cfg), timeout=24 * 3600)
    if run["status"] != "done":
        raise ValueError(run.get("error") or run["message"])
    result = run["result"]
    print(json.dumps(result) if args.json else f"added {plural(result['added'])} {result['by_split']}; "
          f"{len(result['errors'])} refused, {plural(len(result['leaks']), 'near-duplicate')} in other splits")
    return 0


def _images(args: argparse.Namespace) -> int:
    if args.action == "add":
        return _add_images(args)
    if args.action == "list":
        records = workspaces.current_added(datasets.get_dataset(args.dataset))
        print(json.dumps(records) if args.json else "\n".join(
            f"{r['id']:>8s} {r['split']:6s} class {r['class_id']:3d}  {r['file']}  parent {r.get('parent')}"
            for r in records))
        return 0
    if args.action == "undo":
        print(f"undone: {workspace_changes.undo(args.dataset)}")
        return 0
    if args.action == "generated":  # the one switch: generated images in or out of training and evaluation
        if args.items not in (["on"], ["off"]):
            raise ValueError("images generated needs on or off: images generated --dataset WS off")
        print(workspace_changes.use_generated(args.dataset, args.items == ["on"]))
        return 0
    if not args.items:
        raise ValueError(f"images {args.action} needs image ids (see: images list)")
    if args.action == "move":
        if not args.to:
            raise ValueError("images move needs --to train|val|test")
        n = workspace_changes.move_images(args.dataset, args.items, split=args.to, force=args.force_test)
    elif args.action == "relabel":
        if not args.to:
            raise ValueError("images relabel needs --to CLASS (a class id or name; see: classes list)")
        workspaces.require_workspace(args.dataset)
        cid = label_actions.resolve_class(datasets.get_dataset(args.dataset), args.to)
        n = workspace_changes.relabel_images(args.dataset, args.items, class_id=cid)
    else:
        n = workspace_changes.delete_images(args.dataset, args.items)
    done = args.action + ("led" if args.action == "relabel" else "d")
    print(json.dumps({done: n}) if args.json else f"{done} {label_actions.plural(n)}")
    return 0


def add_commands(sub) -> None:
    c = sub.add_parser("classes", help="list, add, rename or remove the classes of a workspace")
    c.add_argument("action", choices=["list", "add", "rename", "remove"])
    c.add_argument("--dataset", required=True, help="the workspace")
    c.add_argument("--name", help="add, rename: the class name")
    c.add_argument("--id", type=int, help="rename, remove: the class id")
    c.add_argument("--pictogram", help="add: a reference image shown as the class's pictogram")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_classes)
    i = sub.add_parser("images", help="add, list, move, delete images of a workspace, or undo its last change",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=f"""\
  images add --dataset WS --class ID|extra PATH... [--augment GROUP[,GROUP...]] [--variants N]
             [--to trainval|test] [--val-ratio R] [--model NAME] [--seed N] [--on-leak report|skip] --json
  images list --dataset WS --json
  images move --dataset WS --to SPLIT ID... [--force-test]   (generated images go to test only forced)
  images generated --dataset WS on|off    (the one switch: generated images in or out of training and evaluation)
  images relabel --dataset WS --to CLASS ID...   (CLASS: an id or a class name; base images too)
  images delete --dataset WS ID...        (to the trash: images undo brings them back)
  images undo --dataset WS

PATH: image files, folders (walked) or zip archives. Augmentation groups: {', '.join(augment.list_groups())}.
""")
    i.add_argument("action", choices=["add", "list", "move", "relabel", "delete", "undo", "generated"])
    i.add_argument("items", nargs="*", metavar="PATH|ID",
                   help="add: files, folders, zips; move, relabel, delete: image ids or files")
    i.add_argument("--dataset", required=True, help="the workspace")
    i.add_argument("--class", dest="class_id", type=_class_arg, help="add: class id, or 'extra' (unlabelled)")
    i.add_argument("--augment", help=f"add: augmentation groups, comma-separated ({', '.join(augment.list_groups())})")
    i.add_argument("--to", help="add: trainval (smart segregation, default) or test; move: train, val or test; "
                   "relabel: a class id or name")
    add_config_flags(i, importing.ImportSettings, only=("variants", "val_ratio", "seed", "on_leak"),
                     help_prefix="add: ")
    i.add_argument("--model", help="add: model whose features drive smart segregation (default: "
                   f"{importing.SEGREGATION_MODEL})")
    i.add_argument("--force-test", action="store_true", help="move: allow generated images into a test split")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_images)
