"""Explore dataset: a paged thumbnail grid like a file explorer, per-class counts, one image's details."""
from __future__ import annotations

import plotly.express as px
import streamlit as st

from core import browse
from core.datasets import SPLITS
from pages._ui import ensure_router, cached_index, pick_dataset

COLUMNS = 8

ensure_router()
st.title("Explore dataset")
info = pick_dataset()
if info is None:
    st.stop()
index = cached_index(info.name, info.fingerprint)

c1, c2, c3 = st.columns([1, 3, 1])
split = c1.selectbox("Split", SPLITS, key="explore_split")
class_options = [None] + sorted(info.classes)
class_id = c2.selectbox("Class", class_options, key="explore_class",
                        format_func=lambda c: "All classes" if c is None else f"{c}: {info.classes[c]}")
page_size = c3.selectbox("Per page", [12, 24, 48, 96], index=2, key="explore_page_size")

# Page state survives reruns; it resets when the filter changes.
filter_key = (info.name, split, class_id, page_size)
if st.session_state.get("explore_filter") != filter_key:
    st.session_state.explore_filter = filter_key
    st.session_state.explore_page = 1
result = browse.browse(info, split=split, class_id=class_id, page=st.session_state.explore_page,
                       page_size=page_size, index=index)



def turn_page(delta: int) -> None:
    st.session_state.explore_page = result.page + delta


nav = st.columns([1, 1, 4])
nav[0].button("\u2190 Previous", disabled=result.page <= 1, key="explore_prev", on_click=turn_page, args=(-1,))
nav[1].button("Next \u2192", disabled=result.page >= result.pages, key="explore_next", on_click=turn_page, args=(1,))
nav[2].markdown(f"Page **{result.page} / {result.pages}** \u00b7 {result.total:,} images")

if not result.rows:
    st.info("No images in this selection.")
else:
    cols = st.columns(COLUMNS)
    for i, (row, path) in enumerate(zip(result.rows, result.paths)):
        with cols[i % COLUMNS]:
            st.image(str(path), width=72, caption=f"{row['class_id']} \u00b7 {path.stem[-14:]}")

    st.subheader("Image details")
    pick = st.selectbox("Image", range(len(result.rows)), key="explore_pick",
                        format_func=lambda i: result.rows[i]["file"])
    d = browse.image_details(info, result.rows[pick])
    left, mid, right = st.columns([1, 1, 2])
    left.image(str(result.paths[pick]), width=160, caption="image")
    if d.pictogram:
        mid.image(str(d.pictogram), width=120, caption="reference pictogram")
    else:
        mid.caption("No reference pictogram for this class.")
    right.markdown(f"**Class** {d.class_id}: {d.class_name}  \n**Split** {d.split}  \n"
                   f"**Size** {d.width}\u00d7{d.height} px (original {d.original_size})  \n"
                   f"**Source** {d.source}  \n**Track** {d.track or 'n/a'}  \n**File** `{d.file}`")

st.subheader("Images per class")
counts = browse.class_counts(info)
counts["label"] = counts["class_id"].astype(str) + ": " + counts["name"]
fig = px.bar(counts, x="class_id", y="images", color="split", barmode="group", hover_data=["name"],
             category_orders={"split": list(SPLITS)}, height=360)
fig.update_layout(xaxis_title="class id", yaxis_title="images", margin=dict(t=10, b=10))
st.plotly_chart(fig, width="stretch")
