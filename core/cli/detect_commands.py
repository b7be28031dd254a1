"""``python -m core detect``: find, classify and track traffic signs in street photos and dashcam videos, and
optionally harvest the crops into a workspace.

  python -m core detect street.jpg dashcam.mp4                    # one line per sign found, per refused file
  python -m core detect street.jpg --json                         # one JSON list, one entry per file
  python -m core detect dashcam.mp4 --fps 4 --harvest-to Main --class extra

``--json`` prints one list, one entry per input file, in the order given: ``{"file", "width", "height", "error",
"detections": [{"box": [x0, y0, x1, y1], "score", "class_id", "class_name", "confidence", "novel", "frame",
"track"}]}``; boxes are in the input's upright pixel coordinates (EXIF orientation applied, full resolution), and
only detections at or above ``--min-score`` are listed. ``class_id``/``class_name`` are null for an unknown sign
(``novel``: probably not one of the model's classes).

A file that cannot be read gets its ``error`` and the others proceed. Exit code: 0 when at least one file was
analysed, 1 when every file was refused, 2 for a bad request (unknown model, detector or workspace; bad options).

``--harvest-to WS --class ID|NAME|extra`` adds the crops to workspace WS (a photo: every detection; a video: each
track's best crop) with their provenance, as one change (``images undo`` takes it back); crops harvested before
are skipped. The target is checked before anything is detected. Its message goes to stderr with ``--json``, so
stdout stays one JSON document.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

from core.analysis import label_actions
from core.data import datasets, workspaces
from core.detection import harvest, pipeline
from core.detection.results import Detection, FileResult

#: ``detect_files``'s own defaults, so the flags cannot disagree with the page and the run.
_DEFAULTS = {k: p.default for k, p in inspect.signature(pipeline.detect_files).parameters.items()}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"a number of frames per second above 0, e.g. 2, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, got {text!r}")
    return int(text)


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a detector score between 0 and 1, got {text!r}")
    return value


def _target(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int | None:
    """The harvest class (None: the Extra bucket), checked against the workspace before any work; argparse error
    when only one of --harvest-to and --class is given."""
    if (args.harvest_to is None) != (args.class_id is None):
        parser.error("--harvest-to WS and --class ID|extra go together: give both to harvest, or neither")
    if args.harvest_to is None:
        return None
    workspaces.require_writable(args.harvest_to)  # a built dataset: says to derive a workspace first
    if args.class_id.strip().casefold() == workspaces.EXTRA:
        class_id = None
    else:
        class_id = label_actions.resolve_class(datasets.get_dataset(args.harvest_to), args.class_id)
    harvest.check_target(args.harvest_to, class_id)
    return class_id


def _progress(fraction: float, message: str = "", entry: dict | None = None) -> None:
    print(f"{fraction:6.1%} {message}", file=sys.stderr)


def _detection_line(r: FileResult, d: Detection) -> str:
    where = r.file if d.frame is None else f"{r.file} frame {d.frame}" + (
        f" ({d.time_s:.2f} s)" if d.time_s is not None else "") + (f" track {d.track}" if d.track else "")
    guess = f"{d.top[0]['class_id']}: {d.top[0]['name']}" if d.top else "none"
    what = (f"unknown sign (best guess {guess} {d.confidence:.0%})" if d.novel or d.class_id is None
            else f"{d.class_id}: {d.class_name} {d.confidence:.0%}")
    box = ", ".join(f"{v:.0f}" for v in d.box)
    return f"{where}: {what}  score {d.score:.2f}  box [{box}]"


def _print_text(results: list[FileResult]) -> None:
    for r in results:
        if r.error:
            print(f"{r.file}: refused: {r.error}")
            continue
        for note in r.notes:
            print(f"{r.file}: note: {note}")
        for d in r.detections:
            print(_detection_line(r, d))
        if not r.detections:
            print(f"{r.file}: no signs found ({r.width}x{r.height}"
                  + (f", {r.frames} frames" if r.kind == "video" else "") + ")")


def _harvest(args: argparse.Namespace, results: list[FileResult], class_id: int | None, detector,
             classifier) -> None:
    """Harvest every photo detection and each video track's best crop; the message goes to stderr in JSON mode."""
    out = sys.stderr if args.json else sys.stdout
    items = [harvest.HarvestItem.from_detection(r, d) for r in results if not r.error
             for d in (harvest.best_of_tracks(r) if r.kind == "video" else r.detections)]
    if not items:
        print(f"nothing harvested: no signs found to add to {args.harvest_to}", file=out)
        return
    done = harvest.harvest(args.harvest_to, items, class_id=class_id, detector=detector.name,
                           detector_version=str(detector.version), model=classifier.name,
                           model_version=str(classifier.version))
    print(done.message, file=out)


def _detect(args: argparse.Namespace) -> int:
    class_id = _target(args, args.detect_parser)
    detector = pipeline.load_detector(args.detector)
    classifier = pipeline.load_classifier(args.model)
    results = pipeline.detect_files([(str(p), Path(p)) for p in args.items], detector=detector,
                                    classifier=classifier, min_score=args.min_score, fps=args.fps,
                                    max_frames=args.max_frames, progress=None if args.json else _progress)
    if args.json:
        print(json.dumps([r.to_json() for r in results]))
    else:
        _print_text(results)
    if args.harvest_to is not None:
        _harvest(args, results, class_id, detector, classifier)
    return 0 if any(r.error is None for r in results) else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the ``python -m core`` parser."""
    d = sub.add_parser("detect", help="find and classify traffic signs in street photos and videos (boxes, tracks); "
                                      "optionally harvest the crops into a workspace",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__)
    d.add_argument("items", nargs="+", metavar="PATH", help="photos (jpg, png, webp, ...) and videos (mp4, webm, mov)")
    d.add_argument("--model", default=None,
                   help="classifier: registry name or checkpoint path (default: the shipped benchmark)")
    d.add_argument("--detector", default=None,
                   help=f"the proposer: {', '.join(pipeline.list_detectors())} or a detector .pt file (default: "
                        f"{pipeline.DEFAULT_DETECTOR}, the shipped learned detector)")
    d.add_argument("--fps", type=_positive_float, default=_DEFAULTS["fps"],
                   help="videos: frames analysed per second of video (default: %(default)s)")
    d.add_argument("--max-frames", type=_positive_int, default=_DEFAULTS["max_frames"],
                   help="videos: at most this many sampled frames per video (default: %(default)s)")
    d.add_argument("--min-score", type=_score, default=None,
                   help="keep detections scoring at least this, 0-1 (default: the detector's shipped operating "
                        "threshold)")
    d.add_argument("--json", action="store_true", help="print one JSON list, one entry per file")
    d.add_argument("--harvest-to", metavar="WS", help="add the crops to this workspace (with --class)")
    d.add_argument("--class", dest="class_id", metavar="ID|extra",
                   help="with --harvest-to: a class of the workspace (id or name), or 'extra' for the Extra bucket")
    d.set_defaults(func=_detect, detect_parser=d)
