"""Curation: what users added to a workspace: one page of its added-image records (filtered, newest first; generated
images alone or hidden), whether a record is an augmented variant, edits (crop, rotate, flip) saved as a new version
of an image, and giving a group of images a class (a new one or an existing one), dealt to train, val and test the
way an import deals uploads (:func:`core.curation.importing.smart_segregation`).

Adding images is :mod:`core.curation.importing`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.curation.importing import plural, smart_segregation
from core.data import datasets, workspace_changes, workspaces
from core.data.duplicates import descriptors
from core.data.images import load_image, pixel_hash
from core.learning.inference import embed

#: Shares of a group given a class that go to val and to test (of all its images; train gets the rest).
GROUP_VAL, GROUP_TEST = 0.2, 0.2


@dataclass(frozen=True)
class AddedPage:
    records: list[dict]   # full records (provenance) with current split and class, newest first
    total: int            # records matching the filter
    page: int             # 1-based, clamped
    pages: int


def list_added(records: Sequence[dict], *, class_id: int | None = None, split: str | None = None,
               batch: str | None = None, augmented: bool | None = None, generated: bool | None = None,
               page: int = 1, page_size: int = 48) -> AddedPage:
    """One page of added-image records (from :func:`core.data.workspaces.current_added`), filtered, newest first;
    ``generated``: None every record, True only generated images, False none of them."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    rows = [r for r in records if (class_id is None or r["class_id"] == class_id)
            and (split is None or r["split"] == split) and (batch is None or r.get("batch") == batch)
            and (augmented is None or is_augmented(r) == augmented)
            and (generated is None or workspaces.is_generated(r) == generated)]
    rows.sort(key=lambda r: r["seq"], reverse=True)
    pages = max(1, math.ceil(len(rows) / page_size))
    page = min(max(1, int(page)), pages)
    return AddedPage(rows[(page - 1) * page_size: page * page_size], len(rows), page, pages)


def is_augmented(record: dict) -> bool:
    """Whether an added image is a variant (made by augmentation) rather than an upload or its edit."""
    recipe = record.get("recipe") or {}
    return "groups" in recipe


ROTATIONS = (0, 90, 180, 270)
FLIPS = (None, "horizontal", "vertical")


def apply_edit(image: np.ndarray, *, crop: tuple[int, int, int, int] | None = None, rotate: int = 0,
               flip: str | None = None) -> np.ndarray:
    """Crop (left, top, right, bottom in pixels, right/bottom exclusive), then rotate counter-clockwise by a
    multiple of 90 degrees, then flip. The preview and the saved image both come from here."""
    h, w = image.shape[:2]
    if crop is not None:
        left, top, right, bottom = (int(v) for v in crop)
        if not (0 <= left < right <= w and 0 <= top < bottom <= h):
            raise ValueError(f"crop {crop} does not fit the {w}x{h} image; use 0 <= left < right <= {w}, "
                             f"0 <= top < bottom <= {h}")
        image = image[top:bottom, left:right]
    if rotate not in ROTATIONS:
        raise ValueError(f"rotate must be one of {ROTATIONS}, got {rotate}")
    if flip not in FLIPS:
        raise ValueError(f"flip must be one of {FLIPS}, got {flip!r}")
    image = np.rot90(image, rotate // 90)
    if flip == "horizontal":
        image = image[:, ::-1]
    elif flip == "vertical":
        image = image[::-1]
    return np.ascontiguousarray(image)


def edit_image(dataset: str, image_id: str, *, crop: tuple[int, int, int, int] | None = None, rotate: int = 0,
               flip: str | None = None) -> str:
    """Save an edited copy of an added image as a new version (its ``parent`` is the old one, which goes to the
    trash; undo brings it back). Returns the new image's id."""
    info = datasets.get_dataset(dataset)
    rec = next((r for r in workspaces.current_added(info) if r["id"] == image_id), None) \
        if info.kind == "workspace" else None
    if rec is None:
        raise ValueError(f"no added image {image_id!r} in {dataset!r}")
    edited = apply_edit(load_image(info.image_path(rec["file"])), crop=crop, rotate=rotate, flip=flip)
    edit = {"crop": list(crop) if crop else None, "rotate": rotate, "flip": flip}
    return workspace_changes.replace_image(dataset, image_id, edited, record={
        "upload": rec.get("upload", rec["source"]), "upload_sha256": rec.get("upload_sha256"),
        "batch": rec.get("batch"), "recipe": {"edit": edit}, "pixel_sha": pixel_hash(edited)})


def split_group(images: Sequence[np.ndarray], *, model, val_ratio: float = GROUP_VAL, test_ratio: float = GROUP_TEST,
                families: Sequence[str] | None = None, seed: int = 0) -> list[str]:
    """"train", "val" or "test" per image of a group, by smart segregation on ``model``'s penultimate features:
    near-duplicates stay together, and so do images of one ``families`` value (an upload and its augmented
    variants: :func:`families`); every kind of image is spread by the shares (a small group still gets one family
    in val and one in test when it has three or more)."""
    if len(images) == 0:
        raise ValueError("no images to split: the group is empty")
    families = list(families) if families is not None else [str(k) for k in range(len(images))]
    if len(families) != len(images):
        raise ValueError(f"{len(images)} images need one family each, got {len(families)}")
    names = list(dict.fromkeys(families))
    members = [[k for k, f in enumerate(families) if f == name] for name in names]
    feats = embed(model, list(images))
    first = [m[0] for m in members]  # a family's descriptor: its first image (the upload, before its variants)
    dealt = smart_segregation(np.stack([feats[m].mean(0) for m in members]), descriptors([images[k] for k in first]),
                              sizes=[len(m) for m in members], val_ratio=val_ratio, test_ratio=test_ratio, seed=seed)
    where = {name: split for name, split in zip(names, dealt)}
    return [where[f] for f in families]


def families(info: datasets.DatasetInfo, refs: Sequence[str]) -> list[str]:
    """The family of each added image ``refs`` (by id): the id of the upload it comes from, following ``parent``
    (augmented variants and edits) back to the first record; unknown ids are their own family."""
    parent = {r["id"]: r.get("parent") for r in workspaces.current_added(info)}
    parent.update({r["id"]: r.get("parent") for r in workspaces.added_records(info.path)})

    def root(rid: str) -> str:
        seen = set()
        while parent.get(rid) and rid not in seen:
            seen.add(rid)
            rid = parent[rid]
        return rid

    return [root(r) for r in refs]


def suggest_class_name(classes: dict[int, str], *, like: str | None = None) -> str:
    """A free class name for a group: "New sign (like <like>)" when the model's nearest guess is known, else
    "New sign"; numbered when taken (names compare without case)."""
    stem = f"New sign (like {like})" if like else "New sign"
    taken = {n.casefold() for n in classes.values()}
    k, name = 1, stem
    while name.casefold() in taken:
        k += 1
        name = f"{stem} {k}"
    return name


@dataclass(frozen=True)
class Labelled:
    """What :func:`label_group` did."""

    class_id: int
    class_name: str
    created: bool              # a new class
    by_split: dict[str, int]   # images per split

    def message(self) -> str:
        where = ", ".join(f"{n} to {s}" for s, n in self.by_split.items() if n)
        total = sum(self.by_split.values())
        verb = "Created class" if self.created else "Added to class"
        return f"{verb} {self.class_id}: {self.class_name}: {plural(total, 'image')} ({where})."


def label_group(dataset: str, splits: Sequence[str], *, class_id: int | None = None, class_name: str | None = None,
                refs: Sequence[str] = (), images: Sequence[np.ndarray] = (), sources: Sequence[str] = ()) -> Labelled:
    """Give a group of images a class, each image going to its split (``splits``, e.g. from :func:`split_group`).

    The group is either images already in the workspace (``refs``: added images' ids, e.g. from the Extra bucket,
    moved) or new ones (``images`` with their upload names ``sources``, added). The class is an existing one
    (``class_id``) or a new one (``class_name``), created first; if placing the images then fails, the new class is
    taken back, so the workspace is as it was.
    """
    splits = list(splits)
    n = len(refs) if refs else len(images)
    if (class_id is None) == (class_name is None):
        raise ValueError("give either an existing class (class_id) or a name for a new class (class_name)")
    if bool(refs) == bool(len(images)):
        raise ValueError("give either the ids of images in the workspace (refs) or new images, not both or neither")
    if n == 0 or len(splits) != n or (len(images) and len(sources) != n):
        raise ValueError(f"{plural(n, 'image')} need one split each (and an upload name each for new images); "
                         f"got {plural(len(splits), 'split')}; give one split per image")
    bad = sorted(set(splits) - set(datasets.SPLITS))
    if bad:
        raise ValueError(f"unknown split {bad[0]!r}; valid splits: {', '.join(datasets.SPLITS)}")
    info = datasets.get_dataset(dataset)
    if class_id is not None and class_id not in info.classes:
        raise ValueError(f"workspace {dataset!r} has no class {class_id}; choose one of its classes or make a new one")
    cid = workspace_changes.add_class(dataset, class_name) if class_name is not None else int(class_id)
    try:
        if refs:
            _move_refs(dataset, refs, splits, cid)
        else:
            workspace_changes.add_images(dataset, list(images), split=splits, class_id=cid, sources=list(sources))
    except Exception:
        if class_name is not None:
            workspace_changes.undo(dataset)
        raise
    name = datasets.get_dataset(dataset).classes[cid]
    return Labelled(cid, name, class_name is not None, {s: splits.count(s) for s in datasets.SPLITS})


def _move_refs(dataset: str, refs: Sequence[str], splits: Sequence[str], class_id: int) -> None:
    """Move added images (by id) to class ``class_id``, each to its split, as one change (all or none)."""
    what = f"give {plural(len(refs), 'image')} class {class_id}"
    with workspace_changes.change(dataset, what) as ch:
        rows = {r["id"]: r for r in workspaces.read_rows(workspaces.read_info(ch.path)) if r["origin"] == "added"}
        missing = [r for r in refs if r not in rows]
        if missing:
            raise ValueError(f"{plural(len(missing), 'image')} of the group are no longer in workspace {dataset!r} "
                             f"(e.g. {missing[0]}); reload the page to see its images now")
        for ref, split in zip(refs, splits):
            ch.move(rows[ref], split, class_id)
