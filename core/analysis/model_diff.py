"""Model diff: where two models disagree on the same images, and whether the difference is more than chance.

Two evaluation reports on the same dataset split (the same dataset version) are lined up image by image (by file),
restricted to the classes both models predict. Each image then falls in one of four cells: both right, both
wrong, A right and B wrong, B right and A wrong. McNemar's exact test asks whether the two discordant counts
differ by more than chance: under "the models are equally good" each disagreement goes either way with
probability 1/2, so the smaller count follows Binomial(discordant, 1/2) (a two-sided binomial test).

That test counts every image as independent. A split made by track is not: GTSRB's val split holds about 30 frames
of each physical sign, and two models' disagreements come in whole tracks (on GTSRB val, 42 errors of two models lay
in 7 of its 133 tracks). Where the dataset gives track ids, the same question is also asked of tracks
(:func:`sign_flip_p`): each track's disagreements in A's favour minus those in B's, signs flipped at random under
"equally good", the two-sided p-value computed exactly. With one image per track it is McNemar's exact test.

:func:`diff_reports` compares two reports; :func:`find_report` finds a model's current report on a split, and
:func:`missing_evaluations` says which evaluations must run first (pages start them as runs, the CLI in the
foreground).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from core.analysis import reports
from core.analysis.evaluate_run import EvaluateRun
from core.data import datasets
from core.learning import registry

#: Per-class rows are sorted by this key (the largest change first).
PER_CLASS_ORDER = "delta"


@dataclass(frozen=True)
class ModelDiff:
    """Two reports compared image by image on the classes both models predict.

    Attributes
    ----------
    report_a, report_b : the reports' ids; model_a, model_b : their models
    dataset, split : the data both saw
    n : int, images compared (in both reports, of a shared class)
    a_right_b_wrong, b_right_a_wrong : np.ndarray (k,) int, row indices into report A's predictions
    rows_b : dict[int, int], report B's row of each compared report-A row
    both_right, both_wrong : int
    mcnemar_p : float, two-sided exact McNemar p-value (1.0 without disagreements)
    tracks : int, tracks among the compared images (0 where the data gives none)
    track_p : float or None, the track-level test's two-sided p-value (:func:`sign_flip_p`; images without a track
        count as their own); None without tracks, where it would equal ``mcnemar_p``
    shared_classes : list[int]; only_a, only_b : classes one model predicts and the other does not (left out)
    per_class : list[dict], one per shared class with images: class_id, name, n, accuracy_a, accuracy_b, delta
        (B - A), a_right_b_wrong, b_right_a_wrong; largest |delta| first
    """

    report_a: str
    report_b: str
    model_a: str
    model_b: str
    dataset: str
    split: str
    n: int
    a_right_b_wrong: np.ndarray
    b_right_a_wrong: np.ndarray
    rows_b: dict
    both_right: int
    both_wrong: int
    mcnemar_p: float
    shared_classes: list
    only_a: list
    only_b: list
    per_class: list
    tracks: int = 0
    track_p: float | None = None

    def summary(self) -> dict:
        """The JSON shape of the CLI: n, a_right_b_wrong, b_right_a_wrong (counts), mcnemar_p, tracks, track_p,
        shared_classes, per_class, and what was left out."""
        return {"model_a": self.model_a, "model_b": self.model_b, "dataset": self.dataset, "split": self.split,
                "report_a": self.report_a, "report_b": self.report_b, "n": self.n,
                "a_right_b_wrong": int(len(self.a_right_b_wrong)), "b_right_a_wrong": int(len(self.b_right_a_wrong)),
                "both_right": self.both_right, "both_wrong": self.both_wrong, "mcnemar_p": self.mcnemar_p,
                "tracks": self.tracks, "track_p": self.track_p, "shared_classes": self.shared_classes,
                "only_a": self.only_a, "only_b": self.only_b, "per_class": self.per_class}


def mcnemar_exact(a_right_b_wrong: int, b_right_a_wrong: int) -> float:
    """Two-sided exact McNemar p-value of the two discordant counts (1.0 when there are none)."""
    if a_right_b_wrong < 0 or b_right_a_wrong < 0:
        raise ValueError(f"discordant counts must be >= 0, got {a_right_b_wrong} and {b_right_a_wrong}")
    total = a_right_b_wrong + b_right_a_wrong
    if total == 0:
        return 1.0
    return float(binomtest(min(a_right_b_wrong, b_right_a_wrong), total, 0.5, alternative="two-sided").pvalue)


def sign_flip_p(differences: np.ndarray) -> float:
    """Two-sided exact p-value of a paired sign-flip test: how likely a total at least as far from 0 as
    ``sum(differences)`` is when each difference's sign is a fair coin.

    Parameters
    ----------
    differences : np.ndarray (k,) int, one per cluster (track): its images where A is right and B wrong minus those
        where B is right and A wrong. Zeros carry no information and are dropped.

    Returns 1.0 without a nonzero difference. The null distribution of the total is convolved one cluster at a time
    over the integers (exact, no sampling); with every difference +-1 it is McNemar's exact test.
    """
    d = np.asarray(differences)
    if d.ndim != 1 or (d.size and not np.issubdtype(d.dtype, np.integer)):
        raise ValueError(f"differences must be a 1-D integer array, got shape {d.shape} and dtype {d.dtype}")
    observed = abs(int(d.sum()))
    sizes = np.abs(d[d != 0]).astype(np.int64)
    if not sizes.size:
        return 1.0
    total = int(sizes.sum())
    dist = np.zeros(2 * total + 1)  # dist[t + total] = P(sum == t)
    dist[total] = 1.0
    for v in sizes:  # the support stays within +-total, so rolling never wraps
        dist = 0.5 * (np.roll(dist, int(v)) + np.roll(dist, -int(v)))
    far = np.abs(np.arange(-total, total + 1)) >= observed
    return float(min(1.0, dist[far].sum()))


def track_differences(files: list[str], a_wins: np.ndarray, b_wins: np.ndarray,
                      tracks: dict[str, str]) -> tuple[np.ndarray, int]:
    """Per track, A's wins minus B's among the images ``files`` (boolean masks ``a_wins``, ``b_wins`` over them),
    an image without a track id counting as its own; and how many tracks the images hold (0 without any)."""
    keys = [f"track:{tracks[f]}" if tracks.get(f) else f"file:{f}" for f in files]
    _, group = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
    votes = a_wins.astype(np.int64) - b_wins.astype(np.int64)
    return np.bincount(group, weights=votes).astype(np.int64), len({tracks[f] for f in files if tracks.get(f)})


def split_tracks(dataset: str, split: str) -> dict[str, str]:
    """File -> track id for the images of ``dataset``/``split`` that have one (empty for a dataset that is gone)."""
    try:
        info = datasets.get_dataset(dataset)
    except ValueError:
        return {}
    return {r["file"]: r["track"] for r in datasets.read_index(info, split) if r.get("track")}


def model_classes(report: reports.Report) -> list[int]:
    """The classes the report's model predicts: recorded in the report (since this module), else the model's
    registry entry, else the classes the report covers."""
    recorded = report.summary.get("model_classes")
    if recorded:
        return sorted(int(c) for c in recorded)
    try:
        ids = registry.get_model(report.summary["model"]).class_ids
    except ValueError:
        ids = ()
    return sorted(int(c) for c in ids) if ids else sorted(int(c) for c in report.summary["labels"])


def check_comparable(a: reports.Report, b: reports.Report) -> None:
    """ValueError, saying what to do, unless two reports judge two different models on the same data."""
    sa, sb = a.summary, b.summary
    if a.id == b.id:
        raise ValueError("the same report twice: pick reports of two different models")
    if sa["model"] == sb["model"] and sa.get("model_version") == sb.get("model_version"):
        raise ValueError(f"both reports are of model {sa['model']!r} (the same file): pick two different models")
    if (sa["dataset"], sa["split"]) != (sb["dataset"], sb["split"]):
        raise ValueError(f"the reports are on different data (A on {sa['dataset']}/{sa['split']}, B on "
                         f"{sb['dataset']}/{sb['split']}): evaluate both models on the same dataset split")
    if sa.get("dataset_version") != sb.get("dataset_version"):
        raise ValueError(f"{sa['dataset']} changed between the two reports (versions {sa.get('dataset_version')} and "
                         f"{sb.get('dataset_version')}): evaluate both models again on today's {sa['dataset']}")


def diff_reports(a: reports.Report, b: reports.Report, *, tracks: dict[str, str] | None = None) -> ModelDiff:
    """Compare report A with report B image by image (see the module docstring); ``tracks`` maps files to track ids
    (default: the dataset's index, :func:`split_tracks`). Raises ValueError for the same model twice, reports on
    different data, models without a shared class, or no shared image."""
    check_comparable(a, b)
    ca, cb = model_classes(a), model_classes(b)
    shared = sorted(set(ca) & set(cb))
    if not shared:
        raise ValueError(f"{a.summary['model']} and {b.summary['model']} share no class (A predicts {len(ca)}, B "
                         f"{len(cb)}): compare models trained on overlapping classes")
    row_of_b = {f: i for i, f in enumerate(b.predictions.files)}
    pa = a.predictions
    rows_a = [i for i, f in enumerate(pa.files) if f in row_of_b and int(pa.y_true[i]) in set(shared)]
    if not rows_a:
        raise ValueError(f"the two reports have no image of a shared class in common: evaluate both models on "
                         f"{a.summary['dataset']}/{a.summary['split']} again")
    if tracks is None:
        tracks = split_tracks(a.summary["dataset"], a.summary["split"])
    return _compute_diff(a, b, np.asarray(rows_a), np.asarray([row_of_b[pa.files[i]] for i in rows_a]),
                         shared, only_a=sorted(set(ca) - set(cb)), only_b=sorted(set(cb) - set(ca)), tracks=tracks)


def _compute_diff(a: reports.Report, b: reports.Report, rows_a: np.ndarray, rows_b: np.ndarray, shared: list,
                  *, only_a: list, only_b: list, tracks: dict[str, str]) -> ModelDiff:
    pa, pb = a.predictions, b.predictions
    truth = pa.y_true[rows_a]
    right_a, right_b = pa.y_pred[rows_a] == truth, pb.y_pred[rows_b] == truth
    a_only, b_only = rows_a[right_a & ~right_b], rows_a[right_b & ~right_a]
    per_class = []
    for cid in shared:
        m = truth == cid
        if not m.any():
            continue
        acc_a, acc_b = float(right_a[m].mean()), float(right_b[m].mean())
        per_class.append({"class_id": int(cid), "name": a.class_name(int(cid)), "n": int(m.sum()),
                          "accuracy_a": acc_a, "accuracy_b": acc_b, "delta": acc_b - acc_a,
                          "a_right_b_wrong": int((m & right_a & ~right_b).sum()),
                          "b_right_a_wrong": int((m & right_b & ~right_a).sum())})
    per_class.sort(key=lambda r: (-abs(r[PER_CLASS_ORDER]), r["class_id"]))
    by_track, n_tracks = track_differences([pa.files[i] for i in rows_a], right_a & ~right_b, right_b & ~right_a,
                                           tracks)
    return ModelDiff(report_a=a.id, report_b=b.id, model_a=a.summary["model"], model_b=b.summary["model"],
                     dataset=a.summary["dataset"], split=a.summary["split"], n=int(len(rows_a)),
                     a_right_b_wrong=a_only, b_right_a_wrong=b_only,
                     rows_b={int(i): int(j) for i, j in zip(rows_a, rows_b)},
                     both_right=int((right_a & right_b).sum()), both_wrong=int((~right_a & ~right_b).sum()),
                     mcnemar_p=mcnemar_exact(len(a_only), len(b_only)), shared_classes=[int(c) for c in shared],
                     only_a=only_a, only_b=only_b, per_class=per_class, tracks=n_tracks,
                     track_p=sign_flip_p(by_track) if n_tracks else None)


def find_report(model: str, dataset: str, split: str) -> str | None:
    """The newest report of the model's current file on the dataset's current version and split, or None."""
    version = registry.file_version(registry.model_path(model))
    data_version = datasets.get_dataset(dataset).fingerprint
    for rec in reports.list_reports():  # newest first
        if (rec["model"], rec["dataset"], rec["split"]) == (model, dataset, split) \
                and rec.get("model_version") == version and rec.get("dataset_version") == data_version:
            return rec["id"]
    return None


def check_models(model_a: str, model_b: str, dataset: str, split: str) -> None:
    """ValueError, saying what to do, for the same model twice, an unknown model or split, or models that share
    no class."""
    if model_a == model_b:
        raise ValueError(f"the same model twice ({model_a!r}): pick two different models")
    datasets.require_split(dataset, split)
    ia, ib = registry.get_model(model_a), registry.get_model(model_b)
    if ia.class_ids and ib.class_ids and not set(ia.class_ids) & set(ib.class_ids):
        raise ValueError(f"{model_a} and {model_b} share no class ({len(ia.class_ids)} and {len(ib.class_ids)} "
                         "classes): compare models trained on overlapping classes")


def missing_evaluations(model_a: str, model_b: str, dataset: str, split: str) -> dict[str, EvaluateRun]:
    """The evaluations to run before the two models can be compared on ``dataset``/``split``: model name ->
    its :class:`EvaluateRun` (empty when both have a current report). Checks the request first
    (:func:`check_models`)."""
    check_models(model_a, model_b, dataset, split)
    return {m: EvaluateRun(model=m, dataset=dataset, split=split, classes="model")
            for m in (model_a, model_b) if find_report(m, dataset, split) is None}


def diff_models(model_a: str, model_b: str, dataset: str, split: str) -> ModelDiff:
    """:func:`diff_reports` of the two models' current reports on ``dataset``/``split``; ValueError naming the
    evaluations to run when a report is missing."""
    missing = missing_evaluations(model_a, model_b, dataset, split)
    if missing:
        raise ValueError(f"no current report of {' and '.join(missing)} on {dataset}/{split}: evaluate "
                         f"{'them' if len(missing) > 1 else 'it'} first")
    return diff_reports(reports.load_report(find_report(model_a, dataset, split)),
                        reports.load_report(find_report(model_b, dataset, split)))
