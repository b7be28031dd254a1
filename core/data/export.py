"""Export a dataset (a workspace or a built one) as one zip that the folder importer reads back.

The zip holds one folder per class, ``<id>_<name>/`` (the name made file-system-safe), with the images as PNG
exactly as the dataset's splits hold them (:func:`core.data.datasets.load_split`: an added image at the base's
size, as training sees it), plus:

- ``labels.csv``: :data:`LABEL_COLUMNS`, one row per image: its file in the zip, split, class id and name, and
  its provenance in words (the source dataset, the upload, or the upload it is an augmented variant of);
- ``signnames.csv``: ``ClassId,SignName`` for every class, so an import keeps the class names;
- ``dataset.json``: the dataset's name, version, base and counts.

``python -m core datasets import --layout folder --path <unzipped folder> --name NEW`` gives the same images,
labels and splits back. Images in a workspace's Extra bucket (no class yet) are left out and counted.

Writing goes to a temp file in the target's folder, then ``os.replace``: a process killed mid-export leaves no
zip (whole or partial) at the target path. :func:`check_target` and :func:`atomic_target` are shared with the
model and report exports.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from core.base.text import plural
from core.base.progress import ProgressFn, StopFn, check, silent
from core.data import datasets, workspaces
from core.data.built import safe_file_stem
from core.data.images import encode_png

LABEL_COLUMNS = ("file", "split", "class_id", "class_name", "provenance", "original_file")
LABELS_FILE = "labels.csv"
NAMES_FILE = "signnames.csv"
INFO_FILE = "dataset.json"


@dataclass(frozen=True)
class DatasetExport:
    """What :func:`export_dataset` wrote: the zip, images per split, classes, and Extra images left out."""

    path: Path
    per_split: dict[str, int]
    classes: int
    left_out: int

    @property
    def images(self) -> int:
        return sum(self.per_split.values())


def class_folder(class_id: int, name: str) -> str:
    """The folder of a class in an export: ``14_Stop``, ``3_Speed_limit_60km_h_``."""
    return f"{int(class_id)}_{safe_file_stem(name) if name else 'class'}"


def provenance_text(row: dict) -> str:
    """An image's origin in words, from its index row or added-image record: "GTSRB train (gtsrb_train_32.npz)",
    "upload stop.jpg", "augmented variant 2 of upload stop.jpg (blur, noise)", "edit of upload stop.jpg"."""
    upload = row.get("upload")
    recipe = row.get("recipe") or {}
    if row.get("origin") == "detection":
        return _detection_text(row)
    if upload is None:
        source = row.get("source") or "unknown source"
        return f"added to the workspace from {source}" if "id" in row else source
    if "groups" in recipe:
        groups = ", ".join(recipe["groups"]) or "no groups"
        variant = f" {recipe['variant']}" if recipe.get("variant") else ""
        return f"augmented variant{variant} of upload {upload} ({groups})"
    if "edit" in recipe:
        edit = recipe["edit"]
        steps = [w for w, on in (("cropped", edit.get("crop")), (f"rotated {edit.get('rotate')}\u00b0",
                                 edit.get("rotate")), (f"flipped {edit.get('flip')}", edit.get("flip"))) if on]
        return f"edit of upload {upload}" + (f" ({', '.join(steps)})" if steps else "")
    return f"upload {upload}"


def _detection_text(row: dict) -> str:
    """A harvested crop's origin: "detected in dashcam.mp4, frame 12 at 6.0 s, by detector 314a9b5ae6fe,
    classified by benchmark as class 14" (or "as an unknown sign")."""
    where = row.get("source_file", "an image")
    if row.get("frame") is not None:
        where += f", frame {row['frame']}" + (f" at {row['time_s']:.1f} s" if row.get("time_s") is not None else "")
    verdict = row.get("predicted_class_id")
    return (f"detected in {where}, by {row.get('detector', 'a detector')} {row.get('detector_version', '')}".rstrip()
            + f", classified by {row.get('model', 'a model')} as "
            + ("an unknown sign" if verdict is None else f"class {verdict}"))


def check_target(out: str | os.PathLike, *, overwrite: bool = False, suffix: str | None = None) -> Path:
    """The export target ``out``, after checking it can be written: its folder exists and is writable, it is not
    a folder, and it does not exist yet unless ``overwrite``. Raises ValueError with the fix; changes nothing."""
    path = Path(out).expanduser()
    if suffix and path.suffix.lower() != suffix:
        raise ValueError(f"{path.name}: the export file name must end in {suffix}")
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name inside it, e.g. {path / ('export' + (suffix or ''))}")
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder; choose another place" if folder.exists() else
                         f"the folder {folder} does not exist; create it first or choose another place")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists already; choose another name, or overwrite it (--force)")
    try:  # the one sure test of writability (permissions, read-only mounts, root on /proc): make a file there
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as e:
        raise ValueError(f"files cannot be written in the folder {folder} ({e.strerror or e}); "
                         "choose another place") from None
    return path


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temp file beside ``path``; when the block ends without error, it replaces ``path`` (os.replace),
    else it is removed. A kill leaves only a hidden ``.<name>.*.tmp`` file, never a partial ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; an export is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def export_dataset(name: str, out: str | os.PathLike, *, overwrite: bool = False,
                   progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> DatasetExport:
    """Write dataset ``name`` (a workspace or a built dataset) to the zip ``out``; see the module docstring.

    Raises ValueError (an unknown dataset, an existing or unwritable target) before anything is written.
    """
    info = datasets.get_dataset(name)
    path = check_target(out, overwrite=overwrite, suffix=".zip")
    progress = progress or silent
    with atomic_target(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            rows, per_split = _write_images(zf, info, progress, should_stop)
            _write_tables(zf, info, rows, per_split)
        progress(1.0, f"wrote {plural(sum(per_split.values()), 'image')}")
    left_out = sum(1 for r in datasets.read_index(info) if r["split"] not in datasets.SPLITS)
    return DatasetExport(path, per_split, len({r["class_id"] for r in rows}), left_out)


def _write_images(zf: zipfile.ZipFile, info: datasets.DatasetInfo, progress: ProgressFn,
                  should_stop: StopFn | None) -> tuple[list[dict], dict[str, int]]:
    total = max(1, sum(info.split_size(s) for s in datasets.SPLITS))
    rows: list[dict] = []
    per_split: dict[str, int] = {}
    used: set[str] = set()
    added = {r["file"]: r for r in workspaces.current_added(info)} if info.kind == "workspace" else {}
    for split in datasets.SPLITS:
        arrays = datasets.load_split(info, split)
        index = {r["file"]: r for r in datasets.read_index(info, split)}
        index.update(added)  # an added image's full record: its upload and augmentation recipe
        for image, label, file in zip(arrays.images, arrays.labels, arrays.files):
            check(should_stop)
            cid = int(label)
            name = info.classes.get(cid, f"class {cid}")
            rel = _unique(f"{class_folder(cid, name)}/{split}_{safe_file_stem(Path(file).name)}", used)
            zf.writestr(rel, encode_png(image))
            rows.append({"file": rel, "split": split, "class_id": cid, "class_name": name,
                         "provenance": provenance_text(index.get(file, {})), "original_file": file})
            if len(rows) % 200 == 0:
                progress(len(rows) / total, f"{plural(len(rows), 'image')} of {total:,} written")
        per_split[split] = len(arrays)
    return rows, per_split


def _unique(stem: str, used: set[str]) -> str:
    rel, k = f"{stem}.png", 1
    while rel in used:
        k += 1
        rel = f"{stem}_{k}.png"
    used.add(rel)
    return rel


def _write_tables(zf: zipfile.ZipFile, info: datasets.DatasetInfo, rows: list[dict],
                  per_split: dict[str, int]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LABEL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    zf.writestr(LABELS_FILE, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    buf = io.StringIO()
    names = csv.writer(buf, lineterminator="\n")
    names.writerow(("ClassId", "SignName"))
    names.writerows(sorted(info.classes.items()))
    zf.writestr(NAMES_FILE, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    meta = {"name": info.name, "version": info.fingerprint, "kind": info.kind, "base": info.base,
            "splits": per_split, "classes": {str(k): v for k, v in sorted(info.classes.items())}}
    zf.writestr(INFO_FILE, json.dumps(meta, indent=1), compress_type=zipfile.ZIP_DEFLATED)
