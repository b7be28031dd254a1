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
from typing import Callable, Iterator, Sequence

import numpy as np

from core.base import config
from core.data import built as ds
from core.data.images import encode_png, load_image, resize_to_input
from core.base.files import atomic_write_bytes, atomic_write_json, file_lock

HEADER = "workspace.json"
ADDED_DIR = "added"
SEGMENTS = "segments"
#: The Extra bucket: added images not labelled confidently yet. They sit outside train/val/test (no split
#: reads them) under this pseudo split and class id, until a user gives them a class.
EXTRA = "extra"
EXTRA_CLASS = -1
#: Changes that ``undo`` can take back, newest last.
UNDO_DEPTH = 20
#: Header fields a change may alter, restored together by ``undo``.
_STATE_FIELDS = ("classes", "counts", "segments", "state", "pictograms")
FORMAT = 1
#: The published system's "Main dataset" (its hardest set plus everything added in the UI) is a workspace.
DEFAULT_NAME = "Main"


def workspace_dir(name: str) -> Path:
    return config.workspaces_dir() / name


def is_workspace(name: str) -> bool:
    return (workspace_dir(name) / HEADER).is_file()


def list_workspaces(built: list[ds.DatasetInfo] | None = None) -> list[ds.DatasetInfo]:
    """Every workspace; ``built`` (the built datasets, when the caller has them) saves reading them again."""
    root = config.workspaces_dir()
    bases = {d.name: d for d in (built if built is not None else ds.list_built())}
    out = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if (p / HEADER).is_file() and not p.name.startswith("."):
            with contextlib.suppress(ValueError):
                out.append(read_info(p, bases=bases))
    return out


def read_info(path: Path, *, bases: dict[str, ds.DatasetInfo] | None = None) -> ds.DatasetInfo:
    """The dataset description of a workspace folder (reads only the small header)."""
    head = _read_header(Path(path))
    base = bases[head["base"]] if bases and head["base"] in bases else _base_info(head["base"])
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
    built = ds.list_built()
    if name in {d.name for d in built} or workspace_dir(name).exists():
        raise ValueError(f"a dataset named {name!r} exists already; choose another name")
    if is_workspace(base):
        raise ValueError(f"{base!r} is a workspace; derive from a built dataset: "
                         f"{', '.join(d.name for d in built)}")
    info = _known_built(base)
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
        info = _known_built(name)  # raises for an unknown name
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
    for r in ds.read_rows(base):
        row = {**r, "origin": f"base:{r['split']}", **state["base"].get(r["file"], {})}
        if not row.pop("deleted", False):
            rows.append(row)
    for rec in added_records(info.path, head):
        ch = state["added"].get(rec["id"], {})
        if not ch.get("deleted"):
            rows.append({"split": ch.get("split", rec["split"]), "class_id": ch.get("class_id", rec["class_id"]),
                         "file": rec["file"],
                         "source": rec.get("source", ""), "track": rec.get("track", ""),
                         "orig_w": rec.get("orig_w", 0), "orig_h": rec.get("orig_h", 0), "origin": "added",
                         "id": rec["id"]})
    return [r for r in rows if split is None or r["split"] == split]


def current_added(info: ds.DatasetInfo) -> list[dict]:
    """The added images of the current version, full records (provenance included) with their current split
    and class; ``deleted`` ones (in the trash) are left out."""
    head = _read_header(info.path)
    state = _read_json(info.path / head["state"])["added"]
    out = []
    for rec in added_records(info.path, head):
        ch = state.get(rec["id"], {})
        if not ch.get("deleted"):
            out.append({**rec, **ch})
    return out


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
        self._added: dict[str, dict] | None = None

    @property
    def classes(self) -> dict[str, str]:
        return self.head["classes"]

    def _count(self, split: str, class_id: int, delta: int) -> None:
        c = self.head["counts"].setdefault(split, {})
        c[str(class_id)] = c.get(str(class_id), 0) + delta

    def add_records(self, records: list[dict]) -> list[str]:
        """Add image records (each with at least split, class_id, file, sha256); returns their new ids. A record
        may name its ``parent`` by ``parent_index``, the position of an earlier record of the same call."""
        ids = []
        for rec in records:
            self.head["seq"] += 1
            rid = f"a{self.head['seq']}"
            rec = dict(rec)
            if "parent_index" in rec:
                rec["parent"] = ids[rec.pop("parent_index")]
            self.new_records.append({**rec, "id": rid, "seq": self.head["seq"]})
            self._count(rec["split"], rec["class_id"], +1)
            ids.append(rid)
        return ids

    def move(self, row: dict, split: str, class_id: int | None = None) -> None:
        """Move one current row (from :func:`read_rows`) to ``split`` (and, for an added image, ``class_id``)."""
        cid = row["class_id"] if class_id is None else int(class_id)
        if cid != row["class_id"] and row["origin"] != "added":
            raise ValueError(f"{row['file']}: images of the base dataset keep their class; only added images "
                             "can be relabelled")
        self._set(row, {"split": split, "class_id": cid})
        self._count(row["split"], row["class_id"], -1)
        self._count(split, cid, +1)

    def remove(self, row: dict) -> None:
        """Take one current row out of the workspace (the file itself stays: a base's, or content-addressed)."""
        self._set(row, {"deleted": True})
        self._count(row["split"], row["class_id"], -1)

    def _set(self, row: dict, change: dict) -> None:
        if row["origin"] == "added":
            table, key, original = "added", row["id"], self._added_as(row["id"])
        else:
            table, key = "base", row["file"]
            original = {"split": row["origin"].split(":", 1)[1], "class_id": row["class_id"]}
        if change == original:
            self.state[table].pop(key, None)  # back where it started: no change left to record
        else:
            self.state[table][key] = {k: v for k, v in change.items()
                                      if k == "deleted" or v != original.get(k)} if table == "base" else change

    def _added_as(self, rid: str) -> dict:
        """Split and class an added image was added with (records read once per change)."""
        if self._added is None:
            self._added = {r["id"]: {"split": r["split"], "class_id": r["class_id"]}
                           for r in added_records(self.path, self.head)}
        self._added.update((r["id"], {"split": r["split"], "class_id": r["class_id"]}) for r in self.new_records)
        return self._added[rid]

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
        keep = {self.head["state"], previous} | {u["state"] for u in self.head.get("undo", [])}
        for old in self.path.glob("state-*.json"):
            if old.name not in keep:
                old.unlink(missing_ok=True)


@contextlib.contextmanager
def change(name: str, what: str = "") -> Iterator[Change]:
    """Change workspace ``name`` as one step: yields a :class:`Change`; commits a new version at the end, or
    nothing at all if the block raises. Holds the workspace's lock (threads and processes). A change that says
    ``what`` it does can be taken back with :func:`undo`."""
    _require_workspace(name)
    path = workspace_dir(name)
    with file_lock(path / ".lock"):
        head = _read_header(path)
        before = {k: json.loads(json.dumps(head.get(k, {}))) for k in _STATE_FIELDS}
        ch = Change(path, head, _read_json(path / head["state"]))
        yield ch
        if what:
            head["undo"] = (head.get("undo", []) + [{**before, "what": what, "at": time.time()}])[-UNDO_DEPTH:]
        ch.commit()


def undo_list(name: str) -> list[str]:
    """What :func:`undo` can take back, oldest first (the last one goes first)."""
    return [u["what"] for u in _read_header(workspace_dir(name)).get("undo", [])]


def undo(name: str) -> str:
    """Take back the last change of workspace ``name`` (images added, moved, edited or deleted, classes);
    returns what was undone. The workspace goes back to that version exactly (same version string)."""
    with change(name) as ch:
        if not ch.head.get("undo"):
            raise ValueError(f"workspace {name!r} has nothing to undo")
        last = ch.head["undo"].pop()
        for k in _STATE_FIELDS:
            ch.head[k] = last[k]
        ch.state = _read_json(ch.path / last["state"])
    return last["what"]


def add_class(name: str, class_name: str, *, pictogram: np.ndarray | None = None) -> int:
    """Add a class (next free id) to workspace ``name``, optionally with a reference image shown as its
    pictogram; returns its id."""
    class_name = _check_class_name(class_name)
    picture = _write_image(workspace_dir(name), pictogram)[0] if pictogram is not None and is_workspace(name) else None
    with change(name, f"add class {class_name!r}") as ch:
        _check_unique(ch, name, class_name)
        cid = max(map(int, ch.classes), default=-1) + 1
        ch.classes[str(cid)] = class_name
        if picture:
            ch.head["pictograms"] = {**ch.head.get("pictograms", {}), str(cid): picture}
    return cid


def rename_class(name: str, class_id: int, class_name: str) -> None:
    class_name = _check_class_name(class_name)
    with change(name, f"rename class {class_id} to {class_name!r}") as ch:
        _check_class(ch, name, class_id)
        _check_unique(ch, name, class_name, but=class_id)
        ch.classes[str(class_id)] = class_name


def remove_class(name: str, class_id: int) -> None:
    """Remove a class that has no images in any split (nor in the Extra bucket's history)."""
    with change(name, f"remove class {class_id}") as ch:
        _check_class(ch, name, class_id)
        n = sum(c.get(str(class_id), 0) for c in ch.head["counts"].values())
        if n:
            raise ValueError(f"class {class_id} ({ch.classes[str(class_id)]}) still has {n} image(s); move or "
                             "delete them first")
        del ch.classes[str(class_id)]
        ch.head.get("pictograms", {}).pop(str(class_id), None)


def pictogram(info: ds.DatasetInfo, class_id: int) -> Path | None:
    """The reference image a user gave a workspace class, if any."""
    rel = _read_header(info.path).get("pictograms", {}).get(str(class_id))
    return info.path / rel if rel else None


def _check_class(ch: Change, name: str, class_id: int) -> None:
    if str(class_id) not in ch.classes:
        raise ValueError(f"workspace {name!r} has no class {class_id}; valid ids: "
                         f"{', '.join(sorted(ch.classes, key=int)[:60])}")


def _check_unique(ch: Change, name: str, class_name: str, *, but: int | None = None) -> None:
    taken = {v.casefold(): k for k, v in ch.classes.items() if but is None or k != str(but)}
    if class_name.casefold() in taken:
        cid = taken[class_name.casefold()]
        raise ValueError(f"workspace {name!r} has a class named {ch.classes[cid]!r} already (id {cid}); "
                         "class names are compared without case")


def add_images(name: str, images: Sequence[np.ndarray], *, split: str | Sequence[str], class_id: int,
               sources: Sequence[str], records: Sequence[dict] | None = None) -> list[str]:
    """Add RGB uint8 images to one class (or the Extra bucket: ``class_id`` ``EXTRA_CLASS``, split ``EXTRA``);
    ``split`` is one for all or one per image; ``records`` (one dict each) are kept with them (provenance).

    One change: files are written first (content-addressed), then one commit, so a crash or kill leaves the
    previous version. Returns the new images' ids, in order.
    """
    splits = [split] * len(images) if isinstance(split, str) else list(split)
    if len(splits) != len(images) or len(sources) != len(images) or (records is not None and len(records) != len(images)):
        raise ValueError(f"{len(images)} images need as many splits, sources and records")
    valid = (EXTRA,) if class_id == EXTRA_CLASS else ds.SPLITS
    bad = sorted(set(splits) - set(valid))
    if bad:
        raise ValueError(f"unknown split {bad[0]!r} for class {class_id}; valid: {', '.join(valid)}")
    _require_workspace(name)
    path = workspace_dir(name)
    files = [_write_image(path, im) for im in images]
    os.sync()  # the images are on disk before the overlay that names them (one sync, not one per file)
    with change(name, f"add {len(images)} image(s)") as ch:
        if class_id != EXTRA_CLASS:
            _check_class(ch, name, class_id)
        now = time.time()
        return ch.add_records([{**(records[k] if records else {}), "split": splits[k], "class_id": int(class_id),
                                "file": rel, "sha256": sha, "source": sources[k], "orig_w": int(im.shape[1]),
                                "orig_h": int(im.shape[0]), "added": now}
                               for k, (im, (rel, sha)) in enumerate(zip(images, files))])


def replace_image(name: str, image_id: str, image: np.ndarray, *, record: dict) -> str:
    """Replace added image ``image_id`` by ``image`` (an edit): the new one keeps its split and class, records
    ``parent`` = the old id; the old one goes to the trash. One change; returns the new id."""
    rel, sha = _write_image(workspace_dir(name), image)
    os.sync()
    with change(name, f"edit image {image_id}") as ch:
        rows = {r["id"]: r for r in read_rows(read_info(ch.path)) if r["origin"] == "added"}
        if image_id not in rows:
            raise ValueError(f"no added image {image_id!r} in workspace {name!r}")
        row = rows[image_id]
        ch.remove(row)
        (new_id,) = ch.add_records([{**record, "parent": image_id, "split": row["split"],
                                     "class_id": row["class_id"], "file": rel, "sha256": sha,
                                     "source": row["source"], "orig_w": int(image.shape[1]),
                                     "orig_h": int(image.shape[0]), "added": time.time()}])
    return new_id


def move_images(name: str, refs: Sequence[str], *, split: str, class_id: int | None = None) -> int:
    """Move images (added ones by id, any by ``file`` in the index) to ``split``, optionally giving added
    images another class (an Extra image gets its class this way). Returns how many moved."""
    if split not in ds.SPLITS + (EXTRA,):
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(ds.SPLITS + (EXTRA,))}")
    if (split == EXTRA) != (class_id == EXTRA_CLASS) and (class_id is not None or split == EXTRA):
        raise ValueError("the Extra bucket holds unlabelled images: move to it with class 'extra', out of it "
                         "with a class")
    what = f"move {len(refs)} image(s) to {split}" + (f", class {class_id}" if class_id is not None else "")

    def move(ch: Change, row: dict) -> None:
        if class_id not in (None, EXTRA_CLASS):
            _check_class(ch, name, class_id)
        if row["split"] == EXTRA and class_id is None:
            raise ValueError(f"image {row.get('id', row['file'])} is in the Extra bucket: give it a class to move it")
        ch.move(row, split, class_id)

    return _edit_images(name, refs, move, what)


def delete_images(name: str, refs: Sequence[str]) -> int:
    """Move images (added ones by id, any by ``file``) to the trash: out of every split, files kept, so
    :func:`undo` brings them back. The base's files are never touched."""
    return _edit_images(name, refs, lambda ch, row: ch.remove(row), f"delete {len(refs)} image(s)")


def _edit_images(name: str, refs: Sequence[str], edit: Callable[[Change, dict], None], what: str) -> int:
    with change(name, what) as ch:
        rows = read_rows(read_info(ch.path))
        current = {r["file"]: r for r in rows} | {r["id"]: r for r in rows if r["origin"] == "added"}
        unknown = [f for f in refs if f not in current]
        if unknown:
            raise ValueError(f"{len(unknown)} image(s) are not in workspace {name!r}, e.g. {unknown[0]!r}")
        for ref in dict.fromkeys(refs):
            edit(ch, current[ref])
    return len(dict.fromkeys(refs))


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


def _require_workspace(name: str) -> None:
    """Raise the right message for a name that is not a workspace: unknown, or a built dataset."""
    if not is_workspace(name):
        _known_built(name)  # raises for an unknown name
        raise ValueError(f"{name!r} is a built dataset and never changes; derive a workspace from it first "
                         f"(python -m core datasets derive --from {name} --name {DEFAULT_NAME})")


def _known_built(name: str) -> ds.DatasetInfo:
    """The built dataset ``name``; ValueError naming every dataset when there is none of that name."""
    info = ds.get_built(name)
    if info is None:
        names = [d.name for d in ds.list_built()] + [w.name for w in list_workspaces()]
        raise ValueError(f"no dataset named {name!r}; available: "
                         f"{', '.join(names) or 'none (run: python -m core datasets build)'}")
    return info


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
