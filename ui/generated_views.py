"""Generated images in the pages: the mark they carry (thumbnail captions, badges, a findings column), the one switch
that leaves them out of training and evaluation (:func:`core.data.workspace_changes.use_generated`), and the
filter that hides them from a grid. The rule itself lives in :mod:`core.data.workspaces`."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.base.text import plural
from core.data import datasets, workspace_changes, workspaces

#: The mark of a generated image in a thumbnail caption or a table cell (kept short: captions sit under 72 px).
MARK = "\u2726 gen"
#: The badge beside a generated image's provenance (Streamlit markdown).
BADGE = ":violet-badge[generated]"
OFF_BADGE = ":gray-badge[switched off]"


@st.cache_data(show_spinner=False, max_entries=16)
def generated_files(name: str, version: str) -> frozenset[str]:
    """The files of a workspace's generated images (switched off or not), cached per version; empty for a built
    dataset."""
    info = datasets.get_dataset(name)
    if info.kind != "workspace":
        return frozenset()
    return frozenset(r["file"] for r in workspaces.current_added(info) if workspaces.is_generated(r))


@st.cache_data(show_spinner=False, max_entries=16)
def generated_total(name: str, version: str) -> int:
    """How many generated images a workspace version has (two identical ones share a file but count twice)."""
    return workspaces.generated_count(datasets.get_dataset(name))


def thumb_captions(rows: list[dict], paths: list[Path]) -> list[str]:
    """A grid's captions: "14 · 3a9f0c1d", and "✦ gen 14 · 3a9f0c1d" for a generated image."""
    return [f"{MARK + ' ' if r.get('generated') else ''}{r['class_id']} \u00b7 {p.stem[-8:]}"
            for r, p in zip(rows, paths)]


def badge(*, switched_off: bool) -> str:
    """The markdown badge of a generated record, with "switched off" while the workspace leaves them out."""
    return BADGE + (f" {OFF_BADGE}" if switched_off else "")


def _switch(name: str, use: bool) -> None:
    try:
        st.session_state.generated_flash = ("success", workspace_changes.use_generated(name, use))
    except ValueError as e:
        st.session_state.generated_flash = ("error", str(e))


def generated_controls(info: datasets.DatasetInfo, *, key: str) -> bool | None:
    """For a workspace with generated images: the one switch (a toggle that writes a new version, undoable) with
    how many there are, and a "Hide generated" toggle for the grid. Returns the ``generated`` filter of
    :func:`core.data.browse.browse`: False to hide them, None to show every image."""
    kind, text = st.session_state.pop("generated_flash", (None, None))
    if kind:
        getattr(st, kind)(text)
    total = generated_total(info.name, info.fingerprint)
    if not total:
        return None
    in_use = workspaces.generated_in_use(info)
    left, right = st.columns([3, 1])
    # keyed by the version: after the switch (or an undo elsewhere) the toggle starts from the state on disk
    left.toggle("Use generated images in training and evaluation", value=in_use, key=f"{key}_use_{info.fingerprint}",
                on_change=_switch, args=(info.name, not in_use))
    left.caption(f"{plural(total, 'generated image')} in this workspace, "
                 + ("in use: training, evaluation and Data issues see them." if in_use else
                    "switched off: training, evaluation and this page leave them out (one change; undo restores)."))
    hide = right.toggle("Hide generated", key=f"{key}_hide", persist_state="session", disabled=not in_use)
    return False if hide else None


def findings_mark(rows: list[dict], generated: frozenset[str]) -> list[str] | None:
    """The "Generated" column of a findings table: the mark on a finding whose image (or, for a leak, its matching
    image) is generated; None when no row has one (the column is left out)."""
    marks = [" + ".join(m for m, f in ((MARK, r["file"]), (f"match {MARK}", r.get("near"))) if f in generated)
             for r in rows]
    return marks if any(marks) else None
