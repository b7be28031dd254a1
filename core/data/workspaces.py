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

This module reads workspaces, creates (:func:`derive`) and deletes them, and writes a version
(:func:`write_version`); changing one (images added, moved, deleted; classes; undo) is
:mod:`core.data.workspace_changes`.

In demo mode (:mod:`core.base.demo`) a workspace derived in a demo session records the session in its header
(``session``); a session lists only its own workspaces and shared ones, changes or deletes only its own
(:func:`require_writable`), and its workspaces are swept :data:`core.base.demo.DEMO_WORKSPACE_TTL_S` after their
creation (:func:`sweep_expired`, at most once a minute from :func:`list_workspaces` and on every :func:`derive`).

**Generated images** (added records of ``origin`` "generated") are marked in every row (``generated``); one switch
in the state file (a version; undo takes it back) leaves them out of rows, counts and splits (:func:`generated_in_use`).

Reading a split reuses the base's decoded cache (rows the overlay does not touch come straight from it) and
caches the assembled arrays per version, so it is as fast as reading the base.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from core.base import config, demo
from core.base.files import atomic_write_bytes, atomic_write_json, file_lock
from core.data import built as ds
from core.data import quotas
from core.data.images import load_image, resize_to_input

HEADER = "workspace.json"
ADDED_DIR = "added"
SEGMENTS = "segments"
#: The Extra bucket: added images not labelled confidently yet. They sit outside train/val/test (no split
#: reads them) under this pseudo split and class id, until a user gives them a class.
EXTRA = "extra"
EXTRA_CLASS = -1
FORMAT = 1
#: The published system's "Main dataset" (its hardest set plus everything added in the UI) is a workspace.
DEFAULT_NAME = "Main"
#: The state-file key of the one switch: true while generated images are left out of the splits.
GENERATED_OFF = "generated_off"
#: Seconds between two sweeps of expired demo workspaces triggered by listing them.
SWEEP_INTERVAL_S = 60.0
_last_sweep: float | None = None


def workspace_dir(name: str) -> Path:
    return config.workspaces_dir() / name


def is_workspace(name: str) -> bool:
    return (workspace_dir(name) / HEADER).is_file()


def list_workspaces(built: list[ds.DatasetInfo] | None = None) -> list[ds.DatasetInfo]:
    """Every workspace; ``built`` (the built datasets, when the caller has them) saves reading them again."""
    if demo.enabled() and (_last_sweep is None or time.monotonic() - _last_sweep > SWEEP_INTERVAL_S):
        sweep_expired()
    root = config.workspaces_dir()
    bases = {d.name: d for d in (built if built is not None else ds.list_built())}
    out = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if (p / HEADER).is_file() and not p.name.startswith("."):
            with contextlib.suppress(ValueError):
                head = read_header(p)
                if demo.visible(head.get(demo.SESSION_FIELD)):  # demo mode: a session's own and shared ones
                    out.append(read_info(p, bases=bases, head=head))
    return out


def list_infos(known: list[ds.DatasetInfo]) -> list[ds.DatasetInfo]:
    """The workspaces, as a source of the catalog (:mod:`core.data.datasets`); ``known`` holds their bases."""
    return list_workspaces([d for d in known if d.kind == "built"])


def read_info(path: Path, *, bases: dict[str, ds.DatasetInfo] | None = None,
              head: dict | None = None) -> ds.DatasetInfo:
    """The dataset description of a workspace folder (reads only the small header, unless given ``head``)."""
    head = head if head is not None else read_header(Path(path))
    base = bases[head["base"]] if bases and head["base"] in bases else _base_info(head["base"])
    version = head["version"]
    if base.fingerprint != head["base_version"]:  # the base was rebuilt with other images: another state
        version = hashlib.sha256(f"{version}|{base.fingerprint}".encode()).hexdigest()[:16]
    return ds.DatasetInfo(
        name=head["name"], path=Path(path), classes={int(k): v for k, v in head["classes"].items()},
        counts={s: {int(k): v for k, v in c.items() if v} for s, c in head["counts"].items()},
        source=f"workspace of {head['base']}", recipe=f"{head['base']} + user changes", fingerprint=version,
        embedded=False, kind="workspace", base=head["base"], base_path=base.path)


class NameTaken(ValueError):
    """The name asked for a new workspace is taken (by a dataset, or a workspace made meanwhile)."""


def derive(base: str, name: str) -> ds.DatasetInfo:
    """Create workspace ``name`` from built dataset ``base`` (nothing copied). Raises ValueError, writes nothing.
    In a demo session the workspace records the session (private to it, swept after the demo's time limit)."""
    ds.check_name(name)
    if demo.enabled():
        sweep_expired()
        quotas.check_workspaces_disk(0, what=f"creating workspace {name!r}")
    built = ds.list_built()
    if name in {d.name for d in built} or workspace_dir(name).exists():
        raise NameTaken(f"a dataset named {name!r} exists already; choose another name")
    if is_workspace(base):
        raise ValueError(f"{base!r} is a workspace; derive from a built dataset: "
                         f"{', '.join(d.name for d in built)}")
    info = _known_built(base)
    config.workspaces_dir().mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".new-{name}-", dir=config.workspaces_dir()))  # own, even at the same time
    tmp.chmod(0o755)
    try:
        head = {"format": FORMAT, "name": name, "base": base, "base_version": info.fingerprint,
                "created": time.time(), **demo.owner_fields(),  # a demo session's: private, swept
                "classes": {str(k): v for k, v in info.classes.items()}, "seq": 0,
                "segments": [], "counts": {s: {str(k): v for k, v in info.counts.get(s, {}).items()}
                                           for s in ds.SPLITS}}
        write_version(tmp, head, {"base": {}, "added": {}}, [])
        try:
            tmp.rename(workspace_dir(name))  # atomic; refused if another request made it meanwhile
        except OSError as e:
            if workspace_dir(name).exists():
                raise NameTaken(f"a dataset named {name!r} exists already; choose another name") from e
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_info(workspace_dir(name))


def change_target(info: ds.DatasetInfo, workspace: str | None, *, doing: str) -> tuple[str, bool]:
    """The workspace a change to dataset ``info`` goes to, and whether it was derived for it: ``info`` itself when
    it is a workspace; else a workspace named ``workspace`` derived from it now (built datasets never change).
    Call it once every other check has passed. ``doing`` completes the message ("act", "harvest")."""
    if info.kind == "workspace":
        return info.name, False
    if not workspace:
        raise ValueError(f"{info.name} is a built dataset and never changes; name a workspace to derive from it "
                         f"and {doing} there")
    if info.kind != "built":
        raise ValueError(f"{info.name} cannot be changed; derive a workspace from a built dataset")
    return derive(info.name, workspace).name, True


def delete(name: str) -> None:
    """Delete workspace ``name`` with everything added to it. Built datasets cannot be deleted, nor (in demo
    mode) another session's workspace or a shared one."""
    if not is_workspace(name):
        info = _known_built(name)  # raises for an unknown name
        raise ValueError(f"{info.name!r} is a built dataset, and built datasets never change; only workspaces "
                         f"can be deleted: {', '.join(w.name for w in list_workspaces()) or 'none yet'}")
    require_writable(name)
    _remove(name)


def _remove(name: str) -> None:
    trash = config.workspaces_dir() / f".deleted-{name}-{time.time_ns()}"
    with file_lock(workspace_dir(name) / ".lock"):  # a change in progress ends first
        workspace_dir(name).rename(trash)  # one atomic step: the workspace is gone, then its files
    shutil.rmtree(trash, ignore_errors=True)
    _drop_caches(name)


def sweep_expired(*, now: float | None = None) -> list[str]:
    """Delete the workspaces made in demo sessions (those whose header records a session) that are older than
    :data:`core.base.demo.DEMO_WORKSPACE_TTL_S`; every other workspace is left alone. Returns the names swept."""
    global _last_sweep
    _last_sweep = time.monotonic()
    now = time.time() if now is None else now
    root = config.workspaces_dir()
    swept = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if p.name.startswith(".") or not (p / HEADER).is_file():
            continue
        try:
            head = read_header(p)
        except ValueError:
            continue
        if head.get(demo.SESSION_FIELD) and now - float(head.get("created", now)) > demo.DEMO_WORKSPACE_TTL_S:
            with contextlib.suppress(OSError):  # another process swept it first
                _remove(p.name)
                swept.append(p.name)
    return swept


def free_name(stem: str = DEFAULT_NAME) -> str:
    """``stem`` if no dataset or workspace (a hidden one of another demo session included) has that name, else
    the first free ``stem-2``, ``stem-3``, ..."""
    taken = {d.name for d in ds.list_built()}
    k, name = 1, stem
    while name in taken or workspace_dir(name).exists():
        k += 1
        name = f"{stem}-{k}"
    return name


# -- reading -------------------------------------------------------------------------------------------------------

def read_rows(info: ds.DatasetInfo, split: str | None = None) -> list[dict]:
    """Index rows of the workspace's current version: base rows (minus deleted, with moved splits), then added.

    Each row has the columns of ``index.csv`` plus ``origin``: ``"base:<split>"`` or ``"added"`` (these also
    carry their ``id``), and ``generated`` (an added image of origin "generated"; left out while switched off).
    """
    head = read_header(info.path)
    state = read_json(info.path / head["state"])
    base = _base_info(head["base"])
    rows = []
    for r in ds.read_rows(base):
        row = {**r, "origin": f"base:{r['split']}", "generated": False, **state["base"].get(r["file"], {})}
        if not row.pop("deleted", False):
            rows.append(row)
    for rec in added_records(info.path, head):
        ch, made = state["added"].get(rec["id"], {}), is_generated(rec)
        if not ch.get("deleted") and not (made and state.get(GENERATED_OFF)):
            rows.append({"split": ch.get("split", rec["split"]), "class_id": ch.get("class_id", rec["class_id"]),
                         "file": rec["file"], "source": rec.get("source", ""), "track": rec.get("track", ""),
                         "orig_w": rec.get("orig_w", 0), "orig_h": rec.get("orig_h", 0), "origin": "added",
                         "id": rec["id"], "generated": made})
    return [r for r in rows if split is None or r["split"] == split]


def current_added(info: ds.DatasetInfo) -> list[dict]:
    """The added images of the current version, full records (provenance included) with their current split
    and class; ``deleted`` ones (in the trash) are left out."""
    head = read_header(info.path)
    state = read_json(info.path / head["state"])["added"]
    return [{**rec, **state.get(rec["id"], {})} for rec in added_records(info.path, head)
            if not state.get(rec["id"], {}).get("deleted")]


def is_generated(record: dict) -> bool:
    """Whether an added-image record (or a row of :func:`read_rows`) is a generated image."""
    return record.get("origin") == "generated" or record.get("generated") is True


def generated_in_use(info: ds.DatasetInfo) -> bool:
    """The one switch: whether the current version's splits hold its generated images (True unless switched off
    with :func:`core.data.workspace_changes.use_generated`; always True for a built dataset)."""
    if info.kind != "workspace":
        return True
    return not read_json(info.path / read_header(info.path)["state"]).get(GENERATED_OFF, False)


def generated_count(info: ds.DatasetInfo) -> int:
    """How many generated images the current version has (in use or switched off; 0 for a built dataset)."""
    return sum(map(is_generated, current_added(info))) if info.kind == "workspace" else 0


def added_records(path: Path, head: dict | None = None) -> list[dict]:
    """Every record of an added image (as added: provenance included; later moves are in the state file)."""
    head = head or read_header(path)
    return [rec for seg in head["segments"] for rec in read_json(path / SEGMENTS / seg)]


def load_split(info: ds.DatasetInfo, split: str) -> ds.SplitArrays:
    """A split of the workspace as arrays; images share the base's size (added ones are resized to it).

    An unchanged workspace hands out its base's arrays; a changed one reads its own cache for this version
    (keyed by the version, sized by the header's counts: no index is read), assembling it on the first read.
    """
    head = read_header(info.path)
    base = _base_info(head["base"])
    if not head["segments"] and read_json(info.path / head["state"]) == {"base": {}, "added": {}}:
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


def pictogram(info: ds.DatasetInfo, class_id: int) -> Path | None:
    """The reference image a user gave a workspace class, if any."""
    rel = read_header(info.path).get("pictograms", {}).get(str(class_id))
    return info.path / rel if rel else None


# -- writing a version ---------------------------------------------------------------------------------------------

def write_version(path: Path, head: dict, state: dict, new_records: list[dict]) -> None:
    """Write a new version of the workspace folder ``path``: a segment of ``new_records`` (if any) and the state
    file, then the header naming them (the commit), then drop state files neither it, the previous version nor an
    undo step names. Fills in ``head``'s ``segments``, ``state`` and ``version``."""
    if new_records:
        data = json.dumps(new_records, separators=(",", ":")).encode()
        seg = f"seg-{hashlib.sha256(data).hexdigest()[:16]}.json"
        atomic_write_bytes(path / SEGMENTS / seg, data)
        head["segments"] = head["segments"] + [seg]
    text = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
    previous = head.get("state")
    head["state"] = f"state-{hashlib.sha256(text).hexdigest()[:16]}.json"
    if not (path / head["state"]).is_file():
        atomic_write_bytes(path / head["state"], text)
    head["version"] = hashlib.sha256(json.dumps(
        [head[k] for k in ("base", "base_version", "classes", "segments", "state")],
        sort_keys=True).encode()).hexdigest()[:16]
    atomic_write_json(path / HEADER, head)
    keep = {head["state"], previous} | {u["state"] for u in head.get("undo", [])}
    for old in path.glob("state-*.json"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


# -- internals -----------------------------------------------------------------------------------------------------

def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: workspace file cannot be read ({e})") from None


def read_header(path: Path) -> dict:
    try:
        head = json.loads((path / HEADER).read_text(encoding="utf-8"))
        if head.get("format") != FORMAT:
            raise ValueError(f"format {head.get('format')!r}, expected {FORMAT}")
        return head
    except (OSError, ValueError) as e:
        raise ValueError(f"{path / HEADER}: not a valid workspace ({e})") from None


def require_workspace(name: str) -> None:
    """Raise the right message for a name that is not a workspace: unknown, or a built dataset."""
    if not is_workspace(name):
        _known_built(name)  # raises for an unknown name
        raise ValueError(f"{name!r} is a built dataset and never changes; derive a workspace from it first "
                         f"(python -m core datasets derive --from {name} --name {DEFAULT_NAME})")


def require_writable(name: str) -> None:
    """:func:`require_workspace`, then (demo mode) DemoRefused unless this session may change it: its own
    workspace, never another session's or a shared one."""
    require_workspace(name)
    owner = read_header(workspace_dir(name)).get(demo.SESSION_FIELD)
    demo.check_writable(owner, what=f"workspace {name!r}",
                        fix="create a workspace of your own (Add new classes or Add new images: Create a workspace)")


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
