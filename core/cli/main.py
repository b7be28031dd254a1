"""Command line: ``python -m core datasets build|list|import|derive|delete``, ``train``, ``evaluate``, ``robustness``,
``predict``.

Run ``python -m core <command> --help`` for each command's options. The ``train`` flags are generated from the
fields of :class:`core.learning.training.TrainConfig`, so every setting is reachable here with the same default and help.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
from pathlib import Path

import numpy as np

from core.analysis import corruptions, evaluation, novelty, prediction
from core.base import config, files
from core.data import augment, builds, built, datasets, workspaces
from core.learning import distributed, models, registry, training
from core.curation import importing as curation
from core import runs
from core.data.images import load_image
from core.base.progress import is_batch_point


def _datasets(args: argparse.Namespace) -> int:
    action = _DATASET_ACTIONS[args.action]
    return action(args)


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


_DATASET_ACTIONS = {"build": _build, "list": _list, "import": _import, "derive": _derive, "delete": _delete}


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
        cid = workspaces.add_class(args.dataset, args.name, pictogram=pict)
    else:
        if args.id is None:
            raise ValueError(f"classes {args.action} needs --id")
        cid = args.id
        if args.action == "rename":
            workspaces.rename_class(args.dataset, cid, args.name or "")
        else:
            workspaces.remove_class(args.dataset, cid)
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


def _images(args: argparse.Namespace) -> int:
    if args.action == "add":
        if args.class_id is None:
            raise ValueError("images add needs --class ID (or --class extra)")
        to = args.to or (workspaces.EXTRA if args.class_id == workspaces.EXTRA_CLASS else "trainval")
        model = args.model or (_default_model() if to == "trainval" else None)
        cfg = runs.ImportRun(dataset=args.dataset, class_id=args.class_id, paths=tuple(str(Path(p).absolute()) for p in args.items),
                             groups=tuple(g for g in (args.augment or "").split(",") if g), variants=args.variants,
                             to=to, val_ratio=args.val_ratio, model=model, seed=args.seed, on_leak=args.on_leak)
        run = runs.wait(runs.start("import", cfg), timeout=24 * 3600)
        if run["status"] != "done":
            raise ValueError(run.get("error") or run["message"])
        result = run["result"]
        print(json.dumps(result) if args.json else f"added {result['added']} image(s) {result['by_split']}; "
              f"{len(result['errors'])} refused, {len(result['leaks'])} near-duplicate(s) in other splits")
        return 0
    if args.action == "list":
        records = workspaces.current_added(datasets.get_dataset(args.dataset))
        print(json.dumps(records) if args.json else "\n".join(
            f"{r['id']:>8s} {r['split']:6s} class {r['class_id']:3d}  {r['file']}  parent {r.get('parent')}"
            for r in records))
        return 0
    if args.action == "undo":
        print(f"undone: {workspaces.undo(args.dataset)}")
        return 0
    if not args.items:
        raise ValueError(f"images {args.action} needs image ids (see: images list)")
    if args.action == "move":
        if not args.to:
            raise ValueError("images move needs --to train|val|test")
        n = workspaces.move_images(args.dataset, args.items, split=args.to)
    else:
        n = workspaces.delete_images(args.dataset, args.items)
    print(json.dumps({args.action + "d": n}) if args.json else f"{args.action}d {n} image(s)")
    return 0


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


def _default_model() -> str:
    names = [m.name for m in registry.list_models()]
    if not names:
        raise ValueError("smart segregation needs a model for its features and none is registered; give --model "
                         "or use --to test")
    return "benchmark" if "benchmark" in names else names[0]


def _resolve_model(ref: str) -> tuple[dict, str]:
    """A model name from the registry or a checkpoint path -> (checkpoint, name)."""
    path = registry.model_path(ref)
    return models.load_checkpoint(path), path.stem


def _train(args: argparse.Namespace) -> int:
    """A training is a run, in this process: listed by `runs list`, resumable with --resume-run after a crash."""
    def progress(frac: float, msg: str = "", entry: dict | None = None) -> None:
        if is_batch_point(entry):
            entry = None  # live curve points are for the app; the terminal gets the epoch lines
        if entry is not None or not args.quiet:
            print(f"[{frac:6.1%}] {msg}" + (f"  {json.dumps(entry)}" if entry else ""), file=sys.stderr, flush=True)

    place = distributed.init(args.device)  # joins the job when started by torchrun; alone otherwise
    try:
        if place.active and args.resume_run:
            raise ValueError("--resume-run continues a run in one process; start it without torchrun")
        if not place.main:
            return _train_worker(args)
        return _train_main(args, progress)
    finally:
        distributed.shutdown()


def _train_config(args: argparse.Namespace) -> runs.TrainRun:
    if not args.dataset:
        raise ValueError("give --dataset NAME (or --resume-run RUN_ID to continue an interrupted training)")
    cfg = training.TrainConfig.from_json({f.name: getattr(args, f.name) for f in dataclasses.fields(training.TrainConfig)})
    return runs.TrainRun(cfg, dataset=args.dataset, name=args.name, base=args.base, out=args.out)


def _train_worker(args: argparse.Namespace) -> int:
    """A torchrun rank other than 0: the same checks and training, nothing written (rank 0 keeps the records)."""
    run = _train_config(args)
    run.check()
    parent = models.load_checkpoint(registry.model_path(run.base)) if run.base else None
    teachers = [models.load_checkpoint(registry.model_path(t)) for t in run.train.teachers]
    training.train(run.train, datasets.get_dataset(run.dataset), parent=parent, teachers=teachers,
                   parent_name=registry.model_label(run.base) if run.base else None)
    return 0


def _train_main(args: argparse.Namespace, progress) -> int:
    if args.resume_run:
        if args.dataset or args.base or args.out:
            raise ValueError("--resume-run continues a run with its own settings; give no --dataset, --base or --out")
        runs.recover_interrupted()
        run_id = runs.resume(args.resume_run, foreground=True, echo=progress)
    else:
        run_id = runs.start("train", _train_config(args), foreground=True, echo=progress)
    rec = runs.get(run_id)
    if rec["status"] != "done":
        raise ValueError(f"training run {run_id} {rec['status']}: {rec.get('error') or rec.get('message')}")
    r, out = rec["result"], rec["config"].get("out")
    print(json.dumps({"run": run_id, "saved": out or str(registry.get_model(r["model"]).path),
                      **{k: v for k, v in r.items() if k != "model"}}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    ckpt, _ = _resolve_model(args.model)
    if args.npz:
        images, labels = evaluation.load_npz_split(Path(args.npz))
        file_names = None
    else:
        if not args.dataset:
            raise ValueError("give --dataset NAME (with --split) or --npz FILE")
        split = datasets.load_split(args.dataset, args.split,
                                    classes=ckpt["class_ids"] if args.classes == "model" else None)
        images, labels, file_names = split.images, split.labels, split.files
    summary, _ = evaluation.evaluate_checkpoint(ckpt, images, labels, files=file_names)
    if args.record:
        if args.classes == "model":
            raise ValueError("--record keeps the accuracy on the whole split; drop --classes model")
        if not Path(args.model).is_file():
            raise ValueError("--record needs --model to be a checkpoint path")
        ckpt["metrics"].update({"test_acc": summary["accuracy"], "test_macro_f1": summary["macro_f1"],
                                "test_set": args.npz and Path(args.npz).name or f"{args.dataset}/{args.split}",
                                "test_n": summary["n"]})
        models.save_checkpoint(ckpt, Path(args.model))
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"n={summary['n']}  accuracy={summary['accuracy']:.4f}  macro_f1={summary['macro_f1']:.4f}  "
              f"{summary['images_per_s']:.0f} images/s")
    return 0


def _robustness(args: argparse.Namespace) -> int:
    """Accuracy under the corruption benchmark (:mod:`core.analysis.corruptions`) on a split's images of the model's classes."""
    ckpt, _ = _resolve_model(args.model)
    split = datasets.load_split(args.dataset, args.split, classes=ckpt["class_ids"])
    images, labels = split.images, split.labels
    if args.limit and len(labels) > args.limit:  # a seeded sample, the same for every model
        pick = np.sort(np.random.default_rng(args.seed).choice(len(labels), args.limit, replace=False))
        images, labels = images[pick], labels[pick]
    index = {c: i for i, c in enumerate(ckpt["class_ids"])}
    names = tuple(n.strip() for n in args.corruptions.split(",")) if args.corruptions else None
    result = corruptions.robustness(models.model_from_checkpoint(ckpt), images,
                                    np.array([index[int(c)] for c in labels]), names=names,
                                    severities=tuple(args.severities), seed=args.seed,
                                    progress=None if args.json else lambda f, m="", e=None: print(m, file=sys.stderr))
    result = {"model": args.model, "dataset": args.dataset, "split": args.split, **result}
    if args.out:
        files.atomic_write_bytes(Path(args.out), json.dumps(result, indent=1).encode("utf-8"))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"n={result['n']}  clean {result['clean']:.4f}  mCA {result['mca']:.4f}  "
              f"(relative {result['relative_mca']:.3f})")
        for name, acc in result["mean_by_corruption"].items():
            print(f"  {name:15s} {acc:.4f}  " + "  ".join(f"s{k}={v:.3f}" for k, v in result["by_corruption"][name].items()))
    return 0


def _predict(args: argparse.Namespace) -> int:
    path = registry.model_path(args.model)
    ckpt = models.load_checkpoint(path)
    model = models.model_from_checkpoint(ckpt)
    try:
        detector = novelty.load_or_fit(path, model, ckpt)
    except ValueError as e:
        detector = None
        print(f"note: no novelty check: {e}", file=sys.stderr)
    results = prediction.predict_paths(ckpt, args.images, model=model, detector=detector)
    if args.json:
        print(json.dumps([r.to_json() for r in results]))
    else:
        for r in results:
            print(f"{r.file}: {r.error}" if r.error else
                  f"{r.file}: " + ", ".join(f"{t['name']} ({t['p']:.1%})" for t in r.top[:3])
                  + ("  [probably not one of the model's classes]" if r.novelty and r.novelty["novel"] else ""))
    return 0 if all(r.error is None for r in results) else 1


def _add_config_flags(parser: argparse.ArgumentParser, config_type: type) -> None:
    """One flag per field of a config dataclass: name, type, default, choices and help from the field."""
    for f in dataclasses.fields(config_type):
        meta = f.metadata
        flags = [meta.get("flag", "--" + f.name.replace("_", "-"))]
        if "--" + f.name.replace("_", "-") not in flags:
            flags.append("--" + f.name.replace("_", "-"))
        kw = {"dest": f.name, "help": f"{meta.get('help', '')} (default: %(default)s)"}
        if f.type == "bool":
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=f.default, **kw)
        elif f.type.startswith("tuple"):
            parser.add_argument(*flags, action="append", default=[], metavar=meta.get("metavar"),
                                **{**kw, "help": meta.get("help", "")})
        else:
            py_type = {"int": int, "float": float, "str": str, "int | None": int}[f.type]
            parser.add_argument(*flags, type=py_type, default=f.default, choices=meta.get("choices"), **kw)


def _novelty(args: argparse.Namespace) -> int:
    path = registry.model_path(args.model)
    ckpt = models.load_checkpoint(path)
    model = models.model_from_checkpoint(ckpt)
    det = novelty.load_or_fit(path, model, ckpt, progress=lambda f, m="", e=None: print(m, file=sys.stderr))
    methods = tuple(args.methods.split(",")) if args.methods else novelty.METHODS
    sets = [evaluation.load_npz_images(Path(p)) for p in (args.known_npz, args.novel_npz)]
    known, novel = (det.scores(model, images, methods) for images in sets)
    out = {"methods": {m: novelty.auroc_fpr95(known[m], novel[m]) for m in methods},
           "n_known": len(sets[0]), "n_novel": len(sets[1]), "default_method": novelty.DEFAULT_METHOD,
           "thresholds": {m: det.thresholds.get(m) for m in methods}}
    print(json.dumps(out) if args.json else "\n".join(
        f"{m:12s} AUROC {r['auroc']:.4f}  FPR95 {r['fpr95']:.4f}" for m, r in out["methods"].items()))
    return 0


def _add_model_commands(sub) -> None:
    modes = "\n".join(textwrap.fill(text, 110, initial_indent=f"  {mode:17s}", subsequent_indent=" " * 19)
                      for mode, text in training.MODE_DESCRIPTIONS.items())
    t = sub.add_parser("train", help=f"train a model ({', '.join(training.MODES)})",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=f"""\
Modes:
{modes}

Any mode can also distil from --teacher models (repeat it for a committee): the model learns the committee's
temperature-softened probabilities besides the labels (--distill-weight, --distill-temperature).

Examples (the commands behind every shipped model are in artifacts/MODEL_CARD.md):
  python -m core train --dataset GTSRB --mode scratch --arch bn_stn --epochs 35 --out my_model.pt
  python -m core train --dataset GTSRB_48 --mode incremental --base artifacts/benchmark.pt --epochs 6 --lr 1e-3 \\
      --augment-p 0.1 --name my-incremental48
""")
    t.add_argument("--dataset", help="dataset or workspace to train on")
    t.add_argument("--resume-run", metavar="RUN_ID", help="continue an interrupted training run after its last "
                   "finished epoch (its own settings; see `runs list`)")
    t.add_argument("--base", help="base model: registry name or checkpoint path (all modes but scratch)")
    _add_config_flags(t, training.TrainConfig)
    t.add_argument("--name", default="model", help="registry name for the new model")
    t.add_argument("--out", help="write the checkpoint to this path instead of registering it")
    t.add_argument("--quiet", action="store_true", help="print only per-epoch lines")
    t.set_defaults(func=_train)
    e = sub.add_parser("evaluate", help="evaluate a model on a dataset split or an npz file")
    e.add_argument("--model", required=True, help="registry name or checkpoint path")
    e.add_argument("--dataset")
    e.add_argument("--split", default="test", choices=datasets.SPLITS)
    e.add_argument("--npz", help="npz file with images (N,H,W,3) uint8 and labels (N,)")
    e.add_argument("--classes", choices=("all", "model"), default="all",
                   help="all: every image of the split, those of classes the model lacks count as errors (default); "
                        "model: only the images of the model's classes (as the app's default)")
    e.add_argument("--json", action="store_true")
    e.add_argument("--record", action="store_true", help="store accuracy and macro F1 in the checkpoint's metrics")
    e.set_defaults(func=_evaluate)
    nv = sub.add_parser("novelty", help="how well novelty scores tell images of unknown classes from known ones")
    nv.add_argument("--model", required=True, help="registry name or checkpoint path")
    nv.add_argument("--known-npz", required=True, help="npz with an images array of the model's classes")
    nv.add_argument("--novel-npz", required=True, help="npz with an images array of classes the model lacks")
    nv.add_argument("--methods", help=f"comma-separated subset of {', '.join(novelty.METHODS)}")
    nv.add_argument("--json", action="store_true")
    nv.set_defaults(func=_novelty)
    rb = sub.add_parser("robustness", help="accuracy under 12 image corruptions at 5 severities (ImageNet-C style)")
    rb.add_argument("--model", required=True, help="registry name or checkpoint path")
    rb.add_argument("--dataset", required=True)
    rb.add_argument("--split", default="val", choices=datasets.SPLITS,
                    help="val to choose between models (default); test to report the chosen one, once")
    rb.add_argument("--limit", type=int, default=None, help="a seeded sample of this many images (same for every model)")
    rb.add_argument("--corruptions", help=f"comma-separated subset of {', '.join(corruptions.CORRUPTIONS)}")
    rb.add_argument("--severities", type=int, nargs="+", default=list(corruptions.SEVERITIES))
    rb.add_argument("--seed", type=int, default=0, help="seed of the corruptions and the sample")
    rb.add_argument("--out", help="also write the result as JSON to this file")
    rb.add_argument("--json", action="store_true")
    rb.set_defaults(func=_robustness)
    pr = sub.add_parser("predict", help="top-5 predictions for image files")
    pr.add_argument("--model", required=True, help="registry name or checkpoint path")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=_predict)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("datasets", help="build, list, import, derive or delete datasets",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description="""\
Built datasets never change; users change workspaces, derived from a built dataset copy-on-write:
  python -m core datasets derive --from Testing --name Main
  python -m core datasets list          # workspaces with their base and version
  python -m core datasets delete Main   # workspaces only
""")
    d.add_argument("action", choices=list(_DATASET_ACTIONS),
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
    d.add_argument("--path", help="import: folder of the download")
    d.add_argument("--from", dest="base", help="derive: the built dataset the workspace starts from")
    d.add_argument("--name", help="import, derive: name of the new dataset")
    d.set_defaults(func=_datasets)
    _add_curation_commands(sub)
    _add_model_commands(sub)
    r = sub.add_parser("runs", help="list runs (all long work: training, evaluation, imports, maps...), newest first")
    r.add_argument("action", choices=["list"])
    r.add_argument("--kind", choices=list(runs.KINDS))
    r.add_argument("--status", nargs="+", help="only runs with these statuses (queued, running, done, failed, ...)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_list_runs)
    m = sub.add_parser("models", help="list the registered models (shipped and trained)")
    m.add_argument("action", choices=["list"])
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_list_models)
    return p


def _add_curation_commands(sub) -> None:
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
  images move --dataset WS --to SPLIT ID...
  images delete --dataset WS ID...        (to the trash: images undo brings them back)
  images undo --dataset WS

PATH: image files, folders (walked) or zip archives. Augmentation groups: {', '.join(augment.GROUPS)}.
""")
    i.add_argument("action", choices=["add", "list", "move", "delete", "undo"])
    i.add_argument("items", nargs="*", metavar="PATH|ID", help="add: files, folders, zips; move, delete: image ids")
    i.add_argument("--dataset", required=True, help="the workspace")
    i.add_argument("--class", dest="class_id", type=_class_arg, help="add: class id, or 'extra' (unlabelled)")
    i.add_argument("--augment", help=f"add: augmentation groups, comma-separated ({', '.join(augment.GROUPS)})")
    i.add_argument("--variants", type=int, default=0, help="add: augmented copies per upload (default 0)")
    i.add_argument("--to", help="add: trainval (smart segregation, default) or test; move: train, val or test")
    i.add_argument("--val-ratio", type=float, default=0.2, help="add: val share of train + val (default 0.2)")
    i.add_argument("--model", help="add: model whose features drive smart segregation (default: benchmark)")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--on-leak", choices=curation.LEAK_ACTIONS, default="report",
                   help="add: near-duplicates of images in other splits: report them, or skip those uploads")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_images)


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

