"""``python -m core evaluate``, ``novelty``, ``robustness``, ``predict``: judging a model.

``evaluate`` on a dataset split is an ``evaluate`` run, the one the Evaluate page starts: it saves a report that
the app lists. ``--npz`` files stay outside reports: an npz is no dataset of the catalog, so a report of it would
have no dataset version to be judged stale by, no class names and no images to show.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from core import runs
from core.analysis import corruptions, evaluation, novelty, prediction, reports
from core.analysis.evaluate_run import CLASS_CHOICES, EvaluateRun
from core.base import files
from core.data import datasets
from core.learning import models, registry, tta


def _model_ref(text: str) -> str:
    """A registry name as given; a checkpoint path made absolute, so that runs and reports name it from any
    folder. ValueError for a name that is neither."""
    return str(Path(text).absolute()) if registry.model_path(text) == Path(text) else text


def _evaluate(args: argparse.Namespace) -> int:
    if args.record:
        if args.tta:
            raise ValueError("--record keeps the model's plain accuracy; drop --tta (a TTA report is kept as a "
                             "report)")
        if args.classes == "model":
            raise ValueError("--record keeps the accuracy on the whole split; drop --classes model")
        if not Path(args.model).is_file():
            raise ValueError("--record needs --model to be a checkpoint path")
        registry.check_file_writable(args.model)  # demo mode: never a shipped or another session's model
    if args.npz:
        if args.dataset:
            raise ValueError("give --dataset NAME (with --split) or --npz FILE, not both")
        summary, test_set = _evaluate_npz(Path(args.npz), args.model, tta=args.tta), Path(args.npz).name
    elif args.dataset:
        summary, test_set = _evaluate_split(args), f"{args.dataset}/{args.split}"
    else:
        raise ValueError("give --dataset NAME (with --split) or --npz FILE")
    if args.record:
        path = Path(args.model)
        ckpt = models.load_checkpoint(path)
        ckpt["metrics"].update({"test_acc": summary["accuracy"], "test_macro_f1": summary["macro_f1"],
                                "test_set": test_set, "test_n": summary["n"]})
        models.save_checkpoint(ckpt, path)
        if "report" in summary:  # same weights, new file: the report keeps explaining with it
            reports.restamp_model_version(summary["report"], registry.file_version(path))
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"n={summary['n']}  accuracy={summary['accuracy']:.4f}  macro_f1={summary['macro_f1']:.4f}  "
              f"{summary['images_per_s']:.0f} images/s" + (f"  report {summary['report']}" if "report" in summary
                                                             else ""))
    return 0


def _evaluate_split(args: argparse.Namespace) -> dict:
    """An evaluate run in this process; the summary of the report it saved, with the report's id."""
    cfg = EvaluateRun(model=_model_ref(args.model), dataset=args.dataset, split=args.split, classes=args.classes,
                      tta=args.tta)
    run_id = runs.start("evaluate", cfg, foreground=True)
    rec = runs.get(run_id)
    if rec["status"] != "done":
        raise ValueError(f"evaluation run {run_id} {rec['status']}: {rec.get('error') or rec.get('message')}")
    return {"report": run_id, **reports.load_report(run_id).summary}


def _evaluate_npz(path: Path, model: str, *, tta: bool = False) -> dict:
    ckpt = models.load_checkpoint(registry.model_path(model))
    images, labels = evaluation.load_npz_split(path)
    summary, _ = evaluation.evaluate_checkpoint(ckpt, images, labels, tta=tta)
    return summary


def _robustness(args: argparse.Namespace) -> int:
    """Accuracy under the corruption benchmark (:mod:`core.analysis.corruptions`) on a split's images of the
    model's classes."""
    ckpt = models.load_checkpoint(registry.model_path(args.model))
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
            print(f"  {name:15s} {acc:.4f}  " + "  ".join(f"s{k}={v:.3f}"
                                                          for k, v in result["by_corruption"][name].items()))
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
    results = prediction.predict_paths(ckpt, args.images, model=model, detector=detector, tta=args.tta)
    if args.json:
        print(json.dumps([r.to_json() for r in results]))
    else:
        for r in results:
            print(f"{r.file}: {r.error}" if r.error else
                  f"{r.file}: " + ", ".join(f"{t['name']} ({t['p']:.1%})" for t in r.top[:3])
                  + ("  [probably not one of the model's classes]" if r.novelty and r.novelty["novel"] else ""))
    return 0 if all(r.error is None for r in results) else 1


def _novelty(args: argparse.Namespace) -> int:
    path = registry.model_path(args.model)
    ckpt = models.load_checkpoint(path)
    model = models.model_from_checkpoint(ckpt)
    det = novelty.load_or_fit(path, model, ckpt, progress=lambda f, m="", e=None: print(m, file=sys.stderr))
    methods = tuple(args.methods.split(",")) if args.methods else novelty.list_methods()
    sets = [evaluation.load_npz_images(Path(p)) for p in (args.known_npz, args.novel_npz)]
    known, novel = (det.scores(model, images, methods) for images in sets)
    out = {"methods": {m: novelty.auroc_fpr95(known[m], novel[m]) for m in methods},
           "n_known": len(sets[0]), "n_novel": len(sets[1]), "default_method": novelty.DEFAULT_METHOD,
           "thresholds": {m: det.thresholds.get(m) for m in methods}, "methods_version": det.methods_version,
           "accept": det.accept,  # at the thresholds: the share of each set flagged "probably not a known class"
           "flagged": {m: {"known": round(float(det.novel(known, m).mean()), 4),
                           "novel": round(float(det.novel(novel, m).mean()), 4)} for m in methods}}
    print(json.dumps(out) if args.json else "\n".join(
        f"{m:12s} AUROC {r['auroc']:.4f}  FPR95 {r['fpr95']:.4f}" for m, r in out["methods"].items()))
    return 0


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="evaluate a model on a dataset split (saved as a report, listed in the app) "
                                        "or an npz file")
    e.add_argument("--model", required=True, help="registry name or checkpoint path")
    e.add_argument("--dataset")
    e.add_argument("--split", default="test", choices=datasets.SPLITS)
    e.add_argument("--npz", help="npz file with images (N,H,W,3) uint8 and labels (N,); kept in no report")
    e.add_argument("--classes", choices=sorted(CLASS_CHOICES), default="all",
                   help="all: every image of the split, those of classes the model lacks count as errors (default); "
                        "model: only the images of the model's classes (as the app's default)")
    e.add_argument("--tta", action="store_true", help=f"test-time augmentation: probabilities averaged over "
                   f"{tta.describe()} (about {len(tta.VIEWS)}x the time; the report records it)")
    e.add_argument("--json", action="store_true")
    e.add_argument("--record", action="store_true", help="store accuracy and macro F1 in the checkpoint's metrics")
    e.set_defaults(func=_evaluate)


def add_commands(sub) -> None:
    _add_evaluate(sub)
    nv = sub.add_parser("novelty", help="how well novelty scores tell images of unknown classes from known ones")
    nv.add_argument("--model", required=True, help="registry name or checkpoint path")
    nv.add_argument("--known-npz", required=True, help="npz with an images array of the model's classes")
    nv.add_argument("--novel-npz", required=True, help="npz with an images array of classes the model lacks")
    nv.add_argument("--methods", help="comma-separated subset of: " + "; ".join(
        f"{m} ({novelty.get_method(m).description})" for m in novelty.list_methods()))
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
    pr.add_argument("--tta", action="store_true", help=f"test-time augmentation ({tta.describe()})")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=_predict)
