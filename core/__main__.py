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
    if args.action == "import":
        if not (args.layout and args.path and args.name):
            raise ValueError("datasets import needs --layout, --path and --name")
        path = builds.import_dataset(args.layout, Path(args.path), name=args.name, seed=args.seed)
        info = datasets.read_info(path)
        print(json.dumps(info.summary()))
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


def _resolve_model(ref: str) -> tuple[dict, str]:
    """A model name from the registry or a checkpoint path -> (checkpoint, name)."""
    from core import models, registry
    path = Path(ref)
    if path.suffix == ".pt" or path.exists():
        return models.load_checkpoint(path), path.stem
    return models.load_checkpoint(registry.get_model(ref).path), ref


def _train(args: argparse.Namespace) -> int:
    from core import datasets, registry, training
    from core.models import save_checkpoint
    cfg = training.TrainConfig(
        mode=args.mode, architecture=args.arch, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        augment=not args.no_augment, augment_p=args.augment_p, seed=args.seed,
        new_class_epochs=args.new_class_epochs, replay_per_class=args.replay_per_class,
        new_class_lr=args.new_class_lr,
        lwf_weight=args.lwf_weight, max_train_images=args.max_train_images,
        teachers=tuple(args.teacher or ()), distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature)
    parent, parent_name = _resolve_model(args.base) if args.base else (None, None)
    teachers = [_resolve_model(t)[0] for t in cfg.teachers]
    info = datasets.get_dataset(args.dataset)

    def progress(frac: float, msg: str, entry: dict | None) -> None:
        if entry is not None or not args.quiet:
            print(f"[{frac:6.1%}] {msg}" + (f"  {json.dumps(entry)}" if entry else ""), file=sys.stderr, flush=True)

    result = training.train(cfg, info, parent=parent, parent_name=parent_name, teachers=teachers, progress=progress)
    if args.out:
        save_checkpoint(result.checkpoint, Path(args.out))
        where = args.out
    else:
        where = str(registry.register(args.name, result.checkpoint).path)
    print(json.dumps({"saved": where, "seconds": round(result.seconds, 1), **result.checkpoint["metrics"]}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from core import datasets, evaluation
    ckpt, _ = _resolve_model(args.model)
    if args.npz:
        images, labels = evaluation.load_npz_split(Path(args.npz))
        files = None
    else:
        if not args.dataset:
            raise ValueError("give --dataset NAME (with --split) or --npz FILE")
        split = datasets.load_split(args.dataset, args.split)
        images, labels, files = split.images, split.labels, split.files
    summary, _ = evaluation.evaluate_checkpoint(ckpt, images, labels, files=files)
    if args.record:
        from core.models import save_checkpoint
        if not Path(args.model).is_file():
            raise ValueError("--record needs --model to be a checkpoint path")
        ckpt["metrics"].update({"test_acc": summary["accuracy"], "test_macro_f1": summary["macro_f1"],
                                "test_set": args.npz and Path(args.npz).name or f"{args.dataset}/{args.split}",
                                "test_n": summary["n"]})
        save_checkpoint(ckpt, Path(args.model))
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"n={summary['n']}  accuracy={summary['accuracy']:.4f}  macro_f1={summary['macro_f1']:.4f}  "
              f"{summary['images_per_s']:.0f} images/s")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from core import prediction
    ckpt, _ = _resolve_model(args.model)
    results = prediction.predict_paths(ckpt, args.images)
    if args.json:
        print(json.dumps([r.to_json() for r in results]))
    else:
        for r in results:
            print(f"{r.file}: {r.error}" if r.error else
                  f"{r.file}: " + ", ".join(f"{t['name']} ({t['p']:.1%})" for t in r.top[:3]))
    return 0 if all(r.error is None for r in results) else 1


def _add_model_commands(sub) -> None:
    from core.training import MODES
    from core.models import ARCHITECTURES
    t = sub.add_parser("train", help="train a model (scratch, resume, transfer_freeze, incremental)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description="""\
Modes:
  scratch          a new model on the dataset's classes
  resume           continue training all layers of --base on the same classes
  transfer_freeze  freeze --base's feature layers, retrain the fully connected head (new classifier if the
                   dataset's classes differ)
  incremental      expand --base's classifier with the dataset's new classes; train only the new rows for
                   --new-class-epochs on new-class images plus a replay buffer (peak rate --new-class-lr,
                   small batches), then fine-tune all layers on all classes (--lr)

Any mode can also distil from --teacher models (repeat it for a committee): the model learns the committee's
temperature-softened probabilities besides the labels (--distill-weight, --distill-temperature).

Examples (the commands behind every shipped model are in artifacts/MODEL_CARD.md):
  python -m core train --dataset GTSRB --mode scratch --arch bn_stn --epochs 35 --out my_model.pt
  python -m core train --dataset GTSRB_48 --mode incremental --base artifacts/benchmark.pt --epochs 6 --lr 1e-3 \
      --augment-p 0.1 --name my-incremental48
""")
    t.add_argument("--dataset", required=True)
    t.add_argument("--mode", choices=MODES, default="scratch")
    t.add_argument("--arch", choices=ARCHITECTURES, default="published", help="architecture (scratch mode)")
    t.add_argument("--base", help="base model: registry name or checkpoint path (all modes but scratch)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--no-augment", action="store_true", help="turn in-model augmentation off")
    t.add_argument("--augment-p", type=float, default=0.25, help="probability of each augmentation group")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--new-class-epochs", type=int, default=1, help="incremental: epochs training only new rows")
    t.add_argument("--replay-per-class", type=int, default=20, help="incremental: old-class replay images per class")
    t.add_argument("--new-class-lr", type=float, default=1e-2,
                   help="incremental: peak learning rate of phase 1 (new rows only)")
    t.add_argument("--lwf-weight", type=float, default=0.0, help="incremental: distillation weight (0 = off)")
    t.add_argument("--teacher", action="append", metavar="MODEL",
                   help="distil from this model (repeat for a committee): registry name or checkpoint path")
    t.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation term")
    t.add_argument("--distill-temperature", type=float, default=2.0, help="softening temperature of the teachers")
    t.add_argument("--max-train-images", type=int, help="cap train images per epoch (quick runs)")
    t.add_argument("--name", default="model", help="registry name for the new model")
    t.add_argument("--out", help="write the checkpoint to this path instead of registering it")
    t.add_argument("--quiet", action="store_true", help="print only per-epoch lines")
    t.set_defaults(func=_train)
    e = sub.add_parser("evaluate", help="evaluate a model on a dataset split or an npz file")
    e.add_argument("--model", required=True, help="registry name or checkpoint path")
    e.add_argument("--dataset")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--npz", help="npz file with images (N,H,W,3) uint8 and labels (N,)")
    e.add_argument("--json", action="store_true")
    e.add_argument("--record", action="store_true", help="store accuracy and macro F1 in the checkpoint's metrics")
    e.set_defaults(func=_evaluate)
    pr = sub.add_parser("predict", help="top-5 predictions for image files")
    pr.add_argument("--model", required=True, help="registry name or checkpoint path")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=_predict)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("datasets", help="build or list datasets")
    d.add_argument("action", choices=["build", "list", "import"],
                   help="build the standard datasets, list datasets, or import your own download")
    d.add_argument("--source", default=str(config.PROJECT_ROOT.parent / "shared" / "data"),
                   help="folder with gtsrb/ and tsrd/ npz files (default: ../shared/data)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--only", nargs="+", choices=["GTSRB", "GTSRB_48", "Difficult", "Testing"],
                   help="build only these datasets")
    d.add_argument("--sample", action="store_true", help="rebuild the embedded sample (data/sample) instead")
    d.add_argument("--json", action="store_true", help="list as JSON")
    d.add_argument("--layout", choices=["official", "kaggle", "folder", "npz"], help="import: layout of --path")
    d.add_argument("--path", help="import: folder of the download")
    d.add_argument("--name", help="import: name of the new dataset")
    d.set_defaults(func=_datasets)
    _add_model_commands(sub)
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
