"""Underperforming slices of a report: groups of images, cut by a simple property, where the model does worse.

The idea is cleanlab's "underperforming group": the overall accuracy hides groups (dark images, blurry ones, small
signs, one source) where the model fails more often. Each image of a report gets

* **brightness**: mean luma (0-255) of the stored image;
* **contrast**: standard deviation of the luma (0-255);
* **sharpness**: variance of the Laplacian of the luma (low = blurry);
* **sign size**: the side of the original image the sign was cut from, sqrt(width x height) in pixels (the
  datasets record the original size of every row; GTSRB and TSRD crops hold the sign plus a ~10 % margin), or
  not known where a row does not record it;
* **source**: GTSRB, TSRD, uploaded, augmented (from the dataset rows and a workspace's added-image records).

Each numeric property is cut into quantile bins (about the same number of images in each); a slice is one bin or
one source. :func:`compute_slices` does the arithmetic on arrays; :func:`report_slices` feeds it a report.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.analysis import reports
from core.data import datasets, workspaces

#: The properties, in the order they are shown: name -> label for people.
PROPERTIES = {"brightness": "brightness", "contrast": "contrast", "sharpness": "sharpness (blur)",
              "sign_size": "sign size (px in the original image)", "source": "source"}
#: Numeric properties (cut into quantile bins); the others are categories.
NUMERIC = ("brightness", "contrast", "sharpness", "sign_size")
#: Default number of quantile bins of a numeric property.
DEFAULT_BINS = 4
#: Default smallest slice worth ranking: a slice of 3 images with 1 mistake says little.
DEFAULT_MIN_IMAGES = 10
#: The source of an image whose row names none we recognise.
OTHER_SOURCE = "other"


@dataclass(frozen=True)
class Slice:
    """One group of a report's images.

    property : a key of :data:`PROPERTIES`; label : the group in words ("brightness 31\u201358", "source TSRD")
    low, high : the bin's bounds (numeric properties; None for a category); rows : np.ndarray (k,) report rows
    accuracy : float; gap : accuracy minus the report's overall accuracy (negative = worse)
    """

    property: str
    label: str
    low: float | None
    high: float | None
    rows: np.ndarray
    accuracy: float
    gap: float

    @property
    def n(self) -> int:
        return int(len(self.rows))


@dataclass(frozen=True)
class SliceResult:
    """All slices of a report, and the worst ones.

    overall : accuracy over all images; n : images; slices : every slice, property by property
    worst : slices of at least ``min_images`` images below the overall accuracy, lowest accuracy first
    unknown : property -> images whose value is not known (sign size of rows without an original size)
    """

    overall: float
    n: int
    slices: list
    worst: list
    unknown: dict
    min_images: int


def image_properties(images: np.ndarray) -> dict[str, np.ndarray]:
    """Brightness, contrast and sharpness of images (N, H, W, 3) uint8 RGB: three float arrays (N,)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3) RGB, got shape {images.shape}")
    n = len(images)
    out = {k: np.zeros(n) for k in ("brightness", "contrast", "sharpness")}
    for i, image in enumerate(images):
        luma = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float64)
        out["brightness"][i] = luma.mean()
        out["contrast"][i] = luma.std()
        out["sharpness"][i] = cv2.Laplacian(luma, cv2.CV_64F).var()
    return out


def source_of(row: dict, record: dict | None = None) -> str:
    """An index row's source in one word: GTSRB, TSRD, augmented, generated, uploaded, or :data:`OTHER_SOURCE`.

    ``record``: the workspace's added-image record of an added row (its provenance: an augmented variant has a
    ``variant`` in its recipe, or a ``parent_index``)."""
    if row.get("generated"):
        return "generated"
    if row.get("origin") == "added":
        recipe = (record or {}).get("recipe") or {}
        return "augmented" if recipe.get("variant") or "parent_index" in (record or {}) else "uploaded"
    text = str(row.get("source") or "")
    if "transformed" in text:
        return "augmented"
    for name in ("GTSRB", "TSRD"):
        if name in text.upper():
            return name
    return OTHER_SOURCE


def sign_size(row: dict) -> float:
    """sqrt(orig_w x orig_h) of an index row in pixels, NaN where the row does not record the original size."""
    try:
        w, h = float(row.get("orig_w") or 0), float(row.get("orig_h") or 0)
    except (TypeError, ValueError):
        return float("nan")
    return float(np.sqrt(w * h)) if w > 0 and h > 0 else float("nan")


def quantile_bins(values: np.ndarray, *, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin of each value (N,) int, -1 where NaN; edges (k + 1,)) of quantile bins over the known values.
    Ties can merge bins, so there may be fewer than ``bins``."""
    values = np.asarray(values, dtype=np.float64)
    known = ~np.isnan(values)
    if not known.any():
        return np.full(len(values), -1), np.zeros(0)
    edges = np.unique(np.quantile(values[known], np.linspace(0, 1, bins + 1)))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    which = np.full(len(values), -1)
    which[known] = np.clip(np.searchsorted(edges, values[known], side="right") - 1, 0, len(edges) - 2)
    return which, edges


def compute_slices(correct: np.ndarray, properties: dict[str, np.ndarray], *, bins: int = DEFAULT_BINS,
                   min_images: int = DEFAULT_MIN_IMAGES) -> SliceResult:
    """Slices of images by each property.

    Parameters
    ----------
    correct : np.ndarray (N,) bool, whether the model got each image right
    properties : name -> np.ndarray (N,): float for a numeric property (NaN = not known), str for a category
    bins : quantile bins per numeric property (2-10); min_images : smallest slice ranked among the worst
    """
    correct = np.asarray(correct, dtype=bool)
    if not 2 <= bins <= 10:
        raise ValueError(f"bins must lie in [2, 10], got {bins}")
    if min_images < 1:
        raise ValueError(f"min_images must be at least 1, got {min_images}")
    if not len(correct):
        raise ValueError("no images to slice: the report is empty")
    for name, values in properties.items():
        if len(values) != len(correct):
            raise ValueError(f"property {name!r} has {len(values)} values for {len(correct)} images")
    overall = float(correct.mean())
    slices, unknown = [], {}
    for name, values in properties.items():
        if name in NUMERIC:
            found, unknown[name] = _numeric_slices(name, np.asarray(values, dtype=np.float64), bins)
        else:
            found = [(f"{PROPERTIES.get(name, name)} {v}", None, None, np.flatnonzero(np.asarray(values) == v))
                     for v in sorted(set(values))]
        for label, low, high, rows in found:
            acc = float(correct[rows].mean())
            slices.append(Slice(name, label, low, high, rows, acc, acc - overall))
    worst = sorted((s for s in slices if s.n >= min_images and s.gap < 0), key=lambda s: (s.accuracy, -s.n))
    return SliceResult(overall, int(len(correct)), slices, worst, unknown, min_images)


def _numeric_slices(name: str, values: np.ndarray, bins: int) -> tuple[list, int]:
    which, edges = quantile_bins(values, bins=bins)
    label = PROPERTIES[name]
    out = []
    for k in range(len(edges) - 1):
        rows = np.flatnonzero(which == k)
        if len(rows):
            out.append((f"{label} {_number(edges[k])}\u2013{_number(edges[k + 1])}", float(edges[k]),
                        float(edges[k + 1]), rows))
    return out, int((which < 0).sum())


def _number(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.1f}"


def report_slices(report: reports.Report, *, bins: int = DEFAULT_BINS,
                  min_images: int = DEFAULT_MIN_IMAGES) -> SliceResult:
    """:func:`compute_slices` of a report's images. Raises ValueError for a stale report (its images may have
    changed) or one whose images are no longer in its dataset."""
    if report.stale:
        raise ValueError(report.stale)
    info = datasets.get_dataset(report.summary["dataset"])
    split = datasets.load_split(info, report.summary["split"])
    at = {f: i for i, f in enumerate(split.files)}
    files = report.predictions.files
    missing = [f for f in files if f not in at]
    if missing:
        raise ValueError(f"{len(missing)} of the report's images are no longer in {info.name}: evaluate again")
    props = image_properties(split.images[[at[f] for f in files]])
    rows = {r["file"]: r for r in datasets.read_index(info, report.summary["split"])}
    added = {r["file"]: r for r in workspaces.current_added(info)} if info.kind == "workspace" else {}
    props["sign_size"] = np.array([sign_size(rows.get(f, {})) for f in files])
    props["source"] = np.array([source_of(rows.get(f, {}), added.get(f)) for f in files])
    p = report.predictions
    return compute_slices(p.y_true == p.y_pred, props, bins=bins, min_images=min_images)
