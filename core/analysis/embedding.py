"""Embedding maps and new-class detection.

A **map** is an openTSNE layout of a model's penultimate features for a stratified reference sample of a dataset
split (:data:`MAP_SIZE` images), computed once as a run and cached by (model version, dataset version, split,
size, seed, layout version: :func:`map_key`). New images (uploads, the Extra bucket, another split) are **placed
into the existing map** with openTSNE's ``transform``, which optimises only the new points, so the map never moves.

**New-class detection** groups the new images and flags the groups that are probably a class the model has
never seen. First, images the model **recognises confidently** (novelty below the detector's threshold and top-1
probability >= :data:`KNOWN_CONFIDENCE`) are kept out of the "new" groups: they form one *known* group per
predicted class. The rest are grouped by average-linkage agglomerative clustering on the cosine distance of the
first hidden layer's features, cut at :data:`CLUSTER_DISTANCE` (a distance threshold, not a fixed number of
groups: the number of new signs is unknown and may be one; HDBSCAN calls most of a handful noise). A group's
scores: mean novelty (:mod:`core.analysis.novelty`, ``fused``), mean prediction entropy, how much its members agree
on the predicted class, and the cosine distance of its centre to the nearest class centre. It is flagged "likely a
new class" when its mean novelty is above the *discovery* threshold that 95 % of known validation images stay below
(:data:`core.analysis.novelty.DISCOVERY_ACCEPT`; single predictions use the stricter 99 %).

Measured with ``benchmark`` (43 classes) on the sample as it was before the class-set change of 2026-12-04 (class 46
was then "Direction prohibited", GTSRB's "No entry" under another name), on the 45 Sample48 val + test images of the 5 classes it never saw plus
16 known test images (``tests/test_embedding.py::test_signs_the_benchmark_never_saw_form_one_group_each``): the
old rule (every image clustered, cut at 0.35) made 16 groups with 6 signs split over several; cuts from 0.5 to
0.6 of the unknown images give one pure group per new sign (0.7 merges different signs), so the cut sits at 0.55.
Now: 6 "new" groups (one per new sign, plus one image), 13 of the 16 known images in known groups (the other 3:
novelty above the threshold, so the model is unsure), and 9 "Direction prohibited" images called "Stop" at 80-90 %
that the novelty check cannot tell from stop signs. On 2 synthetic new signs x 10 jittered images plus 12 known
images: 2 pure new groups, the known images apart.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.base import config
from core.base.files import atomic_write_bytes
from core.analysis.novelty import DEFAULT_METHOD, Detector, get_method, layer_outputs
from core.base.progress import ProgressFn, StopFn, check, silent
from core.data import workspaces
from core.data.datasets import DatasetInfo
from core.data.images import load_image

MAP_SIZE = 5000
#: openTSNE iterations after early exaggeration: 250 keeps a 5,000-image map under 10 s on 2 cores.
TSNE_ITERATIONS = 250
TSNE_EXAGGERATION_ITERATIONS = 125
PERPLEXITY = 30
#: Cosine distance (first hidden layer, average linkage) below which new images join one group (measured: see the
#: module docstring).
CLUSTER_DISTANCE = 0.55
#: Top-1 probability from which an image that the novelty check passes counts as a confidently known class.
KNOWN_CONFIDENCE = 0.8
#: How a map is laid out (the features, the method and its settings, and a version raised when the computation
#: changes otherwise). Its hash (:func:`layout_version`) is part of every map's key, so changing any of it makes the
#: cached maps stale: they are laid out again.
LAYOUT = {"features": "pen", "method": "openTSNE", "perplexity": PERPLEXITY, "iterations": TSNE_ITERATIONS,
          "exaggeration_iterations": TSNE_EXAGGERATION_ITERATIONS, "version": 1}
#: A map key's fields, in the order its file name lists them.
KEY_FIELDS = ("model_version", "dataset", "dataset_version", "split", "size", "seed", "layout")


@dataclass
class Map:
    """A map of a reference sample: 2-D coordinates with what each point is."""

    key: dict              # KEY_FIELDS: model_version, dataset, dataset_version, split, size, seed, layout
    coords: np.ndarray     # (N, 2)
    features: np.ndarray   # (N, 300) penultimate features (the transform needs them)
    files: list[str]       # (N,) dataset files
    labels: np.ndarray     # (N,) true class ids
    predicted: np.ndarray  # (N,) predicted class ids
    confidence: np.ndarray  # (N,) top-1 probability

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, coords=self.coords, features=self.features.astype(np.float16),
                            files=np.asarray(self.files, dtype=str), labels=self.labels, predicted=self.predicted,
                            confidence=self.confidence, key=np.frombuffer(json.dumps(self.key).encode(), np.uint8))
        atomic_write_bytes(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> "Map":
        with np.load(path, allow_pickle=False) as z:
            return cls(json.loads(z["key"].tobytes().decode()), z["coords"], z["features"].astype(np.float32),
                       [str(f) for f in z["files"]], z["labels"], z["predicted"], z["confidence"])

    def is_stale(self, dataset_version: str) -> bool:
        """Whether the dataset has changed since the map was made (``dataset_version``: its version now), so the
        files the map names may hold other images."""
        return self.key["dataset_version"] != dataset_version


def view_id(key: dict) -> str:
    """8 hex digits naming what a map shows (:func:`map_key`: model version, dataset and its version, split,
    sample, layout): pages key their widgets with it, so nothing of one model's or dataset version's map is kept
    for another's."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]


def latest_map(key: dict) -> Path | None:
    """The map of ``key`` (:func:`map_key`) if cached, else the newest cached map of the same model, dataset,
    split, sample and layout made on an earlier version of the dataset (shown as stale: :meth:`Map.is_stale`);
    None if there is neither."""
    exact = map_path(key)
    if exact.is_file():
        return exact
    head = "-".join(str(key[k]) for k in KEY_FIELDS[:KEY_FIELDS.index("dataset_version")]) + "-"
    tail = "-" + "-".join(str(key[k]) for k in KEY_FIELDS[KEY_FIELDS.index("dataset_version") + 1:]) + ".npz"
    folder = exact.parent
    found = [p for p in folder.glob("*.npz") if p.name.startswith(head) and p.name.endswith(tail)
             and "-" not in p.name[len(head):-len(tail)]] if folder.is_dir() else []  # versions are hex digits
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def layout_version() -> str:
    """8 hex digits of :data:`LAYOUT`."""
    return hashlib.sha256(json.dumps(LAYOUT, sort_keys=True).encode()).hexdigest()[:8]


def map_key(*, model_version: str, dataset: str, dataset_version: str, split: str, size: int, seed: int) -> dict:
    """What a cached map depends on: the model file, the dataset version and split, the sample (size, seed) and
    today's layout (:func:`layout_version`)."""
    return {"model_version": model_version, "dataset": dataset, "dataset_version": dataset_version, "split": split,
            "size": size, "seed": seed, "layout": layout_version()}


def map_path(key: dict) -> Path:
    """Where the map of ``key`` (:func:`map_key`) is cached: a key of another layout names another file."""
    name = "-".join(str(key[k]) for k in KEY_FIELDS)
    return config.cache_dir() / "maps" / f"{name}.npz"


def stratified_sample(labels: np.ndarray, size: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``size`` images (all if fewer): every class in proportion, at least one image each,
    the rounding remainder drawn at random from the rest."""
    labels = np.asarray(labels)
    if len(labels) <= size:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = np.concatenate([rng.choice(idx, max(1, int(size * len(idx) / len(labels))), replace=False)
                             for idx in (np.flatnonzero(labels == c) for c in np.unique(labels))])
    if len(picked) > size:
        picked = rng.choice(picked, size, replace=False)
    elif len(picked) < size:
        rest = np.setdiff1d(np.arange(len(labels)), picked)
        picked = np.concatenate([picked, rng.choice(rest, size - len(picked), replace=False)])
    return np.sort(picked)


#: What the map's points can be coloured by.
COLOUR_BY = ("predicted class", "true class", "correct or wrong", "confidence", "source")
#: Confidence bands of the "confidence" colouring (top-1 probability).
CONFIDENCE_BANDS = (0.5, 0.8, 0.95)


def class_label(class_id: int, classes: dict[int, str]) -> str:
    """"14: Stop": a class as people read it."""
    return f"{int(class_id)}: {classes.get(int(class_id), 'unknown class')}"


def percent(p: float) -> str:
    """0.921 -> "92.1 %"."""
    return f"{100 * float(p):.1f} %"


def point_table(ref: Map, classes: dict[int, str], *, colour_by: str) -> tuple[pd.DataFrame, list[str]]:
    """The map's points for a chart: one row each (x, y, i, colour: what it is coloured by, hover: class, file and
    confidence in words) and the colour labels in legend order. ``classes``: id -> name."""
    if colour_by not in COLOUR_BY:
        raise ValueError(f"unknown colouring {colour_by!r}; valid: {', '.join(COLOUR_BY)}")
    pred = [class_label(c, classes) for c in ref.predicted]
    true = [class_label(c, classes) for c in ref.labels]
    by_class = sorted(set(pred) | set(true), key=lambda c: int(c.split(":")[0]))
    bands = ["below " + percent(CONFIDENCE_BANDS[0])] + [
        f"{percent(a)} to {percent(b)}" for a, b in zip(CONFIDENCE_BANDS, CONFIDENCE_BANDS[1:])] + [
        percent(CONFIDENCE_BANDS[-1]) + " and above"]
    added = [f.startswith(workspaces.ADDED_DIR + "/") for f in ref.files]
    colour, order = {
        "predicted class": (pred, by_class),
        "true class": (true, by_class),
        "correct or wrong": (np.where(ref.predicted == ref.labels, "correct", "wrong"), ["correct", "wrong"]),
        "confidence": ([bands[k] for k in np.searchsorted(CONFIDENCE_BANDS, ref.confidence, side="right")], bands),
        "source": (np.where(added, "added by users", "from the dataset"), ["from the dataset", "added by users"]),
    }[colour_by]
    hover = [f"{p} ({percent(c)})<br>true class {t}<br>{Path(f).name}"
             for p, t, c, f in zip(pred, true, ref.confidence, ref.files)]
    table = pd.DataFrame({"x": ref.coords[:, 0], "y": ref.coords[:, 1], "i": np.arange(len(ref.files)),
                          "colour": list(colour), "hover": hover})
    return table, [c for c in order if c in set(table["colour"])]


def compute_map(model, class_ids: list[int], images: np.ndarray, labels: np.ndarray, files: list[str], *, key: dict,
                seed: int = 0, progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> Map:
    """Features of the images, then their openTSNE layout (the images are the reference sample already)."""
    progress = progress or silent
    if len(images) < 10:
        raise ValueError(f"a map needs at least 10 images, got {len(images)}; choose a larger split")
    progress(0.05, f"features of {len(images):,} images")
    out = layer_outputs(model, images, should_stop=should_stop)
    check(should_stop)
    progress(0.4, "laying out the map (openTSNE)")
    perplexity = min(PERPLEXITY, (len(images) - 1) / 3)
    from openTSNE import TSNE  # on first use: 0.56 s off every command's start (bench_eval_vs_bare.py)
    coords = TSNE(perplexity=perplexity, n_iter=TSNE_ITERATIONS, early_exaggeration_iter=TSNE_EXAGGERATION_ITERATIONS,
                  n_jobs=2, random_state=seed, verbose=False).fit(out["pen"])
    probs = _softmax(out["logits"])
    ids = np.asarray(class_ids)
    return Map(key, np.asarray(coords, np.float32), out["pen"], list(files), np.asarray(labels),
               ids[probs.argmax(1)], probs.max(1).astype(np.float32))


class Placer:
    """Places new images into an existing map (openTSNE ``transform``: only the new points move). Building it
    indexes the map's neighbours once (about 1 s for 5,000 points); keep it to place many batches."""

    def __init__(self, reference: Map, *, seed: int = 0):
        perplexity = min(PERPLEXITY, (len(reference.features) - 1) / 3)
        from openTSNE import TSNEEmbedding, affinity  # on first use (see above)
        aff = affinity.PerplexityBasedNN(reference.features, perplexity=perplexity, n_jobs=2, random_state=seed,
                                         verbose=False)
        self._embedding = TSNEEmbedding(reference.coords.astype(np.float64), aff, n_jobs=2, random_state=seed)

    def place(self, features: np.ndarray) -> np.ndarray:
        """2-D positions (M, 2) of new images' penultimate features."""
        if len(features) == 0:
            return np.zeros((0, 2), np.float32)
        return np.asarray(self._embedding.transform(features), np.float32)


def place(reference: Map, features: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """2-D positions (M, 2) of new images in an existing map, in one go (see :class:`Placer`)."""
    return Placer(reference, seed=seed).place(features) if len(features) else np.zeros((0, 2), np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


@dataclass
class Group:
    """A group of new images and why it may be a new class."""

    members: list[int]         # indices into the new images
    novelty: float             # mean novelty score (by the chosen method, fused by default)
    entropy: float             # mean prediction entropy (nats)
    agreement: float           # share of members predicted as the group's most common class
    predicted: int             # that class id
    class_distance: float      # cosine distance of the group centre to the nearest class centre
    likely_new: bool
    known: bool = False        # every member is recognised confidently as ``predicted`` (kept out of new groups)
    confidence: float = 0.0    # mean top-1 probability of the members


def detect_new_classes(model, detector: Detector, class_ids: list[int], images, *,
                       method: str = DEFAULT_METHOD, outputs: dict[str, np.ndarray] | None = None) -> list[Group]:
    """Group new images and flag groups that are probably a class the model lacks (by novelty ``method``): images
    recognised confidently form one *known* group per predicted class, the rest are clustered (module docstring).
    Groups that may be new first, most novel first; then the known ones, largest first. ``outputs``: the images'
    :func:`~core.analysis.novelty.layer_outputs`, if already computed."""
    get_method(method)  # an unknown method: ValueError listing the valid ones, before any work
    if len(images) == 0:
        raise ValueError("no images to group: upload some, or choose a split or the Extra bucket")
    out = layer_outputs(model, images) if outputs is None else outputs
    scores = detector.scores(model, images, (method,), outputs=out)[method]
    probs = _softmax(out["logits"])
    pred = np.asarray(class_ids)[probs.argmax(1)]
    known = ~np.asarray(detector.novel({method: scores}, method, discovery=True), bool) & (
        probs.max(1) >= KNOWN_CONFIDENCE)
    rest = np.flatnonzero(~known)
    clusters = [rest[g].tolist() for g in group_images(out["fc1"][rest])] if len(rest) else []
    by_class = [np.flatnonzero(known & (pred == c)).tolist() for c in np.unique(pred[known])]
    scored = _GroupScores(detector, out, scores, probs, pred, detector.discovery_thresholds[method])
    new = sorted((scored.group(m, known=False) for m in clusters), key=lambda g: -g.novelty)
    return new + sorted((scored.group(m, known=True) for m in by_class), key=lambda g: -len(g.members))


class _GroupScores:
    """Scores a group of images from their per-image outputs (novelty, entropy, agreement, class distance)."""

    def __init__(self, detector: Detector, out: dict[str, np.ndarray], scores: np.ndarray, probs: np.ndarray,
                 pred: np.ndarray, threshold: float):
        self.out, self.scores, self.probs, self.pred, self.threshold = out, scores, probs, pred, threshold
        self.entropy = -(probs * np.log(probs + 1e-12)).sum(1)
        self.centres = detector.class_means / (np.linalg.norm(detector.class_means, axis=1, keepdims=True) + 1e-8)

    def group(self, members: list[int], *, known: bool) -> Group:
        m = np.asarray(members)
        values, counts = np.unique(self.pred[m], return_counts=True)
        centre = self.out["pen"][m].mean(0)
        centre /= np.linalg.norm(centre) + 1e-8
        novelty = float(self.scores[m].mean())
        return Group(list(members), novelty, float(self.entropy[m].mean()), float(counts.max() / len(m)),
                     int(values[counts.argmax()]), float(1 - (self.centres @ centre).max()),
                     not known and novelty > self.threshold, known, float(self.probs[m].max(1).mean()))


@dataclass
class Placement:
    """New images placed into a map, with their groups."""

    coords: np.ndarray    # (M, 2) positions in the map
    groups: list[Group]   # most novel first; empty without a novelty detector
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(0, int))          # (M,) predicted class ids
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (M,) top-1 probability

    def group_of(self) -> np.ndarray:
        """(M,) the index of each new image's group in :attr:`groups` (-1: not grouped)."""
        out = np.full(len(self.coords), -1)
        for k, g in enumerate(self.groups):
            out[g.members] = k
        return out


def place_new_images(placer: Placer, model, images, *, class_ids: list[int], detector: Detector | None = None,
                     method: str = DEFAULT_METHOD) -> Placement:
    """Place new images into the map behind ``placer`` and, given a novelty ``detector``, group them and flag the
    groups that are probably a new class (:func:`detect_new_classes`); one pass of the model serves both.

    Parameters
    ----------
    images : sequence of M (H, W, 3) uint8 RGB images
    class_ids : the model's classes in output order (a checkpoint's ``class_ids``)
    detector : the model's novelty detector, or None (the images are placed, not grouped)
    """
    get_method(method)  # an unknown method: ValueError listing the valid ones, before any work
    if len(images) == 0:
        return Placement(np.zeros((0, 2), np.float32), [])
    out = layer_outputs(model, images)
    groups = detect_new_classes(model, detector, class_ids, images, method=method, outputs=out) if detector else []
    probs = _softmax(out["logits"])
    return Placement(placer.place(out["pen"]), groups, np.asarray(class_ids)[probs.argmax(1)],
                     probs.max(1).astype(np.float32))


def extra_bucket(info: DatasetInfo) -> tuple[list[np.ndarray], list[str]]:
    """A workspace's Extra bucket (unlabelled images, :data:`core.data.workspaces.EXTRA`): its images (H, W, 3)
    uint8 and their ids, in record order; empty for a built dataset."""
    if info.kind != "workspace":
        return [], []
    extra = [r for r in workspaces.current_added(info) if r["split"] == workspaces.EXTRA]
    return [load_image(info.image_path(r["file"])) for r in extra], [r["id"] for r in extra]


def group_images(features: np.ndarray, *, distance: float = CLUSTER_DISTANCE) -> list[list[int]]:
    """Groups (lists of row indices) by average-linkage clustering on cosine distance, cut at ``distance``."""
    if not 0 < distance < 2:
        raise ValueError(f"a cosine distance cut lies in (0, 2), got {distance}")
    if len(features) == 1:
        return [[0]]
    from sklearn.cluster import AgglomerativeClustering  # slow to import; only grouping needs it
    labels = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="cosine",
                                     linkage="average").fit_predict(features)
    return [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]


def selected_points(points: list[dict], *, n_map: int, n_new: int) -> list[tuple[int, int]]:
    """(kind, index) of the points a chart selection holds (``customdata`` [kind, index]: 0 a map image, 1 a new
    one), keeping only indices of this view; a selection from another view (or a malformed point) is dropped."""
    out = []
    for p in points:
        data = p.get("customdata")
        if isinstance(data, dict):  # a typed array arrives as {"0": kind, "1": index}
            data = [data.get("0"), data.get("1")]
        try:
            kind, i = int(data[0]), int(data[1])
        except (TypeError, ValueError, IndexError, KeyError):
            continue
        if 0 <= i < (n_new if kind else n_map):
            out.append((kind, i))
    return out
