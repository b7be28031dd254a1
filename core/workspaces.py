"""Workspace datasets: the rule for data that users change.

Built datasets (GTSRB, GTSRB_48, Difficult, Testing, the embedded sample) are immutable. A user edits a
*workspace*: a dataset derived from one built dataset, copy-on-write. The base's files are referenced, never
copied or changed; the workspace records its own changes as an **overlay**:

- ``added``: images the user added (content-addressed PNGs under ``<workspace>/added/``, never overwritten),
- ``changed``: base images moved to another split or deleted (by their base file path),
- ``classes``: the workspace's class map (the base's classes, renamed ones, new ones; empty ones can go).

Every state has a **version**: a content fingerprint of the base's version plus the overlay. Training and
evaluation record it (checkpoint ``dataset_fingerprint``, report ``dataset_version``), so an old model or report
still names the exact images it saw, and a report on an older state is recognised as stale.

On disk, ``<data root>/workspaces/<name>/`` (every file but the header is immutable once written):

- ``workspace.json``: the header (name, base, base version, classes, counts, version, and the names of the
  files below). Replacing it atomically is the single commit point of a change;
- ``segments/seg-<hash>.json``: the records of one batch of added images (provenance included), one file per
  batch, so adding 1,000 images to a workspace of 50,000 writes 1,000 records, not 51,000;
- ``state-<hash>.json``: the small mutable part, base images moved or deleted and added images moved or
  removed, rewritten per change (the previous one is kept, older ones removed).

New files are written before the header that names them, so a crash mid-change leaves the previous version.

Reading a split reuses the base's decoded cache (rows the overlay does not touch come straight from it) and
caches the assembled arrays per version, so it is as fast as reading the base.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from core import config
from core import datasets as ds
from core.images import encode_png, load_image, resize_to_input
from core.files import atomic_write_bytes, atomic_write_json, file_lock

HEADER = "workspace.json"
ADDED_DIR = "added"
SEGMENTS = "segments"
FORMAT = 1
#: The published system's "Main dataset" (its hardest set plus everything added in the UI) is a workspace.
DEFAULT_NAME = "Main"


def workspace_dir(name: str) -> Path:
    return config.workspaces_dir() / name


def is_workspace(name: str) -> bool:
    return (workspace_dir(name) / HEADER).is_file()


def list_workspaces() -> list[ds.DatasetInfo]:
    root = config.workspaces_dir()
    out = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if (p / HEADER).is_file() and not p.name.startswith("."):
            with contextlib.suppress(ValueError):
                out.append(read_info(p))
    return out


def read_info(path: Path) -> ds.DatasetInfo:
    """The dataset description of a workspace folder (reads only the small header)."""
    head = _read_header(Path(path))
    base = _base_info(head["base"])
    version = head["version"]
    if base.fingerprint != head["base_version"]:  # the base was rebuilt with other images: another state
        version = hashlib.sha256(f"{version}|{base.fingerprint}".encode()).hexdigest()[:16]
    return ds.DatasetInfo(
        name=head["name"], path=Path(path), classes={int(k): v for k, v in head["classes"].items()},
        counts={s: {int(k): v for k, v in c.items() if v} for s, c in head["counts"].items()},
        source=f"workspace of {head['base']}", recipe=f"{head['base']} + user changes", fingerprint=version,
        embedded=False, kind="workspace", base=head["base"], base_path=base.path)


def derive(base: str, name: str) -> ds.DatasetInfo:
    """Create workspace ``name`` from built dataset ``base`` (nothing copied). Raises ValueError, writes nothing."""
    ds.check_name(name)
    existing = {d.name for d in ds.list_datasets()}
    if name in existing or workspace_dir(name).exists():
        raise ValueError(f"a dataset named {name!r} exists already; choose another name")
    info = ds.get_dataset(base)
    if info.kind == "workspace":
        raise ValueError(f"{base!r} is a workspace; derive from a built dataset: "
                         f"{', '.join(d.name for d in ds.list_datasets() if d.kind != 'workspace')}")
    tmp = config.workspaces_dir() / f".new-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        head = {"format": FORMAT, "name": name, "base": base, "base_version": info.fingerprint,
                "created": time.time(), "classes": {str(k): v for k, v in info.classes.items()}, "seq": 0,
                "segments": [], "counts": {s: {str(k): v for k, v in info.counts.get(s, {}).items()}
                                           for s in ds.SPLITS}}
        Change(tmp, head, {"base": {}, "added": {}}).commit()
        tmp.rename(workspace_dir(name))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_info(workspace_dir(name))


def delete(name: str) -> None:
    """Delete workspace ``name`` with everything added to it. Built datasets cannot be deleted."""
    if not is_workspace(name):
        info = ds.get_dataset(name)  # raises for an unknown name
        raise ValueError(f"{info.name!r} is a built dataset, and built datasets never change; only workspaces "
                         f"can be deleted: {', '.join(w.name for w in list_workspaces()) or 'none yet'}")
    trash = config.workspaces_dir() / f".deleted-{name}-{time.time_ns()}"
    workspace_dir(name).rename(trash)  # one atomic step: the workspace is gone, then its files
    shutil.rmtree(trash, ignore_errors=True)
    _drop_caches(name)


# -- reading -------------------------------------------------------------------------------------------------------

def read_rows(info: ds.DatasetInfo, split: str | None = None) -> list[dict]:
    """Index rows of the workspace's current version: base rows (minus deleted, with moved splits), then added.

    Each row has the columns of ``index.csv`` plus ``origin``: ``"base:<split>"`` or ``"added"`` (these also
    carry their ``id``).
    """
    head = _read_header(info.path)
    state = _read_json(info.path / head["state"])
    base = _base_info(head["base"])
    rows = []
    for r in ds.read_index(base):
        row = {**r, "origin": f"base:{r['split']}", **state["base"].get(r["file"], {})}
        if not row.pop("deleted", False):
            rows.append(row)
    for rec in added_records(info.path, head):
        ch = state["added"].get(rec["id"], {})
        if not ch.get("deleted"):
            rows.append({"split": ch.get("split", rec["split"]), "class_id": rec["class_id"], "file": rec["file"],
                         "source": rec.get("source", ""), "track": rec.get("track", ""),
                         "orig_w": rec.get("orig_w", 0), "orig_h": rec.get("orig_h", 0), "origin": "added",
                         "id": rec["id"]})
    return [r for r in rows if split is None or r["split"] == split]


def added_records(path: Path, head: dict | None = None) -> list[dict]:
    """Every record of an added image (as added: provenance included; later moves are in the state file)."""
    head = head or _read_header(path)
    return [rec for seg in head["segments"] for rec in _read_json(path / SEGMENTS / seg)]


def load_split(info: ds.DatasetInfo, split: str) -> ds.SplitArrays:
    """A split of the workspace as arrays; images share the base's size (added ones are resized to it).

    An unchanged workspace hands out its base's arrays; a changed one reads its own cache for this version
    (keyed by the version, sized by the header's counts: no index is read), assembling it on the first read.
    """
    head = _read_header(info.path)
    base = _base_info(head["base"])
    if not head["segments"] and _read_json(info.path / head["state"]) == {"base": {}, "added": {}}:
        return ds.load_split(base, split)  # nothing changed: the base's arrays as they are
    cache = _cache_root(info.name) / info.fingerprint / f"{split}.npz"
    arrays = ds.read_cached_split(cache, info.split_size(split))
    if arrays is None:
        arrays = _assemble(info, base, read_rows(info, split))
        _drop_caches(info.name, keep=info.fingerprint)
        ds.write_cached_split(cache, arrays)
    return arrays


def _assemble(info: ds.DatasetInfo, base: ds.DatasetInfo, rows: list[dict]) -> ds.SplitArrays:
    base_arrays = {s: ds.load_split(base, s) for s in ds.SPLITS
                   if any(r["origin"] == f"base:{s}" for r in rows)}
    shape = next(iter(base_arrays.values())).images.shape[1:] if base_arrays else \
        ds.load_split(base, "train").images.shape[1:]
    images = np.empty((len(rows), *shape), np.uint8)
    for s, arr in base_arrays.items():
        where = {f: i for i, f in enumerate(arr.files)}
        pos = [k for k, r in enumerate(rows) if r["origin"] == f"base:{s}"]
        images[pos] = arr.images[[where[rows[k]["file"]] for k in pos]]
    for k, r in enumerate(rows):
        if r["origin"] == "added":
            im = load_image(info.path / r["file"])
            images[k] = im if im.shape == shape else resize_to_input(im, shape[0])  # bases are square
    labels = np.asarray([r["class_id"] for r in rows], np.int64)
    return ds.SplitArrays(images, labels, [r["file"] for r in rows])


# -- changing ------------------------------------------------------------------------------------------------------

class Change:
    """One open change of a workspace: edit :attr:`classes`, add records, move or remove rows; then
    :meth:`commit` writes the new version (counts kept up to date as it goes)."""

    def __init__(self, path: Path, head: dict, state: dict):
        self.path, self.head, self.state = path, head, state
        self.new_records: list[dict] = []
        self._added_splits: dict[str, str] | None = None

    @property
    def classes(self) -> dict[str, str]:
        return self.head["classes"]

    def _count(self, split: str, class_id: int, delta: int) -> None:
        c = self.head["counts"].setdefault(split, {})
        c[str(class_id)] = c.get(str(class_id), 0) + delta

    def add_records(self, records: list[dict]) -> list[str]:
        """Add image records (each with at least split, class_id, file, sha256); returns their new ids."""
        ids = []
        for rec in records:
            self.head["seq"] += 1
            rid = f"a{self.head['seq']}"
            self.new_records.append({**rec, "id": rid, "seq": self.head["seq"]})
            self._count(rec["split"], rec["class_id"], +1)
            ids.append(rid)
        return ids

    def move(self, row: dict, split: str) -> None:
        """Move one current row (from :func:`read_rows`) to ``split``."""
        self._set(row, {"split": split})
        self._count(row["split"], row["class_id"], -1)
        self._count(split, row["class_id"], +1)

    def remove(self, row: dict) -> None:
        """Take one current row out of the workspace (the file itself stays: a base's, or content-addressed)."""
        self._set(row, {"deleted": True})
        self._count(row["split"], row["class_id"], -1)

    def _set(self, row: dict, change: dict) -> None:
        table, key = ("added", row["id"]) if row["origin"] == "added" else ("base", row["file"])
        original = row["origin"].split(":", 1)[1] if row["origin"] != "added" else self._added_split(row["id"])
        if change.get("split") == original:
            self.state[table].pop(key, None)  # back where it started: no change left to record
        else:
            self.state[table][key] = change

    def _added_split(self, rid: str) -> str | None:
        """The split an added image was added to (read once per change)."""
        if self._added_splits is None:
            self._added_splits = {r["id"]: r["split"] for r in added_records(self.path, self.head)}
        self._added_splits.update((r["id"], r["split"]) for r in self.new_records)
        return self._added_splits.get(rid)

    def commit(self) -> None:
        """Write the new files, then the header naming them (the commit), then drop files two versions old."""
        if self.new_records:
            data = json.dumps(self.new_records, separators=(",", ":")).encode()
            seg = f"seg-{hashlib.sha256(data).hexdigest()[:16]}.json"
            atomic_write_bytes(self.path / SEGMENTS / seg, data)
            self.head["segments"] = self.head["segments"] + [seg]
        state = json.dumps(self.state, sort_keys=True, separators=(",", ":")).encode()
        previous = self.head.get("state")
        self.head["state"] = f"state-{hashlib.sha256(state).hexdigest()[:16]}.json"
        if not (self.path / self.head["state"]).is_file():
            atomic_write_bytes(self.path / self.head["state"], state)
        self.head["version"] = hashlib.sha256(json.dumps(
            [self.head[k] for k in ("base", "base_version", "classes", "segments", "state")],
            sort_keys=True).encode()).hexdigest()[:16]
        atomic_write_json(self.path / HEADER, self.head)
        for old in self.path.glob("state-*.json"):
            if old.name not in (self.head["state"], previous):
                old.unlink(missing_ok=True)


@contextlib.contextmanager
def change(name: str) -> Iterator[Change]:
    """Change workspace ``name`` as one step: yields a :class:`Change`; commits a new version at the end, or
    nothing at all if the block raises. Holds the workspace's lock (threads and processes)."""
    if not is_workspace(name):
        ds.get_dataset(name)
        raise ValueError(f"{name!r} is a built dataset and never changes; derive a workspace from it first "
                         f"(python -m core datasets derive --from {name} --name {DEFAULT_NAME})")
    path = workspace_dir(name)
    with file_lock(path / ".lock"):
        head = _read_header(path)
        ch = Change(path, head, _read_json(path / head["state"]))
        yield ch
        ch.commit()


def add_class(name: str, class_name: str) -> int:
    """Add a class (next free id) to workspace ``name``; returns its id."""
    class_name = _check_class_name(class_name)
    with change(name) as ch:
        if class_name.casefold() in {v.casefold() for v in ch.classes.values()}:
            raise ValueError(f"workspace {name!r} has a class named {class_name!r} already")
        cid = max(map(int, ch.classes), default=-1) + 1
        ch.classes[str(cid)] = class_name
    return cid


def add_images(name: str, images: list[np.ndarray], *, split: str, class_id: int, sources: list[str],
               records: list[dict] | None = None) -> list[str]:
    """Add RGB uint8 images to one split and class; ``records`` (one dict each) are kept with them (provenance).

    Files are written first (content-addressed), then the overlay: a crash leaves the previous version.
    Returns the new images' ids.
    """
    if split not in ds.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(ds.SPLITS)}")
    if len(sources) != len(images) or (records is not None and len(records) != len(images)):
        raise ValueError(f"{len(images)} images need as many sources and records")
    path = workspace_dir(name)
    files = [_write_image(path, im) for im in images]
    os.sync()  # the images are on disk before the overlay that names them (one sync, not one per file)
    with change(name) as ch:
        if str(class_id) not in ch.classes:
            raise ValueError(f"workspace {name!r} has no class {class_id}; add it first")
        now = time.time()
        return ch.add_records([{**(records[k] if records else {}), "split": split, "class_id": int(class_id),
                                "file": rel, "sha256": sha, "source": sources[k], "orig_w": int(im.shape[1]),
                                "orig_h": int(im.shape[0]), "added": now}
                               for k, (im, (rel, sha)) in enumerate(zip(images, files))])


def move_images(name: str, files: list[str], *, split: str) -> int:
    """Move images (by their ``file`` in the index) to ``split``; returns how many moved."""
    if split not in ds.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(ds.SPLITS)}")
    return _edit_images(name, files, lambda ch, row: ch.move(row, split))


def delete_images(name: str, files: list[str]) -> int:
    """Remove images (by their ``file`` in the index) from the workspace; the base's files stay untouched."""
    return _edit_images(name, files, lambda ch, row: ch.remove(row))


def _edit_images(name: str, files: list[str], edit: Callable[[Change, dict], None]) -> int:
    with change(name) as ch:
        current = {r["file"]: r for r in read_rows(read_info(ch.path))}
        unknown = [f for f in files if f not in current]
        if unknown:
            raise ValueError(f"{len(unknown)} file(s) are not in workspace {name!r}, e.g. {unknown[0]!r}")
        for f in dict.fromkeys(files):
            edit(ch, current[f])
    return len(files)


# -- internals -----------------------------------------------------------------------------------------------------

def _check_class_name(class_name: str) -> str:
    text = " ".join(str(class_name or "").split())
    if not text or len(text) > 80 or any(ord(c) < 32 for c in text):
        raise ValueError(f"class name {class_name!r}: use 1-80 printable characters")
    return text


def _write_image(path: Path, image: np.ndarray) -> tuple[str, str]:
    """Write one image content-addressed (never overwritten); the caller syncs before committing. The temp
    file + rename means a file under its final name is always complete."""
    data = encode_png(np.ascontiguousarray(image))
    sha = hashlib.sha256(data).hexdigest()
    rel = f"{ADDED_DIR}/{sha[:2]}/{sha}.png"
    target = path / rel
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return rel, sha


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: workspace file cannot be read ({e})") from None


def _read_header(path: Path) -> dict:
    try:
        head = json.loads((path / HEADER).read_text(encoding="utf-8"))
        if head.get("format") != FORMAT:
            raise ValueError(f"format {head.get('format')!r}, expected {FORMAT}")
        return head
    except (OSError, ValueError) as e:
        raise ValueError(f"{path / HEADER}: not a valid workspace ({e})") from None


def _base_info(base: str) -> ds.DatasetInfo:
    info = ds.get_built(base)
    if info is None:
        raise ValueError(f"the base dataset {base!r} of this workspace is missing; build it again "
                         "(python -m core datasets build)")
    return info


def _cache_root(name: str) -> Path:
    return config.cache_dir() / "workspaces" / name


def _drop_caches(name: str, keep: str | None = None) -> None:
    root = _cache_root(name)
    for p in root.iterdir() if root.is_dir() else []:
        if p.name != keep:
            shutil.rmtree(p, ignore_errors=True)
