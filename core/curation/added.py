"""Curation: what users added to a workspace: one page of its added-image records (filtered, newest first),
whether a record is an augmented variant, and edits (crop, rotate, flip) saved as a new version of an image.

Adding images is :mod:`core.curation.importing`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.data import datasets, workspace_changes, workspaces
from core.data.images import load_image, pixel_hash


@dataclass(frozen=True)
class AddedPage:
    records: list[dict]   # full records (provenance) with current split and class, newest first
    total: int            # records matching the filter
    page: int             # 1-based, clamped
    pages: int


def list_added(records: Sequence[dict], *, class_id: int | None = None, split: str | None = None,
               batch: str | None = None, augmented: bool | None = None, page: int = 1,
               page_size: int = 48) -> AddedPage:
    """One page of added-image records (from :func:`core.data.workspaces.current_added`), filtered, newest first."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    rows = [r for r in records if (class_id is None or r["class_id"] == class_id)
            and (split is None or r["split"] == split) and (batch is None or r.get("batch") == batch)
            and (augmented is None or is_augmented(r) == augmented)]
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
