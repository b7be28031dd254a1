"""Command line: ``python -m core detector train``: train the sign detector on generated scenes.

  python -m core detector train --steps 3000 --out artifacts/detector.pt

Every field of :class:`core.detection.detector_training.DetectorTrainConfig` is a flag with the same default.
The shipped ``artifacts/detector.pt`` stores the exact command that made it (``train.command`` in the checkpoint,
and in artifacts/MODEL_CARD.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from core.detection.detector_training import DetectorTrainConfig, train_detector


def _train(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(DetectorTrainConfig)}
    given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items() if k in fields}
    metrics = train_detector(DetectorTrainConfig(**given), log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(metrics))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the ``python -m core`` parser."""
    d = sub.add_parser("detector", help="train the sign detector (for `detect`) on generated scenes",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__)
    d.add_argument("action", choices=["train"])
    for f in dataclasses.fields(DetectorTrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "channels":
            d.add_argument(flag, type=int, nargs="+", default=list(f.default), help="channel widths (6 numbers)")
        else:
            kind = float if isinstance(f.default, float) else int if isinstance(f.default, int) else str
            d.add_argument(flag, type=kind, default=f.default, help=f"default {f.default}")
    d.set_defaults(func=_train)
