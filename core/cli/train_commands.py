"""``python -m core train``: a training is a run, in this process (listed by ``runs list``, resumable with
``--resume-run`` after a crash); under torchrun the other ranks train alongside and write nothing.

The flags are generated from the fields of :class:`core.learning.training.TrainConfig`, so every setting is
reachable here with the same default and help.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap

from core import runs
from core.base.progress import is_batch_point
from core.cli.config_flags import add_config_flags
from core.data import datasets
from core.learning import distributed, models, registry, training
from core.learning.train_run import TrainRun


def _train(args: argparse.Namespace) -> int:
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


def _train_config(args: argparse.Namespace) -> TrainRun:
    if not args.dataset:
        raise ValueError("give --dataset NAME (or --resume-run RUN_ID to continue an interrupted training)")
    cfg = training.TrainConfig.from_json({f.name: getattr(args, f.name)
                                          for f in dataclasses.fields(training.TrainConfig)})
    return TrainRun(cfg, dataset=args.dataset, name=args.name, base=args.base, out=args.out)


def _train_worker(args: argparse.Namespace) -> int:
    """A torchrun rank other than 0: the same checks and training, nothing written (rank 0 keeps the records)."""
    run = _train_config(args)
    run.check(other_rank=True)  # rank 0 has registered this training: its name is promised to it
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
    if r.get("vs_base") and not args.json:
        print(describe_vs_base(r["vs_base"]), file=sys.stderr, flush=True)
    print(json.dumps({"run": run_id, "saved": out or str(registry.get_model(r["model"]).path),
                      **{k: v for k, v in r.items() if k != "model"}}))
    return 0


def describe_vs_base(cmp: dict) -> str:
    """The comparison with the base model in a few lines (the terminal's; ``--json`` has all of it)."""
    def group(g: dict) -> str:
        if not g["images"]:
            return "no images"
        return (f"{100 * g['before']:.1f} % -> {100 * g['after']:.1f} % ({g['correct_before']} -> "
                f"{g['correct_after']} of {g['images']} images)")
    lines = [f"compared with the base model on {cmp['dataset']}/{cmp['split']}:",
             f"  old classes ({cmp['old_classes']['classes']}): {group(cmp['old_classes'])}",
             f"  new classes ({cmp['new_classes']['classes']}): {group(cmp['new_classes'])}"]
    lines += [f"  lost accuracy: {r['class_id']}: {r['name']} {100 * r['before']:.1f} % -> {100 * r['after']:.1f} % "
              f"({r['delta_points']:+.1f} pt)" for r in cmp["regressions"]]
    return "\n".join(lines)


def add_commands(sub) -> None:
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
  python -m core train --dataset GTSRB_48 --mode incremental --base artifacts/benchmark.pt --epochs 6 \\
      --augment-p 0.1 --name my-incremental48
""")
    t.add_argument("--dataset", help="dataset or workspace to train on")
    t.add_argument("--resume-run", metavar="RUN_ID", help="continue an interrupted training run after its last "
                   "finished epoch (its own settings; see `runs list`)")
    t.add_argument("--base", help="base model: registry name or checkpoint path (all modes but scratch)")
    add_config_flags(t, training.TrainConfig)
    t.add_argument("--name", default="model", help="registry name for the new model")
    t.add_argument("--out", help="write the checkpoint to this path instead of registering it")
    t.add_argument("--quiet", action="store_true", help="print only per-epoch lines")
    t.add_argument("--json", action="store_true", help="print only the result as JSON on stdout (it is printed "
                   "either way; without --json a summary of the comparison with the base model goes to stderr)")
    t.set_defaults(func=_train)
