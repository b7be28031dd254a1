"""Sign detection in scenes: detection and end-to-end AP@0.5, false positives on sign-free photos, and speed.
Prints numbers only (no asserts).

Scenes are 1,280 x 720 (:func:`core.detection.scenes.make_scene`, 1-3 signs of 16-160 px each, hard negatives,
JPEG). ``--split val`` uses GTSRB train crops of held-out tracks on the training backgrounds (where approaches
are compared and the operating threshold chosen); ``--split test`` uses GTSRB *test* crops on photos no training
scene used (measured once for the shipped detector).

- **detection AP@0.5** (class-agnostic box right), per GTSDB category (prohibitory, danger, mandatory, other) and
  overall, for signs >= 24 px and for 16-24 px separately. An unmatched box counts against a category when the
  classifier puts it in that category or calls it unknown (see :mod:`core.detection.metrics`).
- **verified AP@0.5**: detection AP with boxes ranked by detector score x the classifier's confidence (how a
  classical proposer is usually paired with a classifier).
- **end-to-end AP@0.5**: box and class right ("unknown sign" is wrong), ranked by detector score x confidence;
  also without the novelty rejection (an "unknown sign" counted as its top-1 class), to show what it costs.
- **false positives per sign-free photo**, at the shipped operating threshold: every test background photo at its
  own size and resized to 1,280 x 720; and per sign-free *scene* (test photos with hard negatives: red and blue
  discs, rings, brake lights, text, boards).
- **seconds per 1,280 x 720 image**, median, for the whole pipeline (proposals, crops, classifier, novelty check)
  and, side by side, for the classifier alone on the whole image (what Make prediction does with a photo).

    python bench/bench_detect.py --split val --scenes 200 --detectors detector colour
    python bench/bench_detect.py --split test --scenes 300
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.detection import pipeline, scenes  # noqa: E402
from core.detection.metrics import ImageEval, average_precision, box_size  # noqa: E402
from core.learning.inference import predict_proba  # noqa: E402

SIZE = (1280, 720)
CATS = ("prohibitory", "danger", "mandatory", "other")
#: Sign-free scenes (test photos, hard negatives drawn in about 60 % of them) besides the plain photos.
HARD_NEGATIVE_SCENES = 100


def run_scenes(det, clf, made, *, candidate_score: float):
    rows = []
    for s in made:
        found = pipeline.detect_image(s.image, detector=det, classifier=clf, min_score=candidate_score)
        rows.append((s, found))
    return rows


def _evals(rows, *, cat=None, size_range=(24, 1e9), with_class=False, verified=False, keep_novel=False):
    out = []
    for s, found in rows:
        boxes = np.array([d.box for d in found]).reshape(-1, 4)
        det_score = np.array([d.score for d in found])
        verify = with_class or verified  # rank by detector score x the classifier's confidence
        scores = det_score * np.array([d.confidence for d in found]) if verify else det_score
        gsize, psize = box_size(s.boxes), box_size(boxes)
        gt_keep = (gsize >= size_range[0]) & (gsize < size_range[1])
        pred_keep = (psize >= size_range[0]) & (psize < size_range[1])
        if cat is not None:
            gt_keep &= np.array([c == cat for c in s.categories], bool)
            pred_cat = np.array([d.novel or scenes.CATEGORY_OF.get(d.class_id, "other") == cat for d in found], bool)
            pred_keep &= pred_cat
        pred_classes = np.array([d.top[0]["class_id"] if keep_novel else -1 if d.novel else d.class_id
                                 for d in found])
        out.append(ImageEval(boxes, scores, s.boxes, gt_keep=gt_keep, pred_keep=pred_keep,
                             pred_classes=pred_classes, gt_classes=s.class_ids))
    return out


def ap_table(rows) -> dict:
    table = {}
    for label, rng in (("ge24", (24, 1e9)), ("16to24", (16, 24))):
        table[label] = {c: average_precision(_evals(rows, cat=c, size_range=rng))["ap"] for c in CATS}
        table[label]["overall"] = average_precision(_evals(rows, size_range=rng))
    table["verified_ge24"] = average_precision(_evals(rows, verified=True))
    table["end_to_end_ge24"] = average_precision(_evals(rows, with_class=True), with_class=True)
    table["end_to_end_ge24_without_novelty"] = average_precision(_evals(rows, with_class=True, keep_novel=True),
                                                                 with_class=True)
    table["end_to_end_all"] = average_precision(_evals(rows, size_range=(0, 1e9), with_class=True), with_class=True)
    return table


def false_positives(det, clf) -> dict:
    counts = []
    for name in scenes.TEST_BACKGROUNDS:
        photo = scenes.backgrounds("test")[scenes.TEST_BACKGROUNDS.index(name)]
        for image in (photo, cv2.resize(photo, SIZE, interpolation=cv2.INTER_LINEAR)):
            counts.append(len(pipeline.detect_image(image, detector=det, classifier=clf)))
    hard = [len(pipeline.detect_image(scenes.make_scene(950_000 + i, split="test", size=SIZE, n_signs=(0, 0)).image,
                                      detector=det, classifier=clf)) for i in range(HARD_NEGATIVE_SCENES)]
    return {"photos": len(counts), "false_positives": int(sum(counts)),
            "per_photo": round(sum(counts) / len(counts), 3),
            "hard_negative_scenes": len(hard), "per_hard_negative_scene": round(sum(hard) / len(hard), 3)}


def speed(det, clf, made, *, repeats: int = 1) -> dict:
    times, bare = [], []
    for s in made:
        for _ in range(repeats):
            t = time.perf_counter()
            pipeline.detect_image(s.image, detector=det, classifier=clf)
            times.append(time.perf_counter() - t)
            t = time.perf_counter()
            predict_proba(clf.model, [s.image])
            bare.append(time.perf_counter() - t)
    return {"pipeline_s": round(float(np.median(times)), 3), "classifier_alone_s": round(float(np.median(bare)), 4),
            "images": len(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--detectors", nargs="+", default=["detector", "colour"])
    ap.add_argument("--model", default=pipeline.DEFAULT_MODEL)
    ap.add_argument("--speed-images", type=int, default=20)
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()
    made = [scenes.make_scene(900_000 + i, split=args.split, size=SIZE) for i in range(args.scenes)]
    n_signs = sum(len(s.boxes) for s in made)
    sizes = np.concatenate([box_size(s.boxes) for s in made])
    print(f"{args.scenes} {args.split} scenes {SIZE[0]}x{SIZE[1]}, {n_signs} signs "
          f"({int((sizes >= 24).sum())} >= 24 px, {int(((sizes >= 16) & (sizes < 24)).sum())} 16-24 px)")
    clf = pipeline.load_classifier(args.model)
    report = {"split": args.split, "scenes": args.scenes, "signs": n_signs, "model": args.model,
              "model_version": clf.version, "detectors": {}}
    for name in args.detectors:
        det = pipeline.load_detector(name)
        rows = run_scenes(det, clf, made, candidate_score=0.05 if name != "colour" else 0.0)
        table = ap_table(rows)
        entry = {"version": det.version, "min_score": det.min_score, "ap": table,
                 "false_positives": false_positives(det, clf) if args.split == "test" else None,
                 "speed": speed(det, clf, made[:args.speed_images])}
        report["detectors"][name] = entry
        print(json.dumps({name: entry}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
