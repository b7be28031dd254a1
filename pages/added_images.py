"""Added images: everything users added to a workspace; filter, page, move between splits, edit, delete, undo.
Generated images carry a badge (and "switched off" while the workspace leaves them out)."""
from __future__ import annotations

import streamlit as st

from core.data import datasets, workspace_changes, workspaces
from core.curation import added as curation_added
from core.data.export import plural, provenance_text
from core.data.images import load_image
from ui.export_views import workspace_download
from ui.generated_views import MARK, badge
from ui.widgets import pick_workspace
from ui.nav import ensure_router

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it

COLUMNS = 8
SPLIT_CHOICES = datasets.SPLITS + (workspaces.EXTRA,)


@st.cache_data(show_spinner=False, max_entries=8)
def added(name: str, version: str) -> list[dict]:
    """The workspace's added-image records, cached per version (a change makes a new version)."""
    return workspaces.current_added(datasets.get_dataset(name))


def act(fn, *args, **kwargs) -> None:
    """Run a change (a button callback); keep its message for the rerun that shows the new state, and clear
    the selection it acted on."""
    try:
        st.session_state.added_flash = ("success", fn(*args, **kwargs))
        for key in [k for k in st.session_state if str(k).startswith("added_sel_")]:
            st.session_state[key] = False
    except ValueError as e:
        st.session_state.added_flash = ("error", str(e))


st.title("Added images")
info = pick_workspace(key="added_ws")
if info is None:
    st.info("Create a workspace above, then add images on the Add new images page.")
    st.stop()
kind, text = st.session_state.pop("added_flash", (None, None))
if kind:
    getattr(st, kind)(text)
records = added(info.name, info.fingerprint)
switched_off = not workspaces.generated_in_use(info)
with st.expander("Download this workspace (zip)", icon=":material/download:"):
    workspace_download(info.name)


def class_label(cid: int) -> str:
    """'14: Stop', or 'Extra' for the images without a class yet."""
    return "Extra (no class yet)" if cid == workspaces.EXTRA_CLASS else f"{cid}: {info.classes.get(cid, '?')}"


c = st.columns([2, 1, 2, 1, 1, 1])
class_id = c[0].selectbox("Class", [None] + sorted({r["class_id"] for r in records}), key="added_class",
                          persist_state="session",
                          format_func=lambda x: "All classes" if x is None else class_label(x))
split = c[1].selectbox("Split", (None,) + SPLIT_CHOICES, key="added_split",
                       persist_state="session", format_func=lambda s: s or "All")
batch = c[2].selectbox("Upload batch", [None] + sorted({r.get("batch") for r in records if r.get("batch")},
                                                       reverse=True), key="added_batch", persist_state="session",
                       format_func=lambda b: b or "All batches")
aug = c[3].selectbox("Augmented", [None, True, False], key="added_aug", persist_state="session",
                     format_func={None: "Either", True: "Variants", False: "Uploads"}.get)
gen = c[4].selectbox("Generated", [None, True, False], key="added_generated", persist_state="session",
                     format_func={None: "Either", True: "Generated only", False: "Hide generated"}.get)
page_size = c[5].selectbox("Per page", [24, 48, 96], index=1, key="added_page_size", persist_state="session")
flt = (class_id, split, batch, aug, gen, page_size, info.name)
if st.session_state.get("added_filter") != flt:
    st.session_state.added_filter, st.session_state.added_page = flt, 1
res = curation_added.list_added(records, class_id=class_id, split=split, batch=batch, augmented=aug, generated=gen,
                                page=st.session_state.added_page, page_size=page_size)

nav = st.columns([1, 1, 3, 2])
nav[0].button("\u2190 Previous", disabled=res.page <= 1, key="added_prev",
              on_click=lambda: st.session_state.update(added_page=res.page - 1))
nav[1].button("Next \u2192", disabled=res.page >= res.pages, key="added_next",
              on_click=lambda: st.session_state.update(added_page=res.page + 1))
nav[2].markdown(f"Page **{res.page} / {res.pages}** \u00b7 {res.total:,} of {plural(len(records), 'added image')}")
undo_label = (workspace_changes.undo_list(info.name) or ["nothing"])[-1]
nav[3].button(f"Undo: {undo_label}", key="added_undo", disabled=undo_label == "nothing",
              on_click=act, args=(lambda: f"Undone: {workspace_changes.undo(info.name)}",))

if not res.records:
    st.info("No added images in this selection.")
    st.stop()
cols = st.columns(COLUMNS)
for i, r in enumerate(res.records):
    with cols[i % COLUMNS]:
        made = workspaces.is_generated(r)
        st.image(str(info.image_path(r["file"])), width=72, caption=(f"{MARK} " if made else "")
                 + f"{r['id']} {r['split']}" + ("*" if curation_added.is_augmented(r) else ""))
        if made:
            st.markdown(badge(switched_off=switched_off))
        # a switched-off generated image is in no split: switch them on to move, edit or delete it
        st.checkbox("select", key=f"added_sel_{r['id']}", label_visibility="collapsed", disabled=made and switched_off)
chosen = [r["id"] for r in res.records if st.session_state.get(f"added_sel_{r['id']}")
          and not (switched_off and workspaces.is_generated(r))]
st.caption("\\* an augmented variant of an upload; \u2726 generated (Explore has the switch that leaves generated "
           "images out of training and evaluation). Tick images to move or delete them.")

st.subheader(f"{len(chosen)} selected")
c = st.columns([1, 1, 1, 2])
target = c[0].selectbox("Move to", datasets.SPLITS, key="added_target", persist_state="session")
force = target == "test" and any(workspaces.is_generated(r) for r in res.records if r["id"] in chosen) and \
    c[3].checkbox("Allow generated images in test (warning: the test then measures the generator, not the model)",
                  key="added_force_test")
moved = lambda: workspace_changes.move_images(info.name, chosen, split=target, force=force)  # noqa: E731
c[1].button("Move", key="added_move", disabled=not chosen, on_click=act,
            args=(lambda: f"Moved {plural(moved(), 'image')} to {target}.",))
c[2].button("Delete", key="added_delete", disabled=not chosen, on_click=act,
            args=(lambda: f"Moved {plural(workspace_changes.delete_images(info.name, chosen), 'image')} to the "
                          "trash (Undo brings them back).",))

st.subheader("Edit one image")
rec = st.selectbox("Image", res.records, key="added_edit_pick", persist_state="session",
                   format_func=lambda r: f"{r['id']}: {r.get('upload', r['source'])} ({r['split']}, "
                                         f"{class_label(r['class_id'])})")
image = load_image(info.image_path(rec["file"]))
h, w = image.shape[:2]
c = st.columns([2, 2, 1, 1])
x0, x1 = c[0].slider("Crop left / right", 0, w, (0, w), key=f"added_cx_{rec['id']}")
y0, y1 = c[1].slider("Crop top / bottom", 0, h, (0, h), key=f"added_cy_{rec['id']}")
rotate = c[2].selectbox("Rotate", curation_added.ROTATIONS, key="added_rotate",
                        persist_state="session", format_func=lambda a: f"{a}\u00b0")
flip = c[3].selectbox("Flip", curation_added.FLIPS, key="added_flip",
                      persist_state="session", format_func=lambda f: f or "none")
crop = (x0, y0, x1, y1) if (x0, y0, x1, y1) != (0, 0, w, h) else None
p = st.columns([1, 1, 3])
p[0].image(image, width=120, caption=f"now {w}\u00d7{h}")
try:
    edited = curation_added.apply_edit(image, crop=crop, rotate=rotate, flip=flip)
    p[1].image(edited, width=120, caption=f"edited {edited.shape[1]}\u00d7{edited.shape[0]}")
    p[2].caption((f"{badge(switched_off=switched_off)} " if workspaces.is_generated(rec) else "")
                 + f"Provenance: {provenance_text(rec)}"
                 + (f"; replaces image {rec['parent']}" if rec.get("parent") else "")
                 + (f"; added in batch {rec['batch']}" if rec.get("batch") else ""))
    p[2].button("Save as a new version", key="added_save", disabled=crop is None and not rotate and flip is None,
                on_click=act, args=(lambda: "Saved as " + curation_added.edit_image(
                    info.name, rec["id"], crop=crop, rotate=rotate, flip=flip) + f" (parent {rec['id']}).",))
except ValueError as e:
    p[1].error(str(e))
