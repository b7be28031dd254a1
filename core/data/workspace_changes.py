"""Changing a workspace (:mod:`core.data.workspaces`): every change is one step that writes one new version, or
nothing at all. :func:`change` opens a :class:`Change` under the workspace's lock; images added (content-addressed
files first, then one commit), moved, relabelled, edited or deleted, and classes added, renamed or removed, are
each one change; :func:`undo` takes the last one back to the exact version before it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from core.base.files import file_lock
from core.base.text import plural
from core.data import built as ds
from core.data import quotas
from core.data.images import encode_png
from core.data.workspaces import (ADDED_DIR, EXTRA, EXTRA_CLASS, GENERATED_OFF, added_records, current_added,
                                  is_generated, read_header, read_info, read_json, read_rows, require_writable,
                                  workspace_dir, write_version)

#: Changes that ``undo`` can take back, newest last.
UNDO_DEPTH = 20
#: Header fields a change may alter, restored together by ``undo``.
_STATE_FIELDS = ("classes", "counts", "segments", "state", "pictograms")


class Change:
    """One open change of a workspace: edit :attr:`classes`, add records, move or remove rows; then
    :meth:`commit` writes the new version (counts kept up to date as it goes)."""

    def __init__(self, path: Path, head: dict, state: dict):
        self.what = ""  # set by an edit that can say what it did better than its caller (class names)
        self.force_test = False  # True: :meth:`move` may put a generated image in a test split (else it refuses)
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
            if not (is_generated(rec) and self.state.get(GENERATED_OFF)):  # switched off: not in the counts
                self._count(rec["split"], rec["class_id"], +1)
            ids.append(rid)
        return ids

    def move(self, row: dict, split: str, class_id: int | None = None) -> None:
        """Move one current row (from :func:`read_rows`) to ``split`` (and, for an added image, ``class_id``)."""
        cid = row["class_id"] if class_id is None else int(class_id)
        if cid != row["class_id"] and row["origin"] != "added":
            raise ValueError(f"{row['file']}: images of the base dataset keep their class; only added images "
                             "can be relabelled")
        if split == "test" != row["split"] and row.get("generated") and not self.force_test:
            raise ValueError(f"image {row['id']} is generated: in a test split it would make the test measure the "
                             "generator, not the model; move it to train or val, or force it (force=True)")
        self._set(row, {"split": split, "class_id": cid})
        self._count(row["split"], row["class_id"], -1)
        self._count(split, cid, +1)

    def relabel(self, row: dict, class_id: int) -> None:
        """Give one current row (a base image or an added one) another class of the workspace, in its split."""
        self._set(row, {"split": row["split"], "class_id": int(class_id)})
        self._count(row["split"], row["class_id"], -1)
        self._count(row["split"], int(class_id), +1)

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
        """Write the new version (:func:`core.data.workspaces.write_version`)."""
        write_version(self.path, self.head, self.state, self.new_records)


@contextlib.contextmanager
def change(name: str, what: str = "") -> Iterator[Change]:
    """Change workspace ``name`` as one step: yields a :class:`Change`; commits a new version at the end, or
    nothing at all if the block raises. Holds the workspace's lock (threads and processes). A change that says
    ``what`` it does can be taken back with :func:`undo`. In demo mode only the session that made the workspace
    may change it (:func:`core.data.workspaces.require_writable`)."""
    require_writable(name)
    path = workspace_dir(name)
    with file_lock(path / ".lock"):
        head = read_header(path)
        before = {k: json.loads(json.dumps(head.get(k, {}))) for k in _STATE_FIELDS}
        ch = Change(path, head, read_json(path / head["state"]))
        yield ch
        if what := ch.what or what:
            head["undo"] = (head.get("undo", []) + [{**before, "what": what, "at": time.time()}])[-UNDO_DEPTH:]
        ch.commit()


def undo_list(name: str) -> list[str]:
    """What :func:`undo` can take back, oldest first (the last one goes first)."""
    return [u["what"] for u in read_header(workspace_dir(name)).get("undo", [])]


def undo(name: str) -> str:
    """Take back the last change of workspace ``name`` (images added, moved, edited or deleted, classes);
    returns what was undone. The workspace goes back to that version exactly (same version string)."""
    with change(name) as ch:
        if not ch.head.get("undo"):
            raise ValueError(f"workspace {name!r} has nothing to undo")
        last = ch.head["undo"].pop()
        ch.head.update({k: last[k] for k in _STATE_FIELDS})
        ch.state = read_json(ch.path / last["state"])
    return last["what"]


def add_class(name: str, class_name: str, *, pictogram: np.ndarray | None = None) -> int:
    """Add a class (next free id) to workspace ``name``, optionally with a reference image shown as its
    pictogram; returns its id."""
    class_name = _check_class_name(class_name)
    require_writable(name)
    picture = None
    if pictogram is not None:
        quotas.check_workspaces_disk(_png_bound(pictogram), what=f"the pictogram of {class_name!r}")
        picture = _write_image(workspace_dir(name), pictogram)[0]
    with change(name, f"add class {class_name!r}") as ch:
        cid = _new_class(ch, name, class_name)
        if picture:
            ch.head["pictograms"] = {**ch.head.get("pictograms", {}), str(cid): picture}
    return cid


def class_from_images(name: str, class_name: str, refs: Sequence[str], *, split: str = "train") -> int:
    """Create class ``class_name`` from added images (by id, e.g. a group found in the Extra bucket) and move them
    to ``split`` with it, as **one** change: both happen or neither (a failure half-way leaves the workspace as it
    was), and one :func:`undo` takes both back. Returns the new class id."""
    class_name = _check_class_name(class_name)
    if split not in ds.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(ds.SPLITS)}")
    if not (refs := list(dict.fromkeys(refs))):
        raise ValueError(f"no images given for the new class {class_name!r}: pick at least one")
    with change(name, f"create class {class_name!r} from {plural(len(refs))}") as ch:
        cid = _new_class(ch, name, class_name)
        for row in _current_rows(ch, name, refs):
            ch.move(row, split, cid)  # refuses base images: they keep their class
    return cid


def _new_class(ch: Change, name: str, class_name: str) -> int:
    """Add ``class_name`` (checked, unique) to an open change under the next free id; returns the id."""
    _check_unique(ch, name, class_name)
    cid = max(map(int, ch.classes), default=-1) + 1
    ch.classes[str(cid)] = class_name
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
        if n := sum(c.get(str(class_id), 0) for c in ch.head["counts"].values()):
            raise ValueError(f"class {class_id} ({ch.classes[str(class_id)]}) still has {plural(n)}; move or "
                             "delete them first")
        del ch.classes[str(class_id)]
        ch.head.get("pictograms", {}).pop(str(class_id), None)


def _check_class(ch: Change, name: str, class_id: int) -> None:
    if str(class_id) not in ch.classes:
        raise ValueError(f"workspace {name!r} has no class {class_id}; valid ids: "
                         f"{', '.join(sorted(ch.classes, key=int)[:60])}")


def _check_unique(ch: Change, name: str, class_name: str, *, but: int | None = None) -> None:
    taken = {v.casefold(): k for k, v in ch.classes.items() if but is None or k != str(but)}
    if (cid := taken.get(class_name.casefold())) is not None:
        raise ValueError(f"workspace {name!r} has a class named {ch.classes[cid]!r} already (id {cid}); "
                         "class names are compared without case")


def add_images(name: str, images: Sequence[np.ndarray], *, split: str | Sequence[str],
               class_id: int | Sequence[int], sources: Sequence[str], records: Sequence[dict] | None = None) -> list[str]:
    """Add RGB uint8 images to one class (or the Extra bucket: ``class_id`` ``EXTRA_CLASS``, split ``EXTRA``);
    ``split`` and ``class_id`` are one for all or one per image (classes, not Extra); ``records`` (one dict each)
    are kept with them (provenance).

    One change: files are written first (content-addressed), then one commit, so a crash or kill leaves the
    previous version. Returns the new images' ids, in order.
    """
    splits = [split] * len(images) if isinstance(split, str) else list(split)
    cids = [int(class_id)] * len(images) if np.isscalar(class_id) else [int(c) for c in class_id]
    if len({len(images), len(splits), len(sources), len(cids), len(images if records is None else records)}) > 1:
        raise ValueError(f"{len(images)} images need as many splits, classes, sources and records")
    if EXTRA_CLASS in cids and not np.isscalar(class_id):
        raise ValueError("the Extra bucket takes images one class_id for all (EXTRA_CLASS), not per image")
    class_id = int(class_id) if np.isscalar(class_id) else cids[0] if cids else EXTRA_CLASS
    valid = (EXTRA,) if class_id == EXTRA_CLASS else ds.SPLITS
    if bad := sorted(set(splits) - set(valid)):
        raise ValueError(f"unknown split {bad[0]!r} for class {class_id}; valid: {', '.join(valid)}")
    require_writable(name)
    quotas.check_workspaces_disk(sum(_png_bound(im) for im in images),
                                 what=f"adding {len(images)} image(s) to workspace {name!r}")
    path = workspace_dir(name)
    files = [_write_image(path, im) for im in images]
    os.sync()  # the images are on disk before the overlay that names them (one sync, not one per file)
    with change(name, f"add {plural(len(images))}") as ch:
        if class_id != EXTRA_CLASS:
            for cid in sorted(set(cids)):
                _check_class(ch, name, cid)
        now = time.time()
        return ch.add_records([{**(records[k] if records else {}), "split": splits[k], "class_id": cids[k],
                                "file": rel, "sha256": sha, "source": sources[k], "orig_w": int(im.shape[1]),
                                "orig_h": int(im.shape[0]), "added": now}
                               for k, (im, (rel, sha)) in enumerate(zip(images, files))])


def replace_image(name: str, image_id: str, image: np.ndarray, *, record: dict) -> str:
    """Replace added image ``image_id`` by ``image`` (an edit): the new one keeps its split and class, records
    ``parent`` = the old id; the old one goes to the trash. One change; returns the new id."""
    require_writable(name)
    quotas.check_workspaces_disk(_png_bound(image), what=f"the edited image {image_id}")
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


def move_images(name: str, refs: Sequence[str], *, split: str, class_id: int | None = None,
                force: bool = False) -> int:
    """Move images (added ones by id, any by ``file`` in the index) to ``split``, optionally giving added
    images another class (an Extra image gets its class this way). An added image's augmented variants (current
    records made from it: ``parent`` chains) move with it, so no variant is left behind in the other split as a
    near-duplicate (leakage). A generated image goes to test only with ``force``. Returns how many were asked to
    move (variants not counted)."""
    if split not in ds.SPLITS + (EXTRA,):
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(ds.SPLITS + (EXTRA,))}")
    if (split == EXTRA) != (class_id == EXTRA_CLASS) and (class_id is not None or split == EXTRA):
        raise ValueError("the Extra bucket holds unlabelled images: move to it with class 'extra', out of it "
                         "with a class")
    what = f"move {plural(len(refs))} to {split}"

    def move(ch: Change, row: dict) -> None:
        if class_id not in (None, EXTRA_CLASS):
            _check_class(ch, name, class_id)
            ch.what = f"{what} as {class_id}: {ch.classes[str(class_id)]}"
        if row["split"] == EXTRA and class_id is None:
            raise ValueError(f"image {row.get('id', row['file'])} is in the Extra bucket: give it a class to move it")
        ch.force_test = force
        ch.move(row, split, class_id)

    return _edit_images(name, refs, move, what, with_variants=True)


def use_generated(name: str, use: bool) -> str:
    """The one switch of ``name``'s generated images: ``use=False`` leaves them out of its rows, counts and splits
    (training, evaluation, Explore, Data issues; still listed), True puts them back. One change, undoable; a new
    version, so models and reports name the state they used (back on is the earlier version). Returns a message."""
    with change(name, "use generated images" if use else "switch generated images off") as ch:
        made = [r for r in current_added(read_info(ch.path)) if is_generated(r)]
        if not use and not made:
            raise ValueError(f"workspace {name!r} has no generated images: there is nothing to switch off")
        if ch.state.pop(GENERATED_OFF, False) != use:  # already so: nothing written, no undo step
            raise ValueError(f"generated images are already {'in use' if use else 'switched off'} in {name!r}")
        ch.state.update({} if use else {GENERATED_OFF: True})
        for r in made:
            ch._count(r["split"], r["class_id"], +1 if use else -1)
    return (f"{plural(len(made), 'generated image')} "
            f"{'back in' if use else 'switched off: out of'} training and evaluation.")


def relabel_images(name: str, refs: Sequence[str], *, class_id: int | Sequence[int]) -> int:
    """Give images (added ones by id, any by ``file``; base images too) class ``class_id`` of the workspace (one
    for all, or one per image), each in its split, as one change that :func:`undo` takes back. Extra images get a
    class with :func:`move_images`. Returns how many were relabelled."""
    targets = [class_id] * len(refs) if isinstance(class_id, (int, np.integer)) else list(class_id)
    if len(targets) != len(refs):
        raise ValueError(f"{len(refs)} images need one class for all or one each, got {len(targets)} classes")
    if EXTRA_CLASS in targets:
        raise ValueError("the Extra bucket is no class: move added images to it (images move --to extra) instead")
    to = dict(zip(refs, (int(c) for c in targets)))
    what = f"relabel {plural(len(to))}"
    with change(name, what) as ch:
        if not to:
            raise ValueError("no images given: pick at least one")
        for ref, row in zip(to, _current_rows(ch, name, list(to))):
            _check_class(ch, name, to[ref])
            if row["split"] == EXTRA:
                raise ValueError(f"image {ref} is in the Extra bucket: give it a class and a split by moving it")
            ch.relabel(row, to[ref])
        if len(set(to.values())) == 1:
            cid = next(iter(to.values()))
            ch.what = f"{what} as {cid}: {ch.classes[str(cid)]}"
    return len(to)


def delete_images(name: str, refs: Sequence[str]) -> int:
    """Move images (added ones by id, any by ``file``) to the trash: out of every split, files kept, so
    :func:`undo` brings them back. The base's files are never touched."""
    return _edit_images(name, refs, lambda ch, row: ch.remove(row), f"delete {plural(len(refs))}")


def _edit_images(name: str, refs: Sequence[str], edit: Callable[[Change, dict], None], what: str, *,
                 with_variants: bool = False) -> int:
    if not refs:
        raise ValueError("no images given: pick at least one")
    with change(name, what) as ch:
        rows = _current_rows(ch, name, refs)
        for row in _with_variants(ch, rows) if with_variants else rows:
            edit(ch, row)
    return len(dict.fromkeys(refs))


def _with_variants(ch: Change, rows: list[dict]) -> list[dict]:
    """``rows`` followed by the current added rows made from them (records whose ``parent`` chain leads to one of
    them: augmented variants), each once."""
    current = [r for r in read_rows(read_info(ch.path)) if r["origin"] == "added"]
    parent = {r["id"]: r.get("parent") for r in added_records(ch.path, ch.head)}
    if not (chosen := {r["id"] for r in rows if r["origin"] == "added"}):
        return rows

    def made_from_chosen(rid: str) -> bool:
        seen = set()
        while (rid := parent.get(rid)) is not None and rid not in seen and rid not in chosen:
            seen.add(rid)
        return rid in chosen

    taken = {r.get("id", r["file"]) for r in rows}
    return rows + [r for r in current if r["id"] not in taken and made_from_chosen(r["id"])]


def _current_rows(ch: Change, name: str, refs: Sequence[str]) -> list[dict]:
    """The current rows of ``refs`` (added images by id, any by ``file``), each once; ValueError if one is unknown."""
    rows = read_rows(read_info(ch.path))
    current = {r["file"]: r for r in rows} | {r["id"]: r for r in rows if r["origin"] == "added"}
    if unknown := [f for f in refs if f not in current]:
        raise ValueError(f"{plural(len(unknown))} {'is' if len(unknown) == 1 else 'are'} not in workspace {name!r}, "
                         f"e.g. {unknown[0]!r}")
    return [current[ref] for ref in dict.fromkeys(refs)]


# -- internals -----------------------------------------------------------------------------------------------------

def _check_class_name(class_name: str) -> str:
    text = " ".join(str(class_name or "").split())
    if not text or len(text) > 80 or any(ord(c) < 32 for c in text):
        raise ValueError(f"class name {class_name!r}: use 1-80 printable characters")
    return text


def _png_bound(image: np.ndarray) -> int:
    """Bytes the PNG of ``image`` takes at most (pixels plus PNG overhead): demo mode's disk cap checks this."""
    return int(image.nbytes * 1.01) + image.shape[0] + 1024


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
