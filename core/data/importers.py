"""Importers: turn a download (npz files, official GTSRB, Kaggle layout, plain class folders) into arrays.

Each importer returns an :class:`ImportedSplit` per split. A missing or malformed source raises
:class:`SourceError` naming the file and what is wrong.
"""
from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.data.images import ImageError, load_image

IMAGE_SUFFIXES = (".png", ".ppm", ".jpg", ".jpeg", ".webp", ".bmp")


class SourceError(ValueError):
    """A source that cannot be imported; the message names the file and the problem."""


@dataclass
class ImportedSplit:
    """Images of one split with per-image provenance.

    ``images`` is a list of (H, W, 3) uint8 arrays (sizes may differ); ``labels`` (N,) int64 in the source's ids;
    ``names`` (N,) original file names (unique within the split); ``tracks`` (N,) physical-sign ids ('' if unknown);
    ``sizes`` (N, 2) original width and height.
    """

    images: list[np.ndarray]
    labels: np.ndarray
    names: list[str]
    tracks: list[str]
    sizes: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "ImportedSplit":
        idx = np.asarray(idx, dtype=np.int64)
        return ImportedSplit([self.images[i] for i in idx], self.labels[idx], [self.names[i] for i in idx],
                             [self.tracks[i] for i in idx], self.sizes[idx], self.source)


@dataclass
class ImportedSource:
    """What an importer found: splits by name and the class names by source id."""

    splits: dict[str, ImportedSplit]
    class_names: dict[int, str] = field(default_factory=dict)


def read_signnames(path: Path) -> dict[int, str]:
    """``ClassId,SignName`` csv -> {id: name}."""
    rows = _read_csv(path, required=("ClassId", "SignName"), delimiter=",")
    return {int(r["ClassId"]): r["SignName"] for r in rows}


def _read_csv(path: Path, *, required: tuple[str, ...], delimiter: str) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        cols = reader.fieldnames or []
        missing = [c for c in required if c not in cols]
        if missing:
            raise SourceError(f"{path}: missing column(s) {', '.join(missing)}; found {cols}")
        return list(reader)


def load_npz(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in required if k not in d.files]
            if missing:
                raise SourceError(f"{path}: missing key(s) {', '.join(missing)}; found {sorted(d.files)}")
            out = {k: d[k] for k in d.files}
    except SourceError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise SourceError(f"{path}: not a readable npz file ({e})") from None
    imgs = out["images"]
    if imgs.ndim != 4 or imgs.shape[-1] != 3 or imgs.dtype != np.uint8:
        raise SourceError(f"{path}: 'images' must be (N, H, W, 3) uint8, got {imgs.shape} {imgs.dtype}")
    if "labels" in out and len(out["labels"]) != len(imgs):
        raise SourceError(f"{path}: {len(imgs)} images but {len(out['labels'])} labels")
    return out


def import_gtsrb_npz(train_npz: Path, test_npz: Path) -> ImportedSource:
    """GTSRB npz files (keys images, labels, orig_size_wh, paths). Track ids come from the train paths."""
    splits = {}
    for split, path in (("train", train_npz), ("test", test_npz)):
        d = load_npz(path, ("images", "labels", "paths"))
        paths = [str(p) for p in d["paths"]]
        names = [p.replace("/", "_") for p in paths]
        tracks = [track_from_kaggle_path(p) for p in paths] if split == "train" else [""] * len(paths)
        sizes = d.get("orig_size_wh", np.zeros((len(paths), 2), np.int32))
        splits[split] = ImportedSplit(list(d["images"]), d["labels"].astype(np.int64), names, tracks,
                                      np.asarray(sizes, np.int32), source=f"GTSRB {split} ({Path(path).name})")
    return ImportedSource(splits)


def track_from_kaggle_path(path: str) -> str:
    """'Train/20/00020_00007_00029.png' -> '20_00007' (class and track: the frames of one physical sign)."""
    stem = Path(path).stem
    parts = stem.split("_")
    if len(parts) != 3:
        raise SourceError(f"{path}: expected a train file name like 00020_00007_00029.png (class_track_frame)")
    return f"{int(parts[0])}_{parts[1]}"


def import_tsrd_npz(train_npz: Path, test_npz: Path) -> ImportedSource:
    """TSRD npz files, deduplicated: first copies only, and test rows identical to a train image dropped."""
    splits = {}
    for split, path in (("train", train_npz), ("test", test_npz)):
        req = ("images", "labels", "filenames", "first_copy") + (("pixel_identical_in_train",) if split == "test" else ())
        d = load_npz(path, req)
        keep = d["first_copy"].astype(bool)
        if split == "test":
            keep &= ~d["pixel_identical_in_train"].astype(bool)
        idx = np.flatnonzero(keep)
        sizes = d.get("orig_size_wh", np.zeros((len(d["labels"]), 2), np.int32))
        splits[split] = ImportedSplit([d["images"][i] for i in idx], d["labels"][idx].astype(np.int64),
                                      [str(d["filenames"][i]) for i in idx], [""] * len(idx),
                                      np.asarray(sizes, np.int32)[idx], source=f"TSRD {split} ({Path(path).name})")
    return ImportedSource(splits)


def _load_files(files: list[Path], labels: list[int], *, source: str, tracks: list[str] | None = None,
                names: list[str] | None = None) -> ImportedSplit:
    images, sizes = [], []
    for f in files:
        try:
            im = load_image(f)
        except ImageError as e:
            raise SourceError(str(e)) from None
        images.append(im)
        sizes.append((im.shape[1], im.shape[0]))
    return ImportedSplit(images, np.asarray(labels, np.int64), names or [f.name for f in files],
                         tracks or [""] * len(files), np.asarray(sizes, np.int32).reshape(-1, 2), source=source)


def import_gtsrb_official(root: Path) -> ImportedSource:
    """Official GTSRB layout: ``Final_Training/Images/000NN/*.ppm`` + ``GT-000NN.csv`` and
    ``Final_Test/Images/*.ppm`` + ``GT-final_test.csv`` (semicolon separated)."""
    root = Path(root)
    train_dir = root / "Final_Training" / "Images"
    if not train_dir.is_dir():
        raise SourceError(f"{train_dir}: folder not found (expected the official GTSRB layout)")
    files, labels, tracks, names = [], [], [], []
    for class_dir in sorted(p for p in train_dir.iterdir() if p.is_dir()):
        gt = class_dir / f"GT-{class_dir.name}.csv"
        for r in _read_csv(gt, required=("Filename", "ClassId"), delimiter=";"):
            files.append(class_dir / r["Filename"])
            labels.append(int(r["ClassId"]))
            tracks.append(f"{int(r['ClassId'])}_{Path(r['Filename']).stem.split('_')[0]}")
            names.append(f"{class_dir.name}_{r['Filename']}")
    if not files:
        raise SourceError(f"{train_dir}: no class folders with GT-*.csv found")
    splits = {"train": _load_files(files, labels, source="GTSRB official train", tracks=tracks, names=names)}
    test_dir = root / "Final_Test" / "Images"
    if test_dir.is_dir():
        gt = next((p for p in (test_dir / "GT-final_test.csv", root / "GT-final_test.csv") if p.is_file()),
                  test_dir / "GT-final_test.csv")
        rows = _read_csv(gt, required=("Filename", "ClassId"), delimiter=";")
        splits["test"] = _load_files([test_dir / r["Filename"] for r in rows], [int(r["ClassId"]) for r in rows],
                                     source="GTSRB official test")
    return ImportedSource(splits)


def import_kaggle(root: Path) -> ImportedSource:
    """Kaggle layout: ``Train.csv`` and ``Test.csv`` (columns ClassId, Path) next to ``Train/`` and ``Test/``."""
    root = Path(root)
    splits = {}
    for split, csv_name in (("train", "Train.csv"), ("test", "Test.csv")):
        path = root / csv_name
        if split == "test" and not path.exists():
            continue
        rows = _read_csv(path, required=("ClassId", "Path"), delimiter=",")
        paths = [r["Path"] for r in rows]
        tracks = [track_from_kaggle_path(p) for p in paths] if split == "train" else None
        splits[split] = _load_files([root / p for p in paths], [int(r["ClassId"]) for r in rows],
                                    source=f"Kaggle {split}", tracks=tracks,
                                    names=[p.replace("/", "_") for p in paths])
    return ImportedSource(splits)


def import_folder(root: Path) -> ImportedSource:
    """A plain folder of class folders ``<root>/<class_id>/*.png``, or ``<root>/<split>/<class_id>/*.png``.

    Class folder names must be integers (class ids).
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root}: folder not found")
    split_dirs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    if not split_dirs:
        split_dirs = {"train": root}
    splits = {}
    for split, d in split_dirs.items():
        files, labels = [], []
        for class_dir in sorted(p for p in d.iterdir() if p.is_dir()):
            if not class_dir.name.isdigit():
                raise SourceError(f"{class_dir}: class folder names must be integer class ids")
            for f in sorted(class_dir.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
                    labels.append(int(class_dir.name))
        if not files:
            raise SourceError(f"{d}: no images found in class folders")
        splits[split] = _load_files(files, labels, source=f"folder {split}",
                                    names=[f"{f.parent.name}_{f.name}" for f in files])
    return ImportedSource(splits)
