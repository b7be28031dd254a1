"""Importers: turn a download (npz files, official GTSRB, Kaggle layout, plain class folders) into arrays.

Each importer returns an :class:`ImportedSplit` per split. A missing or malformed source raises
:class:`SourceError` naming the file and what is wrong.
"""
from __future__ import annotations

import csv
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.data.images import ImageError, load_image

IMAGE_SUFFIXES = (".png", ".ppm", ".jpg", ".jpeg", ".webp", ".bmp")
#: The splits a folder import knows (sub-folders, or the ``split`` column of ``labels.csv``).
SPLIT_NAMES = ("train", "val", "test")
#: The table of a labelled folder (written by :mod:`core.data.export`).
LABELS_CSV = "labels.csv"


#: Limits of a zip a folder import unpacks (a bomb or a traversal is refused before anything is written).
ZIP_MAX_MEMBERS = 500_000
ZIP_MAX_BYTES = 4 << 30
ZIP_MAX_RATIO = 200


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
    """A plain folder of class folders ``<root>/<class>/*.png``, or ``<root>/<split>/<class>/*.png``, where a class
    folder is named by its integer id, optionally followed by ``_`` and a name (``14`` or ``14_Stop``).

    A folder with a ``labels.csv`` (columns ``file``, ``split``, ``class_id``, optionally ``class_name``: what
    :mod:`core.data.export` writes) is read from that table instead: each image's split and class come from its
    row, and the class names from ``class_name``.
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root}: folder not found")
    if (root / LABELS_CSV).is_file():
        return import_labelled_folder(root)
    split_dirs = {s: root / s for s in SPLIT_NAMES if (root / s).is_dir()}
    if not split_dirs:
        split_dirs = {"train": root}
    splits = {}
    for split, d in split_dirs.items():
        files, labels = [], []
        for class_dir in sorted(p for p in d.iterdir() if p.is_dir()):
            cid = folder_class_id(class_dir)
            for f in sorted(class_dir.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
                    labels.append(cid)
        if not files:
            raise SourceError(f"{d}: no images found in class folders")
        splits[split] = _load_files(files, labels, source=f"folder {split}",
                                    names=[f"{f.parent.name}_{f.name}" for f in files])
    return ImportedSource(splits)


def folder_class_id(class_dir: Path) -> int:
    """The class id a class folder's name gives: ``14`` or ``14_Stop`` -> 14."""
    match = re.fullmatch(r"(\d+)(?:_.*)?", class_dir.name)
    if match is None:
        raise SourceError(f"{class_dir}: class folder names must start with the integer class id "
                          "(e.g. 14 or 14_Stop)")
    return int(match.group(1))


def import_labelled_folder(root: Path) -> ImportedSource:
    """A folder with ``labels.csv`` (see :func:`import_folder`): images in the table's order, per split."""
    root = Path(root)
    rows = _read_csv(root / LABELS_CSV, required=("file", "split", "class_id"), delimiter=",")
    if not rows:
        raise SourceError(f"{root / LABELS_CSV}: the table has no rows")
    by_split: dict[str, list[dict]] = {}
    names: dict[int, str] = {}
    for line, r in enumerate(rows, start=2):
        if r["split"] not in SPLIT_NAMES:
            raise SourceError(f"{root / LABELS_CSV}, line {line}: unknown split {r['split']!r}; "
                              f"valid splits: {', '.join(SPLIT_NAMES)}")
        try:
            cid = int(r["class_id"])
        except ValueError:
            raise SourceError(f"{root / LABELS_CSV}, line {line}: class_id {r['class_id']!r} is not an "
                              "integer") from None
        rel = Path(r["file"])
        if rel.is_absolute() or ".." in rel.parts:
            raise SourceError(f"{root / LABELS_CSV}, line {line}: file {r['file']!r} must be a path inside {root}")
        if r.get("class_name"):
            names.setdefault(cid, r["class_name"])
        by_split.setdefault(r["split"], []).append({**r, "class_id": cid})
    splits = {split: _load_files([root / r["file"] for r in found], [r["class_id"] for r in found],
                                 source=f"folder {split}", names=[r["file"].replace("/", "_") for r in found])
              for split, found in by_split.items()}
    return ImportedSource(splits, class_names=names)


def extract_zip(archive: Path, dest: Path) -> Path:
    """Unpack a dataset zip (e.g. one :mod:`core.data.export` wrote) into ``dest`` after checking every member: no
    absolute or ``..`` paths, no links, at most :data:`ZIP_MAX_MEMBERS` members and :data:`ZIP_MAX_BYTES` unpacked,
    no member compressed more than :data:`ZIP_MAX_RATIO` times. Returns the folder holding the data (the zip's one
    top folder, if it has exactly one and nothing else)."""
    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as e:
        raise SourceError(f"{archive}: not a readable zip ({e})") from None
    with zf:
        members = zf.infolist()
        if len(members) > ZIP_MAX_MEMBERS:
            raise SourceError(f"{archive}: {len(members):,} members, more than the {ZIP_MAX_MEMBERS:,} allowed")
        if sum(m.file_size for m in members) > ZIP_MAX_BYTES:
            raise SourceError(f"{archive}: unpacks to more than {ZIP_MAX_BYTES >> 30} GiB")
        for m in members:
            parts = Path(m.filename.replace("\\", "/")).parts
            if m.filename.startswith(("/", "\\")) or ".." in parts or ":" in m.filename:
                raise SourceError(f"{archive}: member {m.filename!r} points outside the folder; nothing unpacked")
            if (m.external_attr >> 16) & 0o170000 == 0o120000:
                raise SourceError(f"{archive}: member {m.filename!r} is a link; nothing unpacked")
            if m.compress_size and m.file_size / m.compress_size > ZIP_MAX_RATIO:
                raise SourceError(f"{archive}: member {m.filename!r} expands {m.file_size / m.compress_size:.0f} "
                                  "times (a zip bomb?); nothing unpacked")
        zf.extractall(dest)
    top = [p for p in Path(dest).iterdir()]
    return top[0] if len(top) == 1 and top[0].is_dir() else Path(dest)
