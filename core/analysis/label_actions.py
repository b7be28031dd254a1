"""Acting on data-issue findings: relabel, remove (to the trash), move to another split, or send to the Extra bucket,
one image or many at once, each action one undoable change of a workspace
(:mod:`core.data.workspace_changes`). Built datasets never change: acting on one derives a workspace from it first
(image ids, the files, carry into it), after every check has passed, so a bad request creates nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from core.base.text import plural
from core.data import datasets, workspace_changes, workspaces

#: What can be done to the images of a finding.
ACTIONS = ("relabel", "remove", "move", "extra")


@dataclass(frozen=True)
class ActionResult:
    dataset: str      # the workspace acted on (a new one when the request named a built dataset)
    count: int        # images asked for
    derived: bool     # whether the workspace was derived for this action
    message: str      # what was done, in plain words


def resolve_class(info: datasets.DatasetInfo, text: str | int) -> int:
    """A class of ``info`` given by id or by name (names compared without case); ValueError listing a few."""
    text = str(text).strip()
    if text.lstrip("-").isdigit() and int(text) in info.classes:
        return int(text)
    by_name = {n.casefold(): c for c, n in info.classes.items()}
    if text.casefold() in by_name:
        return by_name[text.casefold()]
    some = ", ".join(f"{c}: {n}" for c, n in sorted(info.classes.items())[:8])
    raise ValueError(f"{info.name} has no class {text!r}; give a class id or name, e.g. {some}"
                     f"{' ...' if len(info.classes) > 8 else ''} (python -m core classes list --dataset {info.name})")


def check_action(info: datasets.DatasetInfo, refs: Sequence[str], action: str, *,
                 class_id: int | Sequence[int] | None = None, split: str | None = None) -> list[str]:
    """Validate a request against ``info`` without changing anything (``class_id``: one for all images or one
    each); returns the refs."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; valid: {', '.join(ACTIONS)}")
    refs = [str(r) for r in refs]
    if not refs:
        raise ValueError("no images given: select at least one finding")
    if len(set(refs)) != len(refs):
        raise ValueError(f"{refs[0]!r} and others are given more than once; give each image once")
    if action == "relabel":
        targets = [class_id] * len(refs) if class_id is None or isinstance(class_id, int) else list(class_id)
        bad = [c for c in targets if c is None or int(c) not in info.classes]
        if bad or len(targets) != len(refs):
            raise ValueError(f"{info.name} has no class {bad[0] if bad else class_id!r}; pick one of its classes")
    if action == "move" and split not in datasets.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(datasets.SPLITS)}")
    rows = {r["file"]: r for r in datasets.read_index(info)}
    rows |= {r["id"]: r for r in rows.values() if r.get("origin") == "added"}
    unknown = [r for r in refs if r not in rows]
    if unknown:
        raise ValueError(f"{plural(len(unknown))} not in {info.name}, e.g. {unknown[0]!r}; find the issues "
                         "again to list its current images")
    if action == "extra":
        base = [r for r in refs if rows[r].get("origin") != "added"]
        if base:
            raise ValueError(f"{plural(len(base))} of the base dataset (e.g. {base[0]!r}): the Extra bucket holds "
                             "added images only; relabel or remove those instead")
    return refs


def act(dataset: str, refs: Sequence[str], action: str, *, class_id: int | Sequence[int] | None = None,
        split: str | None = None, workspace: str | None = None) -> ActionResult:
    """Apply ``action`` (:data:`ACTIONS`) to images ``refs`` (files, or added images' ids) of ``dataset``; a
    relabel takes one ``class_id`` for all or one per image (each finding's suggestion).
    ``dataset`` built: a workspace named ``workspace`` is derived from it first (ValueError without a name).
    Nothing is changed or created unless every check passes. :func:`core.data.workspace_changes.undo` on the
    workspace takes the action back."""
    info = datasets.get_dataset(dataset)
    refs = check_action(info, refs, action, class_id=class_id, split=split)
    name, derived = workspaces.change_target(info, workspace, doing="act")
    n = len(refs)
    if action == "relabel":
        workspace_changes.relabel_images(name, refs, class_id=class_id)
        one = isinstance(class_id, int) or len(set(class_id)) == 1
        cid = class_id if isinstance(class_id, int) else int(list(class_id)[0])
        msg = f"relabelled {plural(n)}" + (f" as {cid}: {info.classes[cid]}" if one else " to their suggestions")
    elif action == "remove":
        workspace_changes.delete_images(name, refs)
        msg = f"moved {plural(n)} to the trash"
    elif action == "move":
        workspace_changes.move_images(name, refs, split=split)
        msg = f"moved {plural(n)} to {split}"
    else:
        workspace_changes.move_images(name, refs, split=workspaces.EXTRA, class_id=workspaces.EXTRA_CLASS)
        msg = f"sent {plural(n)} to the Extra bucket"
    return ActionResult(name, n, derived, msg + (f" in the new workspace {name}" if derived else ""))
