"""``python -m core generate``: make more like these — new labelled images near a report's mistakes (or images of
a dataset), added to a workspace with their provenance; ``python -m core generator train``: train the
class-conditional generator the ``latent`` method samples from.

  python -m core generate --from-report RUN_ID --method augment --per-image 8 --to ws1
  python -m core generate --images val/00012_00003.png --dataset GTSRB --method latent --per-image 4 --to ws1 --json
  python -m core generator train --dataset GTSRB --epochs 6 --feature-weight 2.0 --out artifacts/generator.pt

``--from-report ID`` starts from the report's misclassified images (most confident first; ``--which
low_confidence|both`` for correctly classified images below ``--max-confidence`` too), at most ``--limit`` of
them, and the method consults the report's model; ``--images`` names files of ``--dataset`` (as its index names
them; an added image by id too; default: the ``--to`` workspace, whose base images count), classified by
``--model``. The images go to split ``--split`` (train by default;
a test split is refused unless ``--force-test``) of workspace ``--to`` as one change (``images undo`` takes it
back); a built dataset is refused: derive a workspace first. ``--json`` prints ``{"workspace", "added",
"method", "generator_version", "sources", "message"}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from core.analysis import reports
from core.data import workspaces
from core.feedback import generate as generation
from core.feedback import methods, sources
from core.feedback.generator_training import GeneratorTrainConfig, train_generator


def _generate(args: argparse.Namespace) -> int:
    # every check that can refuse the request comes before any image is made
    generation.check_split(args.split, force_test=args.force_test)
    workspaces.require_writable(args.to)
    if args.from_report is not None:
        mistakes = sources.from_report(args.from_report, which=args.which, max_confidence=args.max_confidence,
                                       limit=args.limit)
        model = reports.load_report(args.from_report).summary["model"]
    else:
        model = args.model  # the images' dataset: --dataset, else the target workspace (its base images included)
        mistakes = sources.from_images(args.dataset or args.to, args.images, model=model)
    out = sys.stderr if args.json else sys.stdout
    made = generation.generate(mistakes, method=args.method, per_image=args.per_image, seed=args.seed, model=model,
                               progress=None if args.json else _progress)
    if made.message:
        print(f"note: {made.message}", file=out)
    added = generation.add_generated(args.to, made, split=args.split, force_test=args.force_test)
    if args.json:
        print(json.dumps({"workspace": added.workspace, "added": added.ids, "method": made.method,
                          "generator_version": made.generator_version, "sources": len(mistakes),
                          "message": added.message}))
    else:
        print(added.message)
    return 0


def _progress(fraction: float, message: str = "") -> None:
    print(f"\r{100 * fraction:5.1f} % {message}", end="\n" if fraction >= 1 else "", file=sys.stderr, flush=True)


def _train(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(GeneratorTrainConfig)}
    cfg = GeneratorTrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    # the command is written from the settings (every flag, defaults included), not from sys.argv
    print(json.dumps(train_generator(cfg, log=lambda m: print(m, file=sys.stderr))))
    return 0


def _per_image(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of images, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"images per source must be at least 1, got {n}")
    return n


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the ``python -m core`` parser."""
    g = sub.add_parser("generate", help="make more like these: new labelled images near a report's mistakes, "
                                        "added to a workspace", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=__doc__)
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-report", metavar="ID", help="a report (evaluate run id): its misclassified images")
    src.add_argument("--images", nargs="+", metavar="ID", help="image files (or added ids) of --dataset")
    g.add_argument("--dataset", help="with --images: the dataset they belong to (default: the --to workspace)")
    g.add_argument("--model", default="benchmark", help="with --images: the classifier the method consults "
                                                        "(default: %(default)s)")
    g.add_argument("--which", choices=sources.WHICH, default="misclassified",
                   help="with --from-report: which images (default: %(default)s)")
    g.add_argument("--max-confidence", type=float, default=0.6,
                   help="low_confidence: correctly classified images below this confidence (default: %(default)s)")
    g.add_argument("--limit", type=int, default=200, help="with --from-report: at most this many source images")
    g.add_argument("--method", required=True, choices=methods.list_methods(),
                   help="; ".join(f"{m}: {methods.get_method(m).label}" for m in methods.list_methods()))
    g.add_argument("--per-image", type=_per_image, default=4,
                   help=f"new images per source image (at most {generation.MAX_PER_IMAGE}; default: %(default)s)")
    g.add_argument("--to", required=True, metavar="WS", help="the workspace to add them to")
    g.add_argument("--split", default="train", help="train (default), val, or test (with --force-test)")
    g.add_argument("--force-test", action="store_true", help="allow a test split (not advised: the test would "
                                                             "then measure the generator)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--json", action="store_true", help="print one JSON object")
    g.set_defaults(func=_generate)
    t = sub.add_parser("generator", help="train the class-conditional generator of `generate --method latent`",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__)
    t.add_argument("action", choices=["train"])
    for f in dataclasses.fields(GeneratorTrainConfig):
        kind = float if isinstance(f.default, float) else int if isinstance(f.default, int) else str
        t.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default, help=f"default {f.default}")
    t.set_defaults(func=_train)
