"""The Explore page's Data issues: findings as tables (the image, its given label, the suggested one, the score;
a leak with its matching image beside it), rows picked with a tick, and the actions on the picked rows (relabel,
remove, move, send to the Extra bucket) with undo. Built datasets never change: acting on one derives a workspace
first, in the same click, and the page moves to it. Findings on generated images are marked (a "Generated"
column)."""
from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd
import streamlit as st

from core.analysis import label_actions
from core.analysis.data_issues import class_label
from core.analysis.issues_run import ShownIssues
from core.data import datasets, workspace_changes, workspaces
from core.data.images import encode_png, load_image
from ui.generated_views import findings_mark, generated_files
from ui.generate_views import more_like_these

#: Findings shown per list (worst first); the rest are counted.
SHOWN = 100
#: What the action picker offers, by list; the key is the action of :func:`core.analysis.label_actions.act`.
ACTION_LABELS = {"suggested": "Relabel to the suggested class", "relabel": "Relabel to a class I choose",
                 "remove": "Remove (to the trash)", "move": "Move to another split",
                 "extra": "Send to the Extra bucket (added images)"}


def plural(n: int, word: str = "image") -> str:
    return label_actions.plural(n, word)


@st.cache_data(max_entries=4096, show_spinner=False)
def _thumbnail(path: str) -> str:
    """A data URI of the image (the tables show it in an image column)."""
    try:
        data = encode_png(load_image(Path(path)))
    except (OSError, ValueError):
        return ""
    return "data:image/png;base64," + base64.b64encode(data).decode()


def findings_table(info: datasets.DatasetInfo, rows: list[dict], kind: str, *, key: str) -> list[dict]:
    """One list of findings as a table with a tick column; returns the ticked rows (at most :data:`SHOWN` rows
    are shown, worst first)."""
    shown = rows[:SHOWN]
    if len(rows) > SHOWN:
        st.caption(f"Showing the worst {SHOWN} of {plural(len(rows), 'finding')}; act on them and find again "
                   "for the next.")
    table = {"Pick": [False] * len(shown),  # ticks live in the editor's state (keyed by the dataset version)
             "Image": [_thumbnail(str(info.image_path(r["file"]))) for r in shown],
             "Label": [class_label(info, r["class_id"]) for r in shown]}
    if kind == "mislabelled":
        table["Suggested"] = [class_label(info, r["suggested"]) for r in shown]
        table["Self-confidence"] = [f"{r['score'] * 100:.1f} %" for r in shown]
    elif kind == "leaks":
        table["Matching image"] = [_thumbnail(str(info.image_path(r["near"]))) for r in shown]
        table["Its split"] = [r["near_split"] for r in shown]
        table["Its label"] = [class_label(info, r["near_class_id"]) for r in shown]
        table["Similarity"] = [f"{r['score']:.3f}" for r in shown]
    else:
        table["Novelty"] = [f"{r['score']:.2f}" for r in shown]
    marks = findings_mark(shown, generated_files(info.name, info.fingerprint))
    if marks is not None:
        table["Generated"] = marks
    table["Why"] = [r["reason"] for r in shown]
    table["File"] = [Path(r["file"]).name for r in shown]
    every = st.toggle("Pick every finding shown", key=f"{key}_every")
    edited = st.data_editor(pd.DataFrame(table), key=key, hide_index=True, width="stretch",
                            disabled=[c for c in table if c != "Pick"],
                            column_config={"Pick": st.column_config.CheckboxColumn("Pick", width="small"),
                                           "Image": st.column_config.ImageColumn("Image", width="small"),
                                           "Matching image": st.column_config.ImageColumn("Matching image",
                                                                                          width="small")})
    return list(shown) if every else [r for r, pick in zip(shown, edited["Pick"]) if pick]


def _act(dataset: str, refs: list[str], action: str, class_id, split, workspace: str, picker_key: str) -> None:
    """Button callback (runs before the page reruns, so it may move the dataset picker to a new workspace)."""
    try:
        result = label_actions.act(dataset, refs, action, class_id=class_id, split=split, workspace=workspace)
    except ValueError as e:
        st.session_state.issues_message = ("error", str(e))
        return
    st.session_state.issues_message = ("success", result.message[0].upper() + result.message[1:] + ".")
    if result.derived:
        st.session_state[picker_key] = result.dataset


def _undo(dataset: str) -> None:
    try:
        st.session_state.issues_message = ("success", f"Undone: {workspace_changes.undo(dataset)}.")
    except ValueError as e:
        st.session_state.issues_message = ("error", str(e))


def action_bar(info: datasets.DatasetInfo, picked: list[dict], kind: str, *, key: str,
               picker_key: str = "dataset") -> None:
    """The actions on the picked findings of one list (one change each, undoable)."""
    offered = [a for a in ACTION_LABELS if a != "suggested" or kind == "mislabelled"]
    c1, c2, c3 = st.columns([2, 2, 2])
    action = c1.selectbox("Action", offered, format_func=ACTION_LABELS.get, key=f"{key}_action")
    class_id, split = None, None
    if action == "relabel":
        class_id = c2.selectbox("Class", sorted(info.classes), key=f"{key}_class",
                                format_func=lambda c: class_label(info, c))
    elif action == "move":
        split = c2.selectbox("Split", datasets.SPLITS, key=f"{key}_split")
    if action == "suggested":
        action, class_id = "relabel", [int(r["suggested"]) for r in picked]
    workspace = ""
    if info.kind != "workspace":
        workspace = c3.text_input("Workspace to derive", value=workspaces.free_name(f"{info.name}-fixes"),
                                  key=f"{key}_workspace",
                                  help=f"{info.name} is a built dataset and never changes: the action derives "
                                       "this workspace from it first and acts there.")
    label = f"Apply to {plural(len(picked))}" + ("" if info.kind == "workspace" else " in a new workspace")
    st.button(label, key=f"{key}_apply", disabled=not picked, type="primary", on_click=_act,
              args=(info.name, [r["file"] for r in picked], action, class_id, split, workspace.strip(), picker_key))
    if st.button("Make more like these", key=f"{key}_generate", disabled=not picked, icon=":material/auto_awesome:",
                 help="Open Make more like these with the picked images as its source"):
        more_like_these(info.name, [r["file"] for r in picked])


def undo_bar(info: datasets.DatasetInfo, *, key: str) -> None:
    """The last change of a workspace, with a button that takes it back."""
    if info.kind != "workspace":
        return
    steps = workspace_changes.undo_list(info.name)
    if steps:
        st.button(f"Undo: {steps[-1]}", key=key, on_click=_undo, args=(info.name,))


def show_message() -> None:
    """The outcome of the last action or undo, once."""
    kind, text = st.session_state.pop("issues_message", (None, None))
    if kind == "error":
        st.error(text)
    elif kind == "success":
        st.success(text)


def stale_note(info: datasets.DatasetInfo, shown: ShownIssues) -> None:
    """Say that the findings come from an earlier version (or the base dataset) and what was left out."""
    if not shown.stale:
        return
    where = "an earlier version of this dataset" if shown.found_on == info.name else \
        f"{shown.found_on}, the dataset this workspace was derived from"
    hidden = f" {plural(shown.hidden, 'finding')} acted on since {'is' if shown.hidden == 1 else 'are'} hidden." \
        if shown.hidden else ""
    st.info(f"These findings were found on {where}.{hidden} Find again to look at the dataset as it is now.")


def show_findings(info: datasets.DatasetInfo, shown: ShownIssues, *, picker_key: str = "dataset") -> None:
    """The three lists as tabs, each a table with its actions."""
    found = shown.issues
    tabs = st.tabs([f"Likely mislabelled ({len(found.mislabelled):,})", f"Leakage ({len(found.leaks):,})",
                    f"Outliers ({len(found.outliers):,})"])
    empty = {"mislabelled": "No likely mislabelled images: the model confirms every label it can judge.",
             "leaks": "No image here looks like an image of another split.",
             "outliers": found.outlier_note or "No outliers: every image scores like the images the model knows."}
    for tab, kind in zip(tabs, ("mislabelled", "leaks", "outliers")):
        with tab:
            rows = getattr(found, kind)
            if kind == "leaks" and rows:
                pairs = sorted({r["pair"] for r in rows})
                st.caption("Pairs: " + ", ".join(f"{p} ({plural(sum(r['pair'] == p for r in rows))})"
                                                 for p in pairs))
            if kind == "outliers" and found.outlier_note and rows:
                st.caption(found.outlier_note)
            if not rows:
                st.success(empty[kind])
                continue
            # keyed by the dataset's version: after an action the ticks start afresh on the rows left
            picked = findings_table(info, rows, kind, key=f"issues_table_{kind}_{info.fingerprint}_{shown.run['id']}")
            action_bar(info, picked, kind, key=f"issues_{kind}", picker_key=picker_key)
