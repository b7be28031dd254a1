"""Browsing a dataset like a file explorer: pages of files, per-class counts, one image's details.

Only the files of the requested page are ever decoded, so a 39k-image split browses as fast as a small one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.data import workspaces
from core.data.built import pictogram_path
from core.data.datasets import SPLITS, DatasetInfo, read_index
from core.data.images import load_image


@dataclass(frozen=True)
class BrowsePage:
    rows: list[dict]      # index rows of this page: split, class_id, file, source, track, orig_w, orig_h
    paths: list[Path]     # absolute image paths, same order
    total: int            # images matching the filter
    page: int             # 1-based, clamped to [1, pages]
    pages: int


#: Orders a page can be sorted in: by class (the order images were written within a class), or by file name.
SORTS = ("class", "file")


def browse(info: DatasetInfo, *, split: str, class_id: int | None = None, page: int = 1, page_size: int = 48,
           query: str = "", sort: str = "class", index: list[dict] | None = None) -> BrowsePage:
    """One page of a split, optionally one class and files whose name contains ``query`` (case-insensitive).

    ``index`` may be passed in when the caller caches it.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; valid sorts: {', '.join(SORTS)}")
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    needle = query.strip().lower()
    rows = [r for r in (index if index is not None else read_index(info))
            if r["split"] == split and (class_id is None or r["class_id"] == class_id)
            and (not needle or needle in r["file"].lower())]
    # Stable sorts: within a class, the order images were written (the index keeps it).
    rows.sort(key=(lambda r: r["class_id"]) if sort == "class" else (lambda r: Path(r["file"]).name))
    pages = max(1, math.ceil(len(rows) / page_size))
    page = min(max(1, int(page)), pages)
    chunk = rows[(page - 1) * page_size: page * page_size]
    return BrowsePage(chunk, [info.image_path(r["file"]) for r in chunk], len(rows), page, pages)


def class_counts(info: DatasetInfo) -> pd.DataFrame:
    """Long table: class_id, name, split, images (every class and split, zeros included)."""
    recs = [{"class_id": cid, "name": name, "split": s, "images": info.counts.get(s, {}).get(cid, 0)}
            for cid, name in sorted(info.classes.items()) for s in SPLITS]
    return pd.DataFrame.from_records(recs)


@dataclass(frozen=True)
class ImageDetails:
    file: str
    split: str
    class_id: int
    class_name: str
    width: int
    height: int
    original_size: str
    source: str
    track: str
    pictogram: Path | None


def image_details(info: DatasetInfo, row: dict) -> ImageDetails:
    im = load_image(info.image_path(row["file"]))
    cid = int(row["class_id"])
    name = info.classes.get(cid, f"class {cid}")
    orig = f"{row['orig_w']}x{row['orig_h']}" if row.get("orig_w") not in (None, "", "0") else "unknown"
    own = workspaces.pictogram(info, cid) if info.kind == "workspace" else None
    return ImageDetails(row["file"], row["split"], cid, name, im.shape[1], im.shape[0], orig, row.get("source", ""),
                        row.get("track", ""), own or pictogram_path(cid, name))
