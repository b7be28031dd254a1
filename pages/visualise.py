"""Visualise classes: a map of what the model sees, new images placed into it, groups that may be new classes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core.analysis import embedding
from core.data import uploads, workspace_changes
from core import runs
from core.analysis.embed_run import EmbedRun
from core.data.datasets import SPLITS
from core.data.images import resize_to_input
from ui.nav import ensure_router, rerun_page
from ui.cache import load_model, novelty_detector
from ui.widgets import pick_dataset, pick_model, pick_novelty_method, run_status

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it

GRID = 10


@st.cache_data(show_spinner=False, max_entries=4)
def load_map(path: str) -> embedding.Map:
    return embedding.Map.load(path)


@st.cache_resource(show_spinner=False, max_entries=4)
def placer(path: str) -> embedding.Placer:
    return embedding.Placer(load_map(path))


@st.cache_data(show_spinner="Placing the new images into the map...", max_entries=8)
def place_new(path: str, model_path: str, images: tuple[bytes, ...], shape: tuple[int, ...],
              method: str) -> embedding.Placement:
    ckpt, model = load_model(model_path)
    arr = np.frombuffer(b"".join(images), np.uint8).reshape(shape)
    return embedding.place_new_images(placer(path), model, list(arr), class_ids=ckpt["class_ids"],
                                      detector=novelty_detector(model_path)[0], method=method)


st.title("Visualise classes")
c1, c2, c3 = st.columns([2, 2, 1])
with c1:
    model = pick_model(key="vis_model")
with c2:
    info = pick_dataset(key="vis_dataset")
split = c3.selectbox("Split", SPLITS, key="vis_split")
if model is None or info is None:
    st.stop()
cfg = EmbedRun(model=model.name, dataset=info.name, split=split)
path = embedding.map_path(cfg.key())
if not path.is_file():
    st.info(f"No map yet for {model.name} on {info.name}/{split}: a stratified sample of up to "
            f"{embedding.MAP_SIZE:,} images, laid out once (about 10 s for 5,000 on 2 cores), then cached.")
    if st.button("Compute map", type="primary", key="vis_compute"):
        try:
            st.session_state.vis_run = runs.start("embed", cfg)
        except ValueError as e:
            st.error(str(e))

    @st.fragment(run_every=1.0)
    def progress() -> None:
        run = runs.get(st.session_state.get("vis_run", "")) if st.session_state.get("vis_run") else None
        if run is not None:
            run_status(run)
            if run["status"] == "done":
                rerun_page()

    progress()
    st.stop()

ref = load_map(str(path))
names = dict(info.classes)
colour = st.radio("Colour by", ["predicted", "true"], horizontal=True, key="vis_colour")
df = pd.DataFrame({"x": ref.coords[:, 0], "y": ref.coords[:, 1], "i": np.arange(len(ref.files)),
                   "class": [f"{c}: {names.get(int(c), '?')}" for c in (ref.predicted if colour == "predicted"
                                                                       else ref.labels)],
                   "confidence": ref.confidence, "file": ref.files})
order = sorted(df["class"].unique(), key=lambda c: int(c.split(":")[0]))
fig = px.scatter(df, x="x", y="y", color="class", custom_data=["i"], category_orders={"class": order}, hover_data={"file": True, "confidence": ":.2f",
                 "x": False, "y": False, "i": False}, height=640, opacity=0.75)
fig.update_traces(marker=dict(size=5))

source = st.radio("New images", ["none", "upload", "Extra bucket"] if info.kind == "workspace" else ["none", "upload"],
                  horizontal=True, key="vis_source")
new_images, new_ids = [], []
if source == "upload":
    files = st.file_uploader("Images or a zip", accept_multiple_files=True, key="vis_files",
                             type=["png", "jpg", "jpeg", "ppm", "bmp", "webp", "zip"])
    found = [u for f in files or [] for u in uploads.read_bytes(f.name, f.getvalue())]
    for u in found:
        if u.error:
            st.error(u.error)
    new_images = [u.image for u in found if u.ok]
elif source == "Extra bucket":
    new_images, new_ids = embedding.extra_bucket(info)
    if not new_images:
        st.caption("The Extra bucket is empty: add unlabelled images to it on Add new images.")
groups = []
if new_images:
    small = np.stack([resize_to_input(im) for im in new_images])
    method = pick_novelty_method(key="vis_novelty")
    placed = place_new(str(path), str(model.path), tuple(im.tobytes() for im in small), small.shape, method)
    groups = placed.groups
    fig.add_trace(go.Scatter(x=placed.coords[:, 0], y=placed.coords[:, 1], mode="markers", name="new images",
                             marker=dict(symbol="x", size=12, color="black", line=dict(width=2))))
st.caption("Drag a box or lasso around points to see their images.")
event = st.plotly_chart(fig, on_select="rerun", selection_mode=("box", "lasso"), key="vis_map")
picked = [int(p["customdata"][0]) for p in (event or {}).get("selection", {}).get("points", [])
          if p.get("customdata")]
if picked:
    st.subheader(f"{len(picked)} selected")
    if ref.is_stale(info.fingerprint):
        st.warning("The dataset has changed since this map was made: compute it again to see its images.")
    else:
        cols = st.columns(GRID)
        for k, i in enumerate(picked[:4 * GRID]):
            cols[k % GRID].image(str(info.image_path(ref.files[i])), width=56,
                                 caption=f"{ref.predicted[i]} ({ref.confidence[i]:.0%})")

if new_images and not groups:
    st.caption("No novelty check for this model (" + (novelty_detector(str(model.path))[1] or "") + "), so the new "
               "images are placed but not grouped.")
if groups:
    st.subheader("Groups of new images")
    for n, g in enumerate(groups):
        with st.container(border=True):
            flag = ":red[**likely a new class**]" if g.likely_new else "probably a known class"
            st.markdown(f"**Group {n + 1}** ({len(g.members)} images): {flag} \u2014 novelty {g.novelty:.2f}, "
                        f"entropy {g.entropy:.2f}, {g.agreement:.0%} predicted as {g.predicted}: "
                        f"{names.get(g.predicted, '?')}, distance to nearest class {g.class_distance:.2f}")
            cols = st.columns(GRID)
            for k, i in enumerate(g.members[:GRID]):
                cols[k].image(new_images[i], width=56)
            if new_ids and g.likely_new:
                name = st.text_input("New class name", key=f"vis_name_{n}")
                if st.button("Create a class from this group", key=f"vis_create_{n}", disabled=not name.strip()):
                    try:
                        cid = workspace_changes.class_from_images(info.name, name, [new_ids[i] for i in g.members],
                                                                  split="train")
                        st.success(f"Class {cid} created; its {len(g.members)} images moved to train.")
                    except ValueError as e:
                        st.error(str(e))
