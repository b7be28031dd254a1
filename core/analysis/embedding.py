"""Embedding maps and new-class detection.

A **map** is an openTSNE layout of a model's penultimate features for a stratified reference sample of a dataset
split (:data:`MAP_SIZE` images), computed once as a run and cached by (model version, dataset version, split,
size, seed, layout version: :func:`map_key`). New images (uploads, the Extra bucket, another split) are **placed
into the existing map** with openTSNE's ``transform``, which optimises only the new points, so the map never moves.

**New-class detection** groups the new images and flags the groups that are probably a class the model has
never seen. Grouping: average-linkage agglomerative clustering on the cosine distance of the first hidden
layer's features, cut at :data:`CLUSTER_DISTANCE`. Chosen over k-means because the number of groups is unknown
and may be one, and over HDBSCAN because uploads come in handfuls (HDBSCAN calls most of a handful noise). A
group's scores: mean novelty (:mod:`core.analysis.novelty`, ``fused``), mean prediction entropy, how much its members
agree on the predicted class, and the cosine distance of its centre to the nearest class centre. It is flagged
"likely a new class" when its mean novelty is above the threshold that 95 % of known validation images stay
below.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from openTSNE import TSNE, TSNEEmbedding, affinity

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
#: Cosine distance (first hidden layer) below which new images join one group.
CLUSTER_DISTANCE = 0.35
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


def detect_new_classes(model, detector: Detector, class_ids: list[int], images, *,
                       method: str = DEFAULT_METHOD, outputs: dict[str, np.ndarray] | None = None) -> list[Group]:
    """Group new images and flag groups that are probably a class the model lacks (by novelty ``method``); most
    novel group first. ``outputs``: the images' :func:`~core.analysis.novelty.layer_outputs`, if already computed."""
    get_method(method)  # an unknown method: ValueError listing the valid ones, before any work
    if len(images) == 0:
        raise ValueError("no images to group: upload some, or choose a split or the Extra bucket")
    out = layer_outputs(model, images) if outputs is None else outputs
    scores = detector.scores(model, images, (method,), outputs=out)[method]
    groups = group_images(out["fc1"])
    probs = _softmax(out["logits"])
    entropy = -(probs * np.log(probs + 1e-12)).sum(1)
    pred = np.asarray(class_ids)[probs.argmax(1)]
    centres = detector.class_means / (np.linalg.norm(detector.class_means, axis=1, keepdims=True) + 1e-8)
    result = []
    for members in groups:
        m = np.asarray(members)
        values, counts = np.unique(pred[m], return_counts=True)
        centre = out["pen"][m].mean(0)
        centre /= np.linalg.norm(centre) + 1e-8
        novelty = float(scores[m].mean())
        result.append(Group(members, novelty, float(entropy[m].mean()), float(counts.max() / len(m)),
                            int(values[counts.argmax()]), float(1 - (centres @ centre).max()),
                            novelty > detector.thresholds[method]))
    return sorted(result, key=lambda g: -g.novelty)


@dataclass
class Placement:
    """New images placed into a map, with their groups."""

    coords: np.ndarray    # (M, 2) positions in the map
    groups: list[Group]   # most novel first; empty without a novelty detector


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
    return Placement(placer.place(out["pen"]), groups)


def extra_bucket(info: DatasetInfo) -> tuple[list[np.ndarray], list[str]]:
    """A workspace's Extra bucket (unlabelled images, :data:`core.data.workspaces.EXTRA`): its images (H, W, 3)
    uint8 and their ids, in record order; empty for a built dataset."""
    if info.kind != "workspace":
        return [], []
    extra = [r for r in workspaces.current_added(info) if r["split"] == workspaces.EXTRA]
    return [load_image(info.image_path(r["file"])) for r in extra], [r["id"] for r in extra]


def group_images(features: np.ndarray) -> list[list[int]]:
    """Groups (lists of row indices) by average-linkage clustering on cosine distance, cut at CLUSTER_DISTANCE."""
    if len(features) == 1:
        return [[0]]
    from sklearn.cluster import AgglomerativeClustering  # slow to import; only grouping needs it
    labels = AgglomerativeClustering(n_clusters=None, distance_threshold=CLUSTER_DISTANCE, metric="cosine",
                                     linkage="average").fit_predict(features)
    return [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]
