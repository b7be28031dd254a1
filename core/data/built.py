"""Built datasets on disk: ``<root>/datasets/<name>/<split>/<class_id>/*.png`` plus ``meta.json`` and ``index.csv``.

Built datasets (GTSRB, GTSRB_48, Difficult, Testing, imported ones, the embedded sample) are immutable: written
once into a temp folder and renamed into place, never changed afterwards. Their version
(``DatasetInfo.fingerprint``) is the content hash. Reading a split goes through a cached array file keyed by that
version, so a 39k-image split is decoded once, not on every use. Callers reach datasets by name through the
catalog (:mod:`core.data.datasets`); this module is the built kind's source behind it.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.base import config, demo
from core.data.images import encode_png, load_image, resize_to_input
from core.base.files import atomic_write_bytes

SPLITS = ("train", "val", "test")
INDEX_COLUMNS = ("split", "class_id", "file", "source", "track", "orig_w", "orig_h")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    path: Path
    classes: dict[int, str]
    counts: dict[str, dict[int, int]]  # split -> class id -> images
    source: str
    recipe: str
    fingerprint: str   # the version of this state of the dataset
    embedded: bool
    kind: str = "built"  # "built" (immutable) or "workspace"
    base: str | None = None  # a workspace's base dataset
    base_path: Path | None = None

    def image_path(self, file: str) -> Path:
        """Absolute path of an index row's ``file`` (a workspace's untouched images live in its base)."""
        if self.kind == "workspace" and not file.startswith("added/"):
            return self.base_path / file
        return self.path / file

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split_size(self, split: str) -> int:
        return sum(self.counts.get(split, {}).values())

    def summary(self) -> dict:
        return {"name": self.name, "num_classes": self.num_classes, "kind": self.kind, "base": self.base,
                "version": self.fingerprint, "splits": {s: self.split_size(s) for s in SPLITS}}


@dataclass
class SplitArrays:
    """One split in memory: images (N, S, S, 3) uint8, labels (N,), relative files (N,)."""

    images: np.ndarray
    labels: np.ndarray
    files: list[str]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class SplitToWrite:
    images: list[np.ndarray]
    labels: np.ndarray
    names: list[str]
    sources: list[str]
    tracks: list[str]
    sizes: np.ndarray


def safe_file_stem(name: str) -> str:
    """A file-system-safe stem from an arbitrary original name."""
    stem = Path(name).stem if "." in name else name
    out = "".join(c if (c.isalnum() or c in "-_") else "_" for c in stem)
    return out[:120] or "image"


def write_dataset(name: str, splits: dict[str, SplitToWrite], *, classes: dict[int, str], source: str,
                  recipe: str, root: Path | None = None) -> Path:
    """Write a dataset atomically (temp folder, then rename). Returns its folder.

    Byte-identical output for identical input: deterministic PNG encoding, sorted metadata, no timestamps.
    Refused in demo mode: built datasets are shared by every session.
    """
    check_name(name)
    demo.refuse_shared_write(f"building dataset {name!r}")
    root = Path(root) if root else config.datasets_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".build-{name}-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes the folder private; a dataset is an ordinary folder
    try:
        digest = hashlib.sha256()
        rows = []
        counts: dict[str, dict[int, int]] = {}
        for split in SPLITS:
            if split not in splits:
                continue
            s = splits[split]
            unknown = sorted(set(int(c) for c in s.labels) - set(classes))
            if unknown:
                raise ValueError(f"{name}/{split}: labels {unknown} are not among the dataset's classes")
            used: set[str] = set()
            for i in range(len(s.labels)):
                cid = int(s.labels[i])
                stem = safe_file_stem(s.names[i])
                base, k = stem, 1
                while f"{cid}/{stem}" in used:
                    k += 1
                    stem = f"{base}_{k}"
                used.add(f"{cid}/{stem}")
                rel = f"{split}/{cid}/{stem}.png"
                data = encode_png(s.images[i])
                (tmp / split / str(cid)).mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_bytes(data)
                digest.update(rel.encode())
                digest.update(hashlib.sha256(data).digest())
                rows.append((split, cid, rel, s.sources[i], s.tracks[i], int(s.sizes[i][0]), int(s.sizes[i][1])))
                counts.setdefault(split, {}).setdefault(cid, 0)
                counts[split][cid] += 1
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(INDEX_COLUMNS)
        w.writerows(rows)
        (tmp / "index.csv").write_text(buf.getvalue(), encoding="utf-8")
        meta = {"name": name, "classes": {str(k): v for k, v in sorted(classes.items())},
                "counts": {s: {str(k): v for k, v in sorted(c.items())} for s, c in counts.items()},
                "source": source, "recipe": recipe, "fingerprint": digest.hexdigest()[:16], "format": 1}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        final = root / name
        if final.exists():
            old = root / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_name(name: str) -> str:
    """A dataset name is also a folder name: 1-64 ASCII letters, digits, '-' or '_', not starting with '-'."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}", name or ""):
        raise ValueError(f"dataset name {name!r} must be letters, digits, '-' and '_' only (1-64 characters, "
                         "no spaces, dots or slashes, not starting with '-')")
    return name


def dataset_dirs() -> list[tuple[Path, bool]]:
    """(folder, embedded) for every dataset: built ones under the data root, then the embedded sample."""
    out = []
    for base, embedded in ((config.datasets_dir(), False), (config.SAMPLE_DIR / "datasets", True)):
        if base.is_dir():
            out += [(p, embedded) for p in sorted(base.iterdir()) if (p / "meta.json").is_file()
                    and not p.name.startswith(".")]
    return out


def read_info(path: Path, *, embedded: bool = False) -> DatasetInfo:
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        return DatasetInfo(name=meta["name"], path=path, classes={int(k): v for k, v in meta["classes"].items()},
                           counts={s: {int(k): v for k, v in c.items()} for s, c in meta["counts"].items()},
                           source=meta.get("source", ""), recipe=meta.get("recipe", ""),
                           fingerprint=meta.get("fingerprint", ""), embedded=embedded)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path / 'meta.json'}: not a valid dataset description ({e})") from None


def list_built() -> list[DatasetInfo]:
    """Built datasets; a built dataset hides an embedded one of the same name."""
    seen, out = set(), []
    for path, embedded in dataset_dirs():
        try:
            info = read_info(path, embedded=embedded)
        except ValueError:
            continue
        if info.name not in seen:
            seen.add(info.name)
            out.append(info)
    return out


def list_infos(known: list[DatasetInfo]) -> list[DatasetInfo]:
    """The built datasets, as a source of the catalog (:mod:`core.data.datasets`); they need nothing ``known``."""
    return list_built()


def get_built(name: str) -> DatasetInfo | None:
    return next((d for d in list_built() if d.name == name), None)


def _cache_dir(info: DatasetInfo) -> Path:
    # Embedded datasets are read-only: their caches live under the data root.
    return config.cache_dir() / f"{info.name}-{info.fingerprint}"


def read_cached_split(path: Path, n: int) -> SplitArrays | None:
    """A split cached by :func:`write_cached_split`, or None if missing, unreadable or not ``n`` images long."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as d:
            arrays = SplitArrays(d["images"], d["labels"], [str(f) for f in d["files"]])
    except (OSError, ValueError, KeyError):
        return None
    return arrays if len(arrays) == n else None


def write_cached_split(path: Path, arrays: SplitArrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, images=arrays.images, labels=arrays.labels, files=np.asarray(arrays.files, dtype=str))
    atomic_write_bytes(path, buf.getvalue())


def read_rows(info: DatasetInfo, split: str | None = None) -> list[dict]:
    """Rows of a built dataset's ``index.csv`` (optionally one split), in file order."""
    with open(info.path / "index.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["class_id"] = int(r["class_id"])
    return [r for r in rows if split is None or r["split"] == split]


def load_split(info: DatasetInfo, split: str) -> SplitArrays:
    """All images of a built dataset's split as one array, decoded once and cached under the data root.

    Images that do not share one size are resized to the network input size in the cache.
    """
    rows = read_rows(info, split)
    cache = _cache_dir(info) / f"{split}.npz"
    arrays = read_cached_split(cache, len(rows))
    if arrays is None:
        arrays = _decode_split(info, rows)
        write_cached_split(cache, arrays)
    return arrays


def _decode_split(info: DatasetInfo, rows: list[dict]) -> SplitArrays:
    images = [load_image(info.path / r["file"]) for r in rows]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        images = [resize_to_input(im) for im in images]
    size = images[0].shape if images else (config.INPUT_SIZE, config.INPUT_SIZE, 3)
    arr = np.stack(images) if images else np.zeros((0, *size), np.uint8)
    labels = np.asarray([r["class_id"] for r in rows], dtype=np.int64)
    return SplitArrays(arr, labels, [r["file"] for r in rows])


def split_by_track(labels: np.ndarray, tracks: list[str], *, val_fraction: float = 0.1,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with whole tracks kept together, ``val_fraction`` of each class's tracks in val.

    Images with an empty track id are treated as their own track. Every class with two or more tracks gets at
    least one val track; a class with a single track stays in train.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    track_ids = np.asarray([t if t else f"__single_{i}" for i, t in enumerate(tracks)])
    rng = np.random.default_rng(seed)
    val_mask = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        uniq = np.unique(track_ids[idx])
        if len(uniq) < 2:
            continue
        n_val = max(1, int(round(val_fraction * len(uniq))))
        chosen = rng.choice(uniq, size=n_val, replace=False)
        val_mask[idx[np.isin(track_ids[idx], chosen)]] = True
    return np.flatnonzero(~val_mask), np.flatnonzero(val_mask)


def pictogram_path(class_id: int, class_name: str) -> Path | None:
    """The reference pictogram of a class (GTSRB ``Meta/<id>.png``) if the class is that GTSRB class, else None."""
    for base in (config.data_root() / "pictograms", config.SAMPLE_DIR / "pictograms"):
        names_file = base / "names.json"
        if not names_file.is_file():
            continue
        names = json.loads(names_file.read_text(encoding="utf-8"))
        p = base / f"{class_id}.png"
        if names.get(str(class_id)) == class_name and p.is_file():
            return p
    return None
