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

On disk, ``<data root>/workspaces/<name>/``:

- ``workspace.json`` (small: name, base, base version, classes, counts, version, the current overlay file) is
  the single commit point, replaced atomically;
- ``overlay-<version>.json`` (big: the added and changed records) is written *before* the header that names it
  and never rewritten, so a crash mid-change leaves the previous version intact; the previous overlay is kept
  (one step back), older ones are removed.

Reading a split reuses the base's decoded cache (rows the overlay does not touch come straight from it) and
caches the assembled arrays per version, so it is as fast as reading the base.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from core import config
from core import datasets as ds
from core.images import encode_png, load_image, resize_to_input
from core.store import atomic_write_bytes, atomic_write_json, file_lock

HEADER = "workspace.json"
ADDED_DIR = "added"
FORMAT = 1
#: Where a user starts: the published system's "Main dataset" is a workspace of its hardest set.
DEFAULT_NAME = "Main"
DEFAULT_BASE = "Testing"


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
        counts={s: {int(k): v for k, v in c.items()} for s, c in head["counts"].items()},
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
        doc = {"added": {}, "changed": {}, "seq": 0}
        _commit(tmp, {"format": FORMAT, "name": name, "base": base, "base_version": info.fingerprint,
                      "created": time.time(), "classes": {str(k): v for k, v in info.classes.items()}}, doc, info)
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

    Each row has the columns of ``index.csv`` plus ``origin``: ``"base:<split>"`` or ``"added"``.
    """
    head = _read_header(info.path)
    doc = _read_overlay(info.path, head)
    base = _base_info(head["base"])
    changed = doc["changed"]
    rows = []
    for r in ds.read_index(base):
        ch = changed.get(r["file"])
        if ch is not None and ch.get("deleted"):
            continue
        row = {**r, "origin": f"base:{r['split']}"}
        if ch is not None:
            row["split"] = ch["split"]
        rows.append(row)
    for rec in sorted(doc["added"].values(), key=lambda a: a["seq"]):
        rows.append({"split": rec["split"], "class_id": rec["class_id"], "file": rec["file"],
                     "source": rec.get("source", ""), "track": rec.get("track", ""), "orig_w": rec.get("orig_w", 0),
                     "orig_h": rec.get("orig_h", 0), "origin": "added", "id": rec["id"]})
    return [r for r in rows if split is None or r["split"] == split]


def load_split(info: ds.DatasetInfo, split: str) -> ds.SplitArrays:
    """A split of the workspace as arrays; images share the base's size (added ones are resized to it)."""
    rows = read_rows(info, split)
    base = _base_info(info.base)
    base_rows = ds.read_index(base, split)
    if [r["file"] for r in rows] == [r["file"] for r in base_rows]:
        return ds.load_split(base, split)  # untouched split: the base's arrays as they are
    cache = _cache_root(info.name) / info.fingerprint / f"{split}.npz"
    arrays = ds.read_cached_split(cache, len(rows))
    if arrays is None:
        arrays = _assemble(info, base, rows)
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

@contextlib.contextmanager
def change(name: str) -> Iterator[tuple[dict, dict]]:
    """Change workspace ``name`` as one step: yields (header, overlay) to edit in place; commits a new version at
    the end, or nothing at all if the block raises. Holds the workspace's lock (threads and processes)."""
    if not is_workspace(name):
        ds.get_dataset(name)
        raise ValueError(f"{name!r} is a built dataset and never changes; derive a workspace from it first "
                         f"(python -m core datasets derive --from {name} --name {DEFAULT_NAME})")
    path = workspace_dir(name)
    with file_lock(path / ".lock"):
        head = _read_header(path)
        doc = _read_overlay(path, head)
        yield head, doc
        _commit(path, head, doc, _base_info(head["base"]))


def add_class(name: str, class_name: str) -> int:
    """Add a class (next free id) to workspace ``name``; returns its id."""
    class_name = _check_class_name(class_name)
    with change(name) as (head, _):
        if class_name.casefold() in {v.casefold() for v in head["classes"].values()}:
            raise ValueError(f"workspace {name!r} has a class named {class_name!r} already")
        cid = max(map(int, head["classes"]), default=-1) + 1
        head["classes"][str(cid)] = class_name
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
    with change(name) as (head, doc):
        if str(class_id) not in head["classes"]:
            raise ValueError(f"workspace {name!r} has no class {class_id}; add it first")
        ids = []
        for k, (im, (rel, sha)) in enumerate(zip(images, files)):
            doc["seq"] += 1
            rid = f"a{doc['seq']}"
            doc["added"][rid] = {**(records[k] if records else {}), "id": rid, "seq": doc["seq"], "split": split,
                                 "class_id": int(class_id), "file": rel, "sha256": sha, "source": sources[k],
                                 "orig_w": int(im.shape[1]), "orig_h": int(im.shape[0]), "added": time.time()}
            ids.append(rid)
    return ids


def move_images(name: str, files: list[str], *, split: str) -> int:
    """Move images (by their ``file`` in the index) to ``split``; returns how many moved."""
    if split not in ds.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(ds.SPLITS)}")
    return _edit_images(name, files, lambda rec: rec.__setitem__("split", split))


def delete_images(name: str, files: list[str]) -> int:
    """Remove images (by their ``file`` in the index) from the workspace; the base's files stay untouched."""
    return _edit_images(name, files, lambda rec: rec.__setitem__("deleted", True))


def _edit_images(name: str, files: list[str], edit) -> int:
    with change(name) as (head, doc):
        info = read_info(workspace_dir(name))
        current = {r["file"]: r for r in read_rows(info)}
        unknown = [f for f in files if f not in current]
        if unknown:
            raise ValueError(f"{len(unknown)} file(s) are not in workspace {name!r}, e.g. {unknown[0]!r}")
        for f in files:
            row = current[f]
            if row["origin"] == "added":
                rec = doc["added"][row["id"]]
                edit(rec)
                if rec.pop("deleted", False):
                    del doc["added"][row["id"]]
            else:
                rec = dict(doc["changed"].get(f) or {"split": row["split"]})
                edit(rec)
                doc["changed"][f] = rec
    return len(files)


# -- internals -----------------------------------------------------------------------------------------------------

def _check_class_name(class_name: str) -> str:
    text = " ".join(str(class_name or "").split())
    if not text or len(text) > 80 or any(ord(c) < 32 for c in text):
        raise ValueError(f"class name {class_name!r}: use 1-80 printable characters")
    return text


def _write_image(path: Path, image: np.ndarray) -> tuple[str, str]:
    data = encode_png(np.ascontiguousarray(image))
    sha = hashlib.sha256(data).hexdigest()
    rel = f"{ADDED_DIR}/{sha[:2]}/{sha}.png"
    if not (path / rel).is_file():
        atomic_write_bytes(path / rel, data)
    return rel, sha


def _version(head: dict, doc: dict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([head["base"], head["base_version"], head["classes"]], sort_keys=True).encode())
    for rec in sorted(doc["added"].values(), key=lambda a: a["seq"]):
        h.update(f"\n{rec['id']}|{rec['split']}|{rec['class_id']}|{rec['sha256']}".encode())
    h.update(json.dumps(doc["changed"], sort_keys=True).encode())
    return h.hexdigest()[:16]


def _counts(base: ds.DatasetInfo, doc: dict) -> dict[str, dict[str, int]]:
    counts = {s: {str(k): v for k, v in base.counts.get(s, {}).items()} for s in ds.SPLITS}
    if doc["changed"]:
        cls = {r["file"]: (r["split"], str(r["class_id"])) for r in ds.read_index(base)}
        for f, ch in doc["changed"].items():
            if f not in cls:  # the base was rebuilt without this file
                continue
            s, c = cls[f]
            counts[s][c] -= 1
            if not ch.get("deleted"):
                counts[ch["split"]][c] = counts[ch["split"]].get(c, 0) + 1
    for rec in doc["added"].values():
        c = str(rec["class_id"])
        counts[rec["split"]][c] = counts[rec["split"]].get(c, 0) + 1
    return {s: {k: v for k, v in c.items() if v} for s, c in counts.items()}


def _commit(path: Path, head: dict, doc: dict, base: ds.DatasetInfo) -> None:
    """Write the overlay of the new version, then switch the header to it (the commit), then tidy up."""
    previous = head.get("overlay")
    head["version"] = _version(head, doc)
    head["counts"] = _counts(base, doc)
    head["overlay"] = f"overlay-{head['version']}.json"
    if head["overlay"] != previous:
        atomic_write_json(path / head["overlay"], doc)
    atomic_write_json(path / HEADER, head)
    keep = {head["overlay"], previous}
    for old in path.glob("overlay-*.json"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def _read_header(path: Path) -> dict:
    try:
        head = json.loads((path / HEADER).read_text(encoding="utf-8"))
        if head.get("format") != FORMAT:
            raise ValueError(f"format {head.get('format')!r}, expected {FORMAT}")
        return head
    except (OSError, ValueError) as e:
        raise ValueError(f"{path / HEADER}: not a valid workspace ({e})") from None


def _read_overlay(path: Path, head: dict) -> dict:
    try:
        return json.loads((path / head["overlay"]).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"workspace {head.get('name')!r}: overlay cannot be read ({e})") from None


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
