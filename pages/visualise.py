"""Visualise classes: a map of what the model sees, new images placed into it, groups that may be new classes, and
giving a group a class (new or existing, dealt to train, val and test)."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.analysis import embedding
from core.analysis.embed_run import EmbedRun
from core.analysis.embedding import class_label, percent
from core.curation import added
from core.curation.importing import plural
from core.data import uploads
from core.data.datasets import SPLITS
from core.data.images import resize_to_input
from ui.cache import load_model, novelty_detector
from ui.generate_views import more_like_these
from ui.map_views import GROUP_SHAPES, compute_button, load_map, place_new, style
from ui.nav import ensure_router
from ui.widgets import pick_dataset, pick_model, pick_novelty_method

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it

GRID = 10
#: Thumbnails per page of a selection.
PAGE = 40



st.title("Visualise classes")
if "vis_flash" in st.session_state:
    st.success(st.session_state.pop("vis_flash"))
c1, c2, c3 = st.columns([2, 2, 1])
with c1:
    model = pick_model(key="vis_model")
with c2:
    info = pick_dataset(key="vis_dataset")
split = c3.selectbox("Split", SPLITS, key="vis_split", persist_state="session")
if model is None or info is None:
    st.stop()
cfg = EmbedRun(model=model.name, dataset=info.name, split=split)
view = embedding.view_id(cfg.key())  # every key below: nothing of another model's or dataset version's map is kept
run_key = f"vis_run_{view}"
path = embedding.latest_map(cfg.key())
if path is None:
    st.info(f"No map yet for {model.name} on {info.name}/{split}: a stratified sample of up to "
            f"{embedding.MAP_SIZE:,} images, laid out once (the bar shows the time left once it is under way), "
            "then cached.")
    compute_button(cfg, run_key, "Compute map")
    st.stop()
ref = load_map(str(path))
stale = ref.is_stale(info.fingerprint)
if stale:
    st.warning("The dataset has changed since this map was made (images added, moved or given a class): the map "
               "shows it as it was, without thumbnails. Compute it again to see the dataset as it is now.")
    compute_button(cfg, run_key, "Compute the map again")

names = dict(info.classes)
c1, c2 = st.columns([3, 2])
colour_by = c1.radio("Colour by", embedding.COLOUR_BY, horizontal=True, key="vis_colour", persist_state="session")
in_map = sorted(set(map(int, ref.predicted)) | set(map(int, ref.labels)))
shown = c2.multiselect("Only these classes (true or predicted)", in_map, key=f"vis_classes_{view}",
                       format_func=lambda c: class_label(c, names), placeholder="All classes")
table, order = embedding.point_table(ref, names, colour_by=colour_by)
if shown:
    table = table[np.isin(ref.predicted, shown) | np.isin(ref.labels, shown)]
looks = style([class_label(c, names) for c in in_map] if "class" in colour_by else order)  # a class keeps its colour
fig = go.Figure()
for label in order:
    part = table[table["colour"] == label]
    if part.empty:  # filtered out
        continue
    colour, shape = looks[label]
    fig.add_trace(go.Scattergl(x=part["x"], y=part["y"], mode="markers", name=label, text=part["hover"],
                               customdata=np.c_[np.zeros(len(part), int), part["i"]].tolist(),
                               hovertemplate="%{text}<extra></extra>", opacity=0.75,
                               marker=dict(size=5, color=colour, symbol=shape)))

source = st.radio("New images", ["none", "upload", "Extra bucket"] if info.kind == "workspace" else ["none", "upload"],
                  horizontal=True, key="vis_source", persist_state="session")
new_images, new_ids, new_names = [], [], []
if source == "upload":
    files = st.file_uploader("Images or a zip", accept_multiple_files=True, key="vis_files",
                             type=["png", "jpg", "jpeg", "ppm", "bmp", "webp", "zip"])
    found = [u for f in files or [] for u in uploads.read_bytes(f.name, f.getvalue())]
    for u in found:
        if u.error:
            st.error(u.error)
    new_images, new_names = [u.image for u in found if u.ok], [u.name for u in found if u.ok]
elif source == "Extra bucket":
    new_images, new_ids = embedding.extra_bucket(info)
    new_names = [f"Extra image {i}" for i in new_ids]
    if not new_images:
        st.caption("The Extra bucket is empty: add unlabelled images to it on Add new images.")
placed, groups = None, []
if new_images:
    small = np.stack([resize_to_input(im) for im in new_images])
    method = pick_novelty_method(key="vis_novelty")
    placed = place_new(str(path), str(model.path), tuple(im.tobytes() for im in small), small.shape, method)
    groups = placed.groups
    group_of = placed.group_of()
    for k in sorted(set(group_of)):
        idx = np.flatnonzero(group_of == k)
        labels = [class_label(c, names) for c in placed.predicted[idx]]
        fig.add_trace(go.Scatter(
            x=placed.coords[idx, 0], y=placed.coords[idx, 1], mode="markers",
            customdata=np.c_[np.ones(len(idx), int), idx].tolist(),
            name=f"new: group {k + 1}" if k >= 0 else "new images",
            text=[f"{new_names[j]}<br>{'group ' + str(k + 1) if k >= 0 else 'new image'}<br>predicted {lab} "
                  f"({percent(placed.confidence[j])})" for j, lab in zip(idx, labels)],
            hovertemplate="%{text}<extra></extra>",
            marker=dict(size=13, symbol=GROUP_SHAPES[k % len(GROUP_SHAPES)] if k >= 0 else "x",
                        color=[looks.get(lab, ("#444444",))[0] if "class" in colour_by else "#444444"
                               for lab in labels],
                        line=dict(width=1.5, color="black"))))
fig.update_layout(height=680, margin=dict(t=10, b=10, l=10, r=10), dragmode="select",
                  legend=dict(orientation="h", yanchor="top", y=-0.04, x=0, font=dict(size=10), itemsizing="constant"))
fig.update_xaxes(showticklabels=False, title=None)
fig.update_yaxes(showticklabels=False, title=None)
st.subheader(f"What {model.name} sees: {info.name}/{split}, {plural(len(ref.files), 'image')}")
st.caption("Drag a box or lasso around points to see their images; hover a point for its class, file and "
           "confidence. New images are the large outlined markers, one shape per group.")
event = st.plotly_chart(fig, on_select="rerun", selection_mode=("box", "lasso"), key=f"vis_map_{view}",
                        config={"displaylogo": False})
points = (event or {}).get("selection", {}).get("points", [])
picked = embedding.selected_points(points, n_map=len(ref.files), n_new=len(new_images))
if picked:
    pages = math.ceil(len(picked) / PAGE)
    st.subheader(f"{plural(len(picked), 'image')} selected")
    mine = [ref.files[i] for kind, i in picked if kind == 0]
    if mine and not stale and st.button("Make more like these", key=f"vis_more_{view}", icon=":material/auto_awesome:",
                                        help=f"Open Make more like these with the {plural(len(mine), 'image')} of "
                                             "the map selected"):
        more_like_these(info.name, mine, model=model.name)
    page = st.number_input("Page", 1, pages, 1, key=f"vis_page_{view}") if pages > 1 else 1
    first = (int(page) - 1) * PAGE
    part = picked[first:first + PAGE]
    st.caption(f"Showing {first + 1}-{first + len(part)} of {len(picked)}" + (" (page through the rest)" if pages > 1
                                                                              else ""))
    if stale and any(kind == 0 for kind, _ in part):
        st.caption("The map's own images are not shown: the dataset has changed since it was made.")
    cols = st.columns(GRID)
    for k, (kind, i) in enumerate((kind, i) for kind, i in part if kind == 1 or not stale):
        image = new_images[i] if kind else str(info.image_path(ref.files[i]))
        c, p = (placed.predicted[i], placed.confidence[i]) if kind else (ref.predicted[i], ref.confidence[i])
        cols[k % GRID].image(image, width=56, caption=f"{class_label(c, names)[:16]} {percent(p)}")

if new_images and not groups:
    st.caption("No novelty check for this model (" + (novelty_detector(str(model.path))[1] or "") + "), so the new "
               "images are placed but not grouped.")
if groups:
    st.subheader("Groups of new images")
    if info.kind != "workspace":
        st.caption("To give a group a class, choose a workspace as the dataset (Add new classes makes one).")
for n, g in enumerate(groups):
    key = f"vis_{view}_{n}"  # the view names the dataset version: a class made from one group renews every key
    with st.container(border=True):
        guess = class_label(g.predicted, names)
        if g.known:
            verdict = f"probably a known class: recognised as {guess} ({percent(g.confidence)} on average)"
        else:
            flag = ":red[**likely a new class**]" if g.likely_new else "probably a known class"
            verdict = (f"{flag} \u2014 {percent(g.agreement)} predicted as {guess}, novelty {g.novelty:.2f}, "
                       f"distance to the nearest class {g.class_distance:.2f}")
        st.markdown(f"**Group {n + 1}** ({plural(len(g.members), 'image')}): {verdict}")
        cols = st.columns(GRID)
        for k, i in enumerate(g.members[:GRID]):
            cols[k].image(new_images[i], width=56)
        if len(g.members) > GRID:
            st.caption(f"Showing {GRID} of {len(g.members)}.")
        if info.kind != "workspace":
            continue
        c1, c2, c3 = st.columns([2, 3, 2])
        mode = c1.radio("Give them", ["a new class", "an existing class"], key=f"{key}_mode",
                        index=1 if g.known else 0)
        if mode == "a new class":
            name = c2.text_input("New class name", key=f"{key}_name",
                                 value=added.suggest_class_name(names, like=names.get(g.predicted)))
            target = dict(class_name=name)
        else:
            ids = sorted(names)
            cid = c2.selectbox("Class", ids, key=f"{key}_class", format_func=lambda c: class_label(c, names),
                               index=ids.index(g.predicted) if g.predicted in ids else 0)
            target = dict(class_id=cid)
        c3.caption(f"{percent(added.GROUP_VAL)} go to val, {percent(added.GROUP_TEST)} to test, the rest to train "
                   "(smart segregation, as on Add new images).")
        if c3.button(f"Give {plural(len(g.members), 'image')} this class", key=f"{key}_go", type="primary"):
            images = [new_images[i] for i in g.members]
            try:
                refs = [new_ids[i] for i in g.members] if new_ids else None
                splits = added.split_group(images, model=load_model(str(model.path))[1],
                                           families=added.families(info, refs) if refs else None)
                them = dict(refs=refs) if refs else dict(images=images, sources=[new_names[i] for i in g.members])
                st.session_state.vis_flash = added.label_group(info.name, splits, **target, **them).message()
                st.rerun()
            except ValueError as e:
                st.error(str(e))
