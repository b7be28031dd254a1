"""Add new classes: give a workspace a new class (name, optional reference picture), rename or remove one."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.curation.importing import plural
from core.data import datasets, workspace_changes, workspaces
from core.data.images import ImageError, load_image
from ui.widgets import pick_workspace
from ui.nav import ensure_router

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it


def change(fn, *args, done, **kwargs) -> None:
    """Apply a change; on success rerun so every widget shows the new classes, with the message kept (``done``: the
    message, or a function of the change's result that makes it)."""
    try:
        result = fn(*args, **kwargs)
    except (ValueError, ImageError) as e:
        st.error(str(e))
        return
    st.session_state.classes_flash = done(result) if callable(done) else done
    st.rerun()


st.title("Add new classes")
info = pick_workspace(key="classes_ws")
if info is None:
    st.info("Create a workspace above: classes and images are added to a workspace, never to a built dataset.")
    st.stop()
if "classes_flash" in st.session_state:
    st.success(st.session_state.pop("classes_flash"))

with st.form("add_class_form", clear_on_submit=True):
    st.subheader("New class")
    c1, c2 = st.columns([2, 2])
    name = c1.text_input("Class name", key="classes_name",
                         persist_state="session", placeholder="e.g. Speed limit (100km/h, China)",
                         help="Unique in the workspace (case does not matter); spaces are trimmed.")
    picture = c2.file_uploader("Reference picture (optional, shown as the class pictogram)",
                               type=["png", "jpg", "jpeg", "ppm", "bmp", "webp"], key="classes_picture")
    if st.form_submit_button("Add class", type="primary"):
        try:
            image = load_image(picture.getvalue(), name=picture.name) if picture else None
        except ImageError as e:
            st.error(str(e))
        else:
            text = " ".join(name.split())
            change(workspace_changes.add_class, info.name, name, pictogram=image,
                   done=lambda cid: f"Added class {cid}: {text}. Add its images on the Add new images page, or "
                                    "give it a group of images on Visualise classes.")

left, right = st.columns(2)
ids = sorted(info.classes)
with left.form("rename_class_form"):
    st.markdown("**Rename a class**")
    cid = st.selectbox("Class", ids, key="classes_rename_id",
                       persist_state="session", format_func=lambda c: f"{c}: {info.classes[c]}")
    new = st.text_input("New name", key="classes_rename_name", persist_state="session")
    if st.form_submit_button("Rename"):
        change(workspace_changes.rename_class, info.name, cid, new,
               done=f"Class {cid}: {info.classes[cid]} is now called {' '.join(new.split())}.")
with right.form("remove_class_form"):
    st.markdown("**Remove an empty class**")
    cid = st.selectbox("Class", ids, key="classes_remove_id",
                       persist_state="session", format_func=lambda c: f"{c}: {info.classes[c]}")
    if st.form_submit_button("Remove"):
        change(workspace_changes.remove_class, info.name, cid, done=f"Removed class {cid}: {info.classes[cid]}.")

st.subheader(f"Classes of {info.name}")
counts = {s: info.counts.get(s, {}) for s in datasets.SPLITS}
table = pd.DataFrame([{"id": c, "name": n, **{s: counts[s].get(c, 0) for s in datasets.SPLITS},
                       "added here": c not in datasets.get_dataset(info.base).classes}
                      for c, n in sorted(info.classes.items())])
st.dataframe(table, hide_index=True, width="stretch", height=260)
n_extra = info.split_size(workspaces.EXTRA)
st.caption(f"Extra bucket: {plural(n_extra, 'unlabelled image')} waiting for a class (add to it on Add new images; "
           "give its groups a class on Visualise classes).")
own = [(c, workspaces.pictogram(info, c)) for c in sorted(info.classes)]
own = [(c, p) for c, p in own if p]
if own:
    cols = st.columns(min(8, len(own)))
    for k, (c, p) in enumerate(own[:8]):
        cols[k].image(str(p), width=64, caption=f"{c}: {info.classes[c][:18]}")

