"""Curation: adding images to a workspace (variants, duplicates and leakage, smart segregation). Browsing and
editing what users added: :mod:`core.curation.added`.

An import takes decoded uploads (:mod:`core.data.uploads`) and settings, and produces one workspace change:

1. **refuse** per file: what failed to decode, exact duplicates (same pixels) of an image already in the workspace
   or earlier in the batch;
2. **variants**: each upload is kept as it is plus ``variants`` augmented copies (the seven groups of
   :mod:`core.data.augment`, combined and permuted), seeded per upload, so the preview is what gets written;
3. **destination**: the test split, the Extra bucket, or train + val by **smart segregation**: an upload, its
   variants and its near-duplicates form a group; groups are clustered on a model's penultimate features and
   each cluster's groups are dealt to val by the user's ratio, so no group straddles train and val;
4. **leakage**: near-duplicates of images already in *other* splits are reported (``on_leak="report"``) or their
   uploads skipped (``"skip"``);
5. **write**: one :func:`core.data.workspace_changes.add_images` call (files first, then one commit), every image with
   its provenance (upload name and hash, parent, augmentation recipe and seed, batch, time).

Near-duplicates are judged on a small perceptual descriptor (16 x 16 grey, zero mean, unit norm; cosine >=
:data:`NEAR_DUPLICATE`), not on the model's features: measured on the sample with the shipped benchmark, the
penultimate features of two different images of one class are as close (median cosine 0.95-0.97, nearest
0.99) as an image and its re-encoded copy, while the descriptor puts re-encoded copies (JPEG q70, resized) at
>= 0.986 and 99 % of distinct test images below 0.986, 90 % below 0.95.
"""
from __future__ import annotations

import hashlib
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from core.base.text import plural
from core.data import augment, datasets, workspace_changes, workspaces
from core.data.images import pixel_hash
from core.learning.inference import embed
from core.base.progress import ProgressFn, StopFn, check, silent
from core.data.duplicates import NEAR_DUPLICATE, descriptors
from core.data.uploads import Upload

DESTINATIONS = ("trainval", "test", workspaces.EXTRA)
LEAK_ACTIONS = ("report", "skip")
#: Probability of each chosen augmentation group in a variant (several groups combine, in a random order).
VARIANT_P = 0.8
MAX_VARIANTS = 20
#: Draws per variant before an unchanged copy is accepted (each group can be skipped with 1 - VARIANT_P).
VARIANT_TRIES = 5
#: The model whose penultimate features drive smart segregation unless another is chosen (the shipped benchmark).
SEGREGATION_MODEL = "benchmark"


def _setting(default, help: str, **cli):
    """A settings field with its help text (and CLI hints: ``choices``) in its metadata."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class ImportSettings:
    """What to do with a batch of uploads, every setting defined once: the Add images form and the CLI's
    ``images add`` flags take their defaults and help from these fields."""

    dataset: str = field(metadata={"help": "the workspace"})
    class_id: int = field(metadata={"help": "class id, or workspaces.EXTRA_CLASS for the Extra bucket (unlabelled)"})
    groups: tuple[str, ...] = _setting((), "augmentation groups of the variants (combined, in a random order per "
                                       "variant)")
    variants: int = _setting(0, "augmented copies per upload, besides the upload itself")
    to: str = _setting("trainval", "trainval (smart segregation into train and val), test or extra",
                       choices=DESTINATIONS)
    val_ratio: float = _setting(0.2, "share of val in train + val")
    seed: int = _setting(0, "seed of the variants and of smart segregation")
    on_leak: str = _setting("report", "near-duplicates of images in other splits: report them, or skip those "
                            "uploads", choices=LEAK_ACTIONS)

    def validate(self) -> None:
        if self.to not in DESTINATIONS:
            raise ValueError(f"unknown destination {self.to!r}; valid: {', '.join(DESTINATIONS)}")
        if (self.to == workspaces.EXTRA) != (self.class_id == workspaces.EXTRA_CLASS):
            raise ValueError("the Extra bucket takes unlabelled images: use class 'extra' with destination 'extra'")
        if not 0 <= self.variants <= MAX_VARIANTS:
            raise ValueError(f"variants must lie in [0, {MAX_VARIANTS}], got {self.variants}")
        if self.variants and not self.groups:
            raise ValueError("variants need at least one augmentation group; valid groups: "
                             + ", ".join(augment.list_groups()))
        augment.REGISTRY.check(self.groups)
        if not 0 <= self.val_ratio < 1:
            raise ValueError(f"val ratio must lie in [0, 1), got {self.val_ratio}")
        if self.on_leak not in LEAK_ACTIONS:
            raise ValueError(f"unknown on_leak {self.on_leak!r}; valid: {', '.join(LEAK_ACTIONS)}")


    def check_target(self) -> datasets.DatasetInfo:
        """Validate, and check that the dataset is a workspace holding the class that this session may change;
        returns the workspace."""
        self.validate()
        info = datasets.get_dataset(self.dataset)
        if info.kind != "workspace":
            raise ValueError(f"{info.name!r} is a built dataset and never changes; add images to a workspace derived "
                             f"from it (python -m core datasets derive --from {info.name} --name Main)")
        if self.class_id != workspaces.EXTRA_CLASS and self.class_id not in info.classes:
            raise ValueError(f"workspace {info.name!r} has no class {self.class_id}; add it first")
        workspaces.require_writable(info.name)  # demo mode: only the session that made it
        return info


@dataclass
class ImportPlan:
    """What an import will write: images with their split and record, and what it refused or found."""

    images: list[np.ndarray] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)   # {"file", "error"}
    leaks: list[dict] = field(default_factory=list)    # {"file", "split", "near", "near_split", "similarity"}
    duplicates: list[dict] = field(default_factory=list)  # {"file", "class_id", "class_name", "split"}: already there


def default_segregation_model(names: Sequence[str]) -> str | None:
    """The model smart segregation uses unless another is chosen: :data:`SEGREGATION_MODEL` when it is among the
    registered ``names``, else the first of them; None when there are none."""
    names = list(names)
    return SEGREGATION_MODEL if SEGREGATION_MODEL in names else (names[0] if names else None)


def variants(upload: Upload, *, groups: Sequence[str], n: int, seed: int) -> list[tuple[np.ndarray, dict]]:
    """``n`` augmented copies of an upload with their recipes; the same upload and seed give the same copies."""
    if n == 0:
        return []
    upload_seed = int(hashlib.sha256(f"{seed}:{upload.sha256}".encode()).hexdigest()[:8], 16)
    pipe = augment.build_pipeline(list(groups), p=VARIANT_P, seed=upload_seed)
    out = []
    for k in range(n):
        for _ in range(VARIANT_TRIES):  # a draw where no group fired is the upload again: draw anew
            image = pipe(image=upload.image)["image"]
            if not np.array_equal(image, upload.image):
                break
        out.append((image, {"groups": list(groups), "seed": upload_seed, "variant": k + 1, "p": VARIANT_P}))
    return out


@dataclass
class _Existing:
    """The workspace's current images: pixel hashes, descriptors, files, splits and classes (duplicates, leaks)."""

    hashes: dict[str, int]   # pixel hash -> index into files
    desc: np.ndarray
    files: list[str]
    splits: list[str]
    labels: list[int]
    uploads: dict[str, str]  # file of an added image -> the name it was uploaded as
    classes: dict[int, str]

    @classmethod
    def of(cls, info: datasets.DatasetInfo, should_stop: StopFn | None = None) -> "_Existing":
        hashes, descs, files, splits, labels = {}, [], [], [], []
        added = workspaces.current_added(info)
        shas = {r["file"]: r.get("pixel_sha") for r in added}
        for split in datasets.SPLITS:
            arrays = datasets.load_split(info, split)
            check(should_stop)
            for im, f in zip(arrays.images, arrays.files):
                hashes[shas.get(f) or pixel_hash(im)] = len(files)
                files.append(f)
            descs.append(descriptors(arrays.images))
            splits += [split] * len(arrays)
            labels += [int(c) for c in arrays.labels]
        return cls(hashes, np.concatenate(descs), files, splits, labels,
                   {r["file"]: r.get("upload") or r.get("source", "") for r in added}, dict(info.classes))

    def describe(self, k: int) -> str:
        """Existing image ``k`` in plain words: its class (id and name), split, and upload name if a user added it."""
        cid = self.labels[k]
        upload = self.uploads.get(self.files[k])
        return (f"{cid}: {self.classes.get(cid, '?')} in {self.splits[k]}"
                + (f", uploaded as {upload}" if upload else ""))

    def nearest(self, desc: np.ndarray, *, not_in: str) -> tuple[int, float] | None:
        """Index and similarity of the most similar existing image outside split ``not_in`` (None if none)."""
        mask = np.asarray([s != not_in for s in self.splits])
        if not mask.any():
            return None
        sims = self.desc[mask] @ desc
        k = int(np.argmax(sims))
        return int(np.flatnonzero(mask)[k]), float(sims[k])


def plan_import(uploads: Sequence[Upload], settings: ImportSettings, *, model=None,
                progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> ImportPlan:
    """Decide what an import writes (nothing is written here). ``model`` (a network) is needed for smart
    segregation (destination ``trainval``)."""
    info = settings.check_target()
    progress = progress or silent
    if settings.to == "trainval" and model is None:
        raise ValueError("smart segregation into train and val needs a model for its features; choose one")
    plan = ImportPlan()
    progress(0.05, "reading the workspace's images (duplicates, leakage)")
    existing = _Existing.of(info, should_stop)
    good = _refuse_duplicates(uploads, existing, plan)
    progress(0.3, f"making {plural(settings.variants, 'variant')} of {plural(len(good), 'upload')}")
    groups = [[(u.image, None)] + variants(u, groups=settings.groups, n=settings.variants, seed=settings.seed)
              for u in good]
    check(should_stop)
    descs = descriptors([u.image for u in good])
    splits = _destinations(good, groups, descs, settings, model, should_stop)
    progress(0.8, "checking for leakage")
    keep = _check_leaks(good, descs, splits, existing, settings, plan)
    batch = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    for i, (u, group, split) in enumerate(zip(good, groups, splits)):
        if i in keep:
            _add_group(plan, u, group, split, batch)
    progress(1.0, f"{plural(len(plan.images), 'image')} to write")
    return plan


def _refuse_duplicates(uploads: Sequence[Upload], existing: _Existing, plan: ImportPlan) -> list[Upload]:
    good, seen = [], {}
    for u in uploads:
        if u.error:
            plan.errors.append({"file": u.name, "error": u.error})
            continue
        h = pixel_hash(u.image)
        if h in existing.hashes:
            k = existing.hashes[h]
            cid = existing.labels[k]
            plan.duplicates.append({"file": u.name, "class_id": cid, "class_name": existing.classes.get(cid, "?"),
                                    "split": existing.splits[k]})
            plan.errors.append({"file": u.name, "error": f"{u.name}: already in the workspace ("
                                                         f"{existing.describe(k)}); not added"})
        elif h in seen:
            plan.errors.append({"file": u.name, "error": f"{u.name}: the same image as {seen[h]} in this "
                                                         "batch; added once"})
        else:
            seen[h] = u.name
            good.append(u)
    return good


def _destinations(good: list[Upload], groups: list[list], descs: np.ndarray, settings: ImportSettings, model,
                  should_stop: StopFn | None) -> list[str]:
    if settings.to != "trainval":
        return [settings.to] * len(good)
    feats = embed(model, [u.image for u in good]) if good else np.zeros((0, 300), np.float32)
    check(should_stop)
    return smart_segregation(feats, descs, sizes=[len(g) for g in groups], val_ratio=settings.val_ratio,
                             seed=settings.seed)


def smart_segregation(features: np.ndarray, descs: np.ndarray, *, sizes: Sequence[int], val_ratio: float,
                      test_ratio: float = 0.0, seed: int = 0) -> list[str]:
    """"train", "val" (or "test") per upload, keeping near-duplicates together and spreading every cluster by the
    shares (``val_ratio``, ``test_ratio``: shares of all the images; train gets the rest).

    Parameters
    ----------
    features : np.ndarray (N, D), the model's penultimate features of the uploads (clustered)
    descs : np.ndarray (N, 256), perceptual descriptors (near-duplicate uploads form one group)
    sizes : images each upload brings (itself plus its variants)
    """
    if not (0 <= val_ratio < 1 and 0 <= test_ratio < 1 and val_ratio + test_ratio < 1):
        raise ValueError(f"val and test shares must be in [0, 1) and leave some for train, got {val_ratio} and "
                         f"{test_ratio}")
    n = len(sizes)
    if n == 0:
        return []
    group_of = _near_duplicate_groups(descs)
    ids = sorted(set(group_of))
    members = {g: [i for i in range(n) if group_of[i] == g] for g in ids}
    gfeat = np.stack([features[members[g]].mean(0) for g in ids])
    gfeat /= np.linalg.norm(gfeat, axis=1, keepdims=True) + 1e-6
    labels = _cluster(gfeat, seed)
    rng = np.random.default_rng(seed)
    order = [ids[k] for c in sorted(set(labels)) for k in rng.permutation(np.flatnonzero(labels == c))]
    gsize = {g: sum(sizes[i] for i in members[g]) for g in ids}
    shares = {"val": val_ratio, "test": test_ratio}
    dealt, seen, where = {"val": 0, "test": 0}, 0, {}
    for g in order:  # deal groups to val and test against the running targets, cluster by cluster
        seen += gsize[g]
        for split, share in shares.items():
            if dealt[split] + gsize[g] / 2 < share * seen:
                where[g] = split
                dealt[split] += gsize[g]
                break
    for split, share in shares.items():  # a small batch still gets one group there, if train keeps one
        spare = [g for g in ids if g not in where]
        if share > 0 and not dealt[split] and len(spare) > 1:
            g = min(spare, key=lambda g: gsize[g])
            where[g], dealt[split] = split, gsize[g]
    return [where.get(group_of[i], "train") for i in range(n)]


def _near_duplicate_groups(descs: np.ndarray) -> list[int]:
    """Union-find over pairs with descriptor cosine >= NEAR_DUPLICATE; returns a group id per row."""
    parent = list(range(len(descs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sims = descs @ descs.T
    for i, j in zip(*np.nonzero(np.triu(sims >= NEAR_DUPLICATE, k=1))):
        parent[root(int(i))] = root(int(j))
    return [root(i) for i in range(len(descs))]


def _cluster(features: np.ndarray, seed: int) -> np.ndarray:
    """k-means with k = round(sqrt(groups)) (1 to 20): enough clusters that each kind of image is spread over
    train and val, few enough that each holds several groups to deal."""
    k = max(1, min(20, round(math.sqrt(len(features)))))
    if k == 1:
        return np.zeros(len(features), int)
    from sklearn.cluster import KMeans  # scikit-learn is slow to import; only smart segregation needs it
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(features)


def _check_leaks(good: list[Upload], descs: np.ndarray, splits: list[str], existing: _Existing,
                 settings: ImportSettings, plan: ImportPlan) -> set[int]:
    """Indices of the uploads to write; near-duplicates of images in other splits are listed in ``plan.leaks``."""
    keep = set()
    for i, (u, d, split) in enumerate(zip(good, descs, splits)):
        hit = existing.nearest(d, not_in=split) if split != workspaces.EXTRA else None
        if hit is not None and hit[1] >= NEAR_DUPLICATE:
            k, sim = hit
            plan.leaks.append({"file": u.name, "split": split, "near": existing.describe(k),
                               "near_split": existing.splits[k], "similarity": round(sim, 4),
                               "action": "skipped" if settings.on_leak == "skip" else "added"})
            if settings.on_leak == "skip":
                continue
        keep.add(i)
    return keep


def _add_group(plan: ImportPlan, u: Upload, group: list, split: str, batch: str) -> None:
    first = len(plan.images)
    for k, (im, recipe) in enumerate(group):
        plan.images.append(im)
        plan.splits.append(split)
        rec = {"upload": u.name, "upload_sha256": u.sha256, "recipe": recipe, "batch": batch,
               "pixel_sha": pixel_hash(im)}
        if k:
            rec["parent_index"] = first
        else:
            rec["parent"] = None
        plan.records.append(rec)


def write_import(plan: ImportPlan, settings: ImportSettings) -> dict:
    """Write a plan as one workspace change; returns the CLI's JSON result."""
    ids = workspace_changes.add_images(settings.dataset, plan.images, split=plan.splits, class_id=settings.class_id,
                                       sources=[r["upload"] for r in plan.records],
                                       records=plan.records) if plan.images else []
    by_split = {s: plan.splits.count(s) for s in ("train", "val", "test")}
    if settings.to == workspaces.EXTRA:
        by_split[workspaces.EXTRA] = len(plan.splits)
    return {"added": len(ids), "by_split": by_split, "ids": ids, "errors": plan.errors, "leaks": plan.leaks,
            "duplicates": plan.duplicates}


def describe_import(result: dict) -> tuple[str, str]:
    """(level, text) summing up an import's result (:func:`write_import`) for a person: ``"success"`` with what
    went where, or ``"warning"`` when nothing was added, saying why in class names."""
    added, dups = result["added"], result.get("duplicates", [])
    if added:
        where = ", ".join(f"{n} to {s}" for s, n in result["by_split"].items() if n)
        text = f"Added {plural(added, 'image')}: {where}."
        if dups:
            text += f" {plural(len(dups), 'upload')} skipped: already in the workspace."
        return "success", text
    if not dups:
        return "warning", "Nothing added: no upload could be used (see the reasons below)."
    by_class: dict[str, int] = {}
    for d in dups:
        label = f"{d['class_id']}: {d['class_name']}"
        by_class[label] = by_class.get(label, 0) + 1
    of = ", ".join(c + (f" ({n})" if len(by_class) > 1 else "") for c, n in sorted(by_class.items(),
                                                                                  key=lambda kv: -kv[1]))
    every = "the image is" if len(dups) == 1 else f"all {len(dups)} images are"
    if len(dups) < len(result["errors"]):
        every = f"{plural(len(dups), 'image')} {'is' if len(dups) == 1 else 'are'}"
    return "warning", f"Nothing added: {every} already in the workspace (duplicates of {of})."


def import_images(uploads: Sequence[Upload], settings: ImportSettings, *, model=None,
                  progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> dict:
    """Plan and write an import (see the module docstring)."""
    plan = plan_import(uploads, settings, model=model, progress=progress, should_stop=should_stop)
    check(should_stop)  # the last moment a cancel still leaves the workspace untouched
    return write_import(plan, settings)


def preview(uploads: Sequence[Upload], settings: ImportSettings, *, limit: int = 12) -> list[tuple[str, list]]:
    """(upload name, [the upload, its variants...]) for the first ``limit`` good uploads: exactly what an import
    with the same settings writes for them (same seeds)."""
    settings.validate()
    good = [u for u in uploads if u.ok][:limit]
    return [(u.name, [u.image] + [im for im, _ in variants(u, groups=settings.groups, n=settings.variants,
                                                             seed=settings.seed)]) for u in good]
