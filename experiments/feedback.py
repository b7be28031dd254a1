"""Does "make more like these" help? Each generation method against the control (the real hard images alone),
fine-tuning the shipped benchmark at equal steps, 3 seeds; and the generated images' quality as FID / KID on our
classifier's penultimate features. Writes experiments/results/feedback.json and experiments/feedback.md.

    python experiments/feedback.py                  # everything (datasets built: GTSRB), about 30 min on 2 cores
    python experiments/feedback.py --report-only    # rewrite the table from the results file

Protocol (no choice ever looks at the test set):
- GTSRB's validation split (by track) is cut by track into two halves with a fixed seed: **val A** gives the hard
  images (the benchmark's mistakes there, and its correct answers below 0.6 confidence: what a user picks from a
  report), **val B** chooses (the 5 classes the benchmark does worst on by F1, and the arm to ship).
- Each arm fine-tunes ``artifacts/benchmark.pt`` for ``--steps`` steps of ``--batch`` images, a share
  ``--extra-share`` of each batch drawn from the arm's extra images and the rest from GTSRB train, all through the
  same in-model augmentation (p ``--augment-p``), AdamW with a cosine schedule. Arms: ``none`` (train images
  only: the fine-tuning itself), ``copies`` (the control: the real hard images, ``--per-image`` copies each),
  ``augment``, ``latent``, ``patch`` (``--per-image`` generated images per hard image).
- Measured: val B and official test accuracy, macro F1, mean F1 of the 5 worst classes (chosen on val B), and on
  the test the mean F1 of the benchmark's 5 worst test classes (a measurement only), per seed; mean +- std.
Resumable: an (arm, seed) already in the results file is not run again.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from core.data import augment, datasets  # noqa: E402
from core.data.images import preprocess  # noqa: E402
from core.feedback import generate as generation  # noqa: E402
from core.feedback import generator as gen  # noqa: E402
from core.feedback.quality import fid, kid  # noqa: E402
from core.feedback.sources import Mistake  # noqa: E402
from core.learning.inference import embed, predict_proba  # noqa: E402
from core.learning.models import load_checkpoint, model_from_checkpoint  # noqa: E402

ARMS = ("none", "copies", "augment", "latent", "patch")
RESULTS = HERE / "results" / "feedback.json"
MODEL = HERE.parent / "artifacts" / "benchmark.pt"
SPLIT_SEED = 0
LOW_CONFIDENCE = 0.6


def split_val_by_track(rows: list[dict], *, seed: int = SPLIT_SEED) -> np.ndarray:
    """Boolean (N,): True for val A. Tracks are shuffled with ``seed`` and cut in half (every image of a
    physical sign on one side)."""
    tracks = sorted({r["track"] for r in rows})
    order = np.random.default_rng(seed).permutation(len(tracks))
    half = {tracks[i] for i in order[: len(tracks) // 2]}
    return np.asarray([r["track"] in half for r in rows])


def f1_per_class(y: np.ndarray, pred: np.ndarray, classes: list[int]) -> dict[int, float]:
    out = {}
    for c in classes:
        tp = int(((pred == c) & (y == c)).sum())
        fp, fn = int(((pred == c) & (y != c)).sum()), int(((pred != c) & (y == c)).sum())
        out[c] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return out


def scores(probs: np.ndarray, y: np.ndarray, ids: np.ndarray, worst: dict[str, list[int]]) -> dict:
    pred = ids[probs.argmax(1)]
    f1 = f1_per_class(y, pred, sorted(set(ids.tolist())))
    return {"acc": float((pred == y).mean()), "macro_f1": float(np.mean(list(f1.values()))),
            **{f"worst5_{k}": float(np.mean([f1[c] for c in cs])) for k, cs in worst.items()},
            "f1": {str(c): round(v, 5) for c, v in f1.items()}}


def finetune(ckpt: dict, train: tuple, extra: tuple, *, args, seed: int) -> torch.nn.Module:
    """The benchmark fine-tuned for ``args.steps`` steps on train images plus ``extra`` at ``args.extra_share``."""
    torch.manual_seed(seed)
    model = model_from_checkpoint(ckpt).train()
    rows = {int(c): i for i, c in enumerate(ckpt["class_ids"])}
    pipe = augment.build_pipeline(p=args.augment_p, seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)
    rng = np.random.default_rng(seed)
    n_extra = int(round(args.batch * args.extra_share)) if len(extra[0]) else 0
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    for _ in range(args.steps):
        ti = rng.integers(0, len(train[0]), args.batch - n_extra)
        ei = rng.integers(0, len(extra[0]), n_extra)
        images = np.concatenate([train[0][ti], extra[0][ei]])
        labels = np.concatenate([train[1][ti], extra[1][ei]])
        x = preprocess(np.stack([pipe(image=im)["image"] for im in images]))
        y = torch.as_tensor([rows[int(c)] for c in labels])
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def make_extras(arm: str, hard: list[Mistake], *, per_image: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    if arm == "none":
        return np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64), 0.0
    made = generation.generate(hard, method=arm, per_image=per_image, seed=seed, model=str(MODEL))
    return np.asarray(made.images), np.asarray(made.class_ids), made.seconds


def setup(args) -> dict:
    """Data, the benchmark's baseline predictions, the hard images (val A) and the worst classes (val B, test)."""
    info = datasets.get_dataset(args.dataset)
    rows = datasets.read_index(info, "val")
    val, train, test = (datasets.load_split(info, s) for s in ("val", "train", "test"))
    if [r["file"] for r in rows] != list(val.files):
        raise SystemExit("the val index and arrays disagree on order; rebuild the dataset")
    in_a = split_val_by_track(rows)
    ckpt = load_checkpoint(MODEL)
    ids = np.asarray(ckpt["class_ids"])
    base = model_from_checkpoint(ckpt)
    probs = {"val": predict_proba(base, val.images), "test": predict_proba(base, test.images)}
    pred, conf = ids[probs["val"].argmax(1)], probs["val"].max(1)
    hard_idx = np.flatnonzero(in_a & ((pred != val.labels) | (conf < LOW_CONFIDENCE)))
    hard = [Mistake(val.images[i], int(val.labels[i]), int(pred[i]), float(conf[i]), info.name, val.files[i], None)
            for i in hard_idx]
    f1_b = f1_per_class(val.labels[~in_a], pred[~in_a], ids.tolist())
    f1_t = f1_per_class(test.labels, ids[probs["test"].argmax(1)], ids.tolist())
    worst = {"valB": sorted(f1_b, key=lambda c: (f1_b[c], c))[:5], "test": sorted(f1_t, key=lambda c: (f1_t[c], c))[:5]}
    return {"info": info, "train": (train.images, train.labels), "val": val, "test": test, "in_a": in_a,
            "ckpt": ckpt, "ids": ids, "hard": hard, "worst": worst, "base_probs": probs,
            "hard_summary": {"images": len(hard), "wrong": int(sum(m.wrong for m in hard)),
                             "classes": sorted({m.class_id for m in hard}), "val_a": int(in_a.sum()),
                             "val_b": int((~in_a).sum())}}


def measure(probs_val: np.ndarray, probs_test: np.ndarray, s: dict) -> dict:
    b = ~s["in_a"]
    return {"valB": scores(probs_val[b], s["val"].labels[b], s["ids"], {"valB": s["worst"]["valB"]}),
            "test": scores(probs_test, s["test"].labels, s["ids"], s["worst"])}


def run_arms(args, s: dict, results: dict) -> None:
    results.setdefault("runs", {})
    if "baseline" not in results:
        results["baseline"] = measure(s["base_probs"]["val"], s["base_probs"]["test"], s)
    for seed in args.seeds:
        for arm in args.arms:
            key = f"{arm}/{seed}"
            if key in results["runs"]:
                continue
            t0 = time.time()
            ex_x, ex_y, gen_s = make_extras(arm, s["hard"], per_image=args.per_image, seed=seed)
            t1 = time.time()
            model = finetune(s["ckpt"], s["train"], (ex_x, ex_y), args=args, seed=seed)
            t2 = time.time()
            row = measure(predict_proba(model, s["val"].images), predict_proba(model, s["test"].images), s)
            row.update({"extra_images": int(len(ex_y)), "generate_s": round(gen_s, 1),
                        "finetune_s": round(t2 - t1, 1), "total_s": round(time.time() - t0, 1)})
            results["runs"][key] = row
            print(key, json.dumps(row), flush=True)
            save(results)


def quality(args, s: dict, results: dict) -> None:
    """FID / KID of each method's images (seed 0) against real test images, overall and per hard class; the floor
    is two disjoint halves of the real test images at the same sizes."""
    if "quality" in results and not args.redo_quality:
        return
    model = model_from_checkpoint(s["ckpt"])
    test = s["test"]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(test.labels))
    real_a, real_b = order[: len(order) // 2], order[len(order) // 2:]
    feats_test = embed(model, test.images)
    sets = {arm: make_extras(arm, s["hard"], per_image=args.per_image, seed=0)[:2]
            for arm in ("copies", "augment", "latent", "patch")}
    g = gen.load_generator(class_ids=s["ckpt"]["class_ids"])
    sets["latent decodes"] = (gen.decode_near(g, np.stack([m.image for m in s["hard"]]),
                                              [m.class_id for m in s["hard"]], args.per_image, seed=0),
                              np.repeat([m.class_id for m in s["hard"]], args.per_image))
    classes = sorted({m.class_id for m in s["hard"]})
    out = {"n_real_half": int(len(real_a)), "sets": {}, "per_class_classes": classes}
    floor_n = len(sets["copies"][1])
    fa, fb = feats_test[real_a], feats_test[real_b][:floor_n]
    out["floor"] = {"fid": fid(fa, fb), "kid": kid(fa, fb)[0], "n": int(len(fb))}
    # the same class mix as the generated sets (the hard images' classes): real half A and, as the floor, half B
    mix = sets["copies"][1]
    ma, mb = _class_matched(test.labels, real_a, mix, seed=1), _class_matched(test.labels, real_b, mix, seed=2)
    out["floor_matched"] = {"fid": fid(feats_test[ma], feats_test[mb]), "kid": kid(feats_test[ma], feats_test[mb])[0],
                            "n": int(len(mb))}
    for name, (images, labels) in sets.items():
        f = embed(model, images)
        row = {"n": int(len(labels)), "fid": fid(fa, f), "kid": kid(fa, f)[0], "per_class": {},
               "fid_matched": fid(feats_test[ma], f), "kid_matched": kid(feats_test[ma], f)[0]}
        for c in classes:
            real_c = feats_test[real_a][test.labels[real_a] == c]
            mine = f[labels == c]
            floor_c = feats_test[real_b][test.labels[real_b] == c][: max(len(mine), 2)]
            if len(mine) >= 2 and len(real_c) >= 2:
                row["per_class"][str(c)] = {"n": int(len(mine)), "kid": kid(real_c, mine)[0],
                                            "kid_floor": kid(real_c, floor_c)[0]}
        out["sets"][name] = row
        print("quality", name, {k: v for k, v in row.items() if k != "per_class"}, flush=True)
    results["quality"] = out
    save(results)


MD = HERE / "feedback.md"
LABELS = {"baseline": "shipped benchmark (no fine-tuning)", "none": "fine-tune, train images only",
          "copies": "**control**: the real hard images (copies)", "augment": "targeted augmentation (worst of 4)",
          "latent": "generator neighbours (latent)", "patch": "activation-maximisation patches"}


def _stat(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    v = np.asarray(values, float) * scale
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) > 1 else f"{v.mean():.{digits}f}"


def summary_rows(results: dict) -> list[dict]:
    """Per arm: the seeds run and each measure's values over them."""
    rows = [{"arm": "baseline", "seeds": [], "values": {k: [v] for k, v in _flat(results["baseline"]).items()}}]
    for arm in ARMS:
        runs_ = [v for k, v in results["runs"].items() if k.split("/")[0] == arm]
        if runs_:
            flat = [_flat(r) for r in runs_]
            rows.append({"arm": arm, "seeds": [k.split("/")[1] for k in results["runs"] if k.split("/")[0] == arm],
                         "values": {k: [f[k] for f in flat] for k in flat[0]},
                         "generate_s": float(np.mean([r["generate_s"] for r in runs_])),
                         "finetune_s": float(np.mean([r["finetune_s"] for r in runs_]))})
    return rows


def _flat(m: dict) -> dict:
    return {f"{split}.{k}": v for split in ("valB", "test") for k, v in m[split].items() if k != "f1"}


def write_markdown(results: dict, path: Path = MD) -> str:
    rows = summary_rows(results)
    st, h, q, w = results["settings"], results["hard"], results.get("quality"), results["worst"]
    out = [TITLE, "", INTRO.format(**st, **h, n_classes=len(h["classes"]), worst_b=w["valB"], worst_t=w["test"]), "",
           "## Effect on the model (mean ± std over the seeds; percent)", "",
           "| arm | seeds | val B acc | val B 5-worst F1 | **test acc** | **test F1, 5 worst (val B)** | test F1, 5 "
           "worst (test) | test macro F1 | generate s | fine-tune s |", "|---" * 10 + "|"]
    for r in rows:
        v = r["values"]
        out.append(f"| {LABELS[r['arm']]} | {len(r['seeds']) or '-'} | {_stat(v['valB.acc'])} | "
                   f"{_stat(v['valB.worst5_valB'], digits=1)} | {_stat(v['test.acc'])} | "
                   f"{_stat(v['test.worst5_valB'], digits=1)} | {_stat(v['test.worst5_test'], digits=1)} | "
                   f"{_stat(v['test.macro_f1'], digits=1)} | {r.get('generate_s', 0):.1f} | "
                   f"{r.get('finetune_s', 0):.0f} |")
    out += _per_class_table(results, rows)
    if q:
        out += ["", "## Image quality: FID / KID on the benchmark's penultimate features (300 values)", "",
                f"Against {q['n_real_half']:,} real official-test images (one half of the test set, seed 0); the floor "
                f"is the other half's first {q['floor']['n']:,} real images (same size as each generated set). Lower "
                "is closer to real. \"Same class mix\": the real images drawn with the generated sets' class counts "
                "(the hard images' 5 classes), so the distance is not just the class mix. Per class: KID of the "
                "generated images of each hard image's class against that class's real test images, and the floor "
                "at the same size.", "",
                "| images | n | FID | KID | FID, same class mix | KID, same class mix | per-class KID (mean over "
                "classes) | per-class KID floor |", "|---" * 8 + "|",
                f"| real test, other half (floor) | {q['floor']['n']:,} | {q['floor']['fid']:.1f} | "
                f"{q['floor']['kid']:.3f} | {q['floor_matched']['fid']:.1f} | {q['floor_matched']['kid']:.3f} | | |"]
        for name, r in q["sets"].items():
            pc = r["per_class"]
            mean = np.mean([c["kid"] for c in pc.values()]) if pc else float("nan")
            floor = np.mean([c["kid_floor"] for c in pc.values()]) if pc else float("nan")
            out.append(f"| {LABELS.get(name, name)} | {r['n']:,} | {r['fid']:.1f} | {r['kid']:.3f} | "
                       f"{r['fid_matched']:.1f} | {r['kid_matched']:.3f} | {mean:.3f} | {floor:.3f} |")
        out += ["", "Per class (KID, generated vs the class's real test images; floor in brackets):", "",
                "| class | " + " | ".join(q["sets"]) + " |", "|---" * (len(q["sets"]) + 1) + "|"]
        for c in q["per_class_classes"]:
            cells = [f"{r['per_class'][str(c)]['kid']:.3f} ({r['per_class'][str(c)]['kid_floor']:.3f})"
                     if str(c) in r["per_class"] else "-" for r in q["sets"].values()]
            out.append(f"| {c} | " + " | ".join(cells) + " |")
    out += ["", FINDINGS_HEADER, "", _kept_findings(path), "", COMMANDS.format(**st)]
    text = "\n".join(out) + "\n"
    path.write_text(text)
    return text


def _per_class_table(results: dict, rows: list[dict]) -> list[str]:
    """Official-test F1 of each of the 5 worst classes (chosen on val B) per arm, mean ± std over the seeds."""
    if "f1" not in results["baseline"]["test"]:
        return []
    classes = results["worst"]["valB"]
    out = ["", "Official-test F1 (percent) of each of the 5 worst classes chosen on val B, mean ± std over the seeds:",
           "", "| arm | " + " | ".join(f"class {c}" for c in classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for r in rows:
        runs_ = [results["baseline"]] if r["arm"] == "baseline" else \
            [v for k, v in results["runs"].items() if k.split("/")[0] == r["arm"]]
        cells = [_stat([run["test"]["f1"][str(c)] for run in runs_], digits=1) for c in classes]
        out.append(f"| {LABELS[r['arm']]} | " + " | ".join(cells) + " |")
    return out


def _kept_findings(path: Path) -> str:
    """The hand-written "What it shows" section of an existing file (kept when the tables are rewritten)."""
    text = path.read_text() if path.is_file() else ""
    if FINDINGS_HEADER not in text:
        return "(to be written from the tables above)"
    return text.split(FINDINGS_HEADER, 1)[1].split("## Reproduce", 1)[0].strip()


TITLE = "# Feedback learning: does \"make more like these\" help? (issue 26)"
INTRO = """Made by `experiments/feedback.py` (results: `experiments/results/feedback.json`); every number below comes from
that file. The shipped `benchmark.pt` (43 classes, 99.14 % on the official GTSRB test) is fine-tuned for {steps}
steps of {batch} images (AdamW, learning rate {lr} with a cosine decay, in-model augmentation p {augment_p}); a share
{extra_share} of every batch comes from the arm's extra images, the rest from GTSRB train. GTSRB's validation split
(by track) is cut by track into halves: **val A** ({val_a:,} images) gives the hard images — the benchmark's
{wrong} mistakes there plus its {images} − {wrong} correct answers below 0.6 confidence, {images} images of
{n_classes} classes, what a user ticks in a report — and **val B** ({val_b:,} images) chooses: the 5 classes the
benchmark does worst on there by F1 ({worst_b}) and the arm to ship. The official test (12,630 images) is measured
for every run and never used to choose; "5 worst (test)" are the benchmark's own 5 worst test classes ({worst_t}),
a measurement only. Each generating arm makes {per_image} images per hard image; the control repeats each real
hard image {per_image} times (the in-model augmentation varies them), so every arm has the same number of extra
images and the same steps."""
FINDINGS_HEADER = "## What it shows"
COMMANDS = """## Reproduce

```bash
python -m core datasets build --source ../shared/data --only GTSRB
python -m core generator train --dataset GTSRB --epochs 6 --feature-weight 2.0 --out artifacts/generator.pt
python experiments/feedback.py --steps {steps} --batch {batch} --extra-share {extra_share} --lr {lr} \\
    --augment-p {augment_p} --per-image {per_image} --seeds 0 1 2
python experiments/feedback.py --report-only      # this file again from the results
```"""


def _class_matched(labels: np.ndarray, pool: np.ndarray, mix: np.ndarray, *, seed: int) -> np.ndarray:
    """Indices from ``pool`` with the class counts of ``mix`` (drawn with replacement where a class is short)."""
    rng = np.random.default_rng(seed)
    out = []
    for c, n in zip(*np.unique(mix, return_counts=True)):
        have = pool[labels[pool] == c]
        out.append(rng.choice(have, n, replace=len(have) < n))
    return np.concatenate(out)


def save(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(RESULTS)


def main() -> int:
    global RESULTS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="GTSRB")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--per-image", type=int, default=24)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--extra-share", type=float, default=0.25)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--augment-p", type=float, default=0.1)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--redo-quality", action="store_true")
    p.add_argument("--results", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    args = p.parse_args()
    RESULTS = args.results
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    settings = {k: getattr(args, k) for k in ("dataset", "per_image", "steps", "batch", "extra_share", "lr",
                                              "augment_p")}
    if results.get("settings", settings) != settings:
        raise SystemExit(f"{RESULTS} was made with other settings {results['settings']}; move it away first")
    results["settings"] = settings
    if not args.report_only:
        s = setup(args)
        results["hard"] = s["hard_summary"]
        results["worst"] = s["worst"]
        run_arms(args, s, results)
        quality(args, s, results)
    if "runs" in results:
        write_markdown(results)
    print(f"results: {RESULTS}; table: {MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
