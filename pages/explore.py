"""Explore dataset: a paged thumbnail grid like a file explorer, per-class counts, one image's details; and a
Data issues tab (likely mislabelled images, leakage across splits, outliers), ranked with their reasons, each
finding with actions (relabel, remove, move, send to Extra) and undo."""
from __future__ import annotations

import plotly.express as px
import streamlit as st

from core.data import browse
from core import runs
from core.analysis.issues_run import IssuesRun, issues_status, shown_issues
from core.data.datasets import SPLITS
from ui.nav import ensure_router, rerun_page
from ui.cache import cached_index
from ui.generated_views import generated_controls, thumb_captions
from ui.issues_views import show_findings, show_message, stale_note, undo_bar
from ui.widgets import pick_dataset, pick_model, run_status, thumbnail_grid

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it

COLUMNS = 8

st.title("Explore dataset")
info = pick_dataset()
if info is None:
    st.stop()
index = cached_index(info.name, info.fingerprint)
tab_browse, tab_issues = st.tabs(["Browse", "Data issues"])

@st.dialog("Image details", width="large")
def image_dialog(row: dict) -> None:
    d = browse.image_details(info, row)
    left, mid, right = st.columns([1, 1, 2])
    left.image(str(info.image_path(row["file"])), width=192, caption="image (shown enlarged)")
    if d.pictogram:
        mid.image(str(d.pictogram), width=140, caption="reference pictogram")
    else:
        mid.caption("No reference pictogram for this class.")
    right.markdown((f"**Generated** {d.generated.removeprefix('generated ')}  \n" if d.generated else "")
                   + f"**Class** {d.class_id}: {d.class_name}  \n**Split** {d.split}  \n"
                   f"**Size** {d.width}\u00d7{d.height} px (original {d.original_size})  \n"
                   f"**Source** {d.source}  \n**Track** {d.track or 'n/a'}  \n**File** `{d.file}`")


with tab_browse:
    c1, c2, c3, c4, c5 = st.columns([1, 3, 2, 1, 1])
    split = c1.selectbox("Split", SPLITS, key="explore_split", persist_state="session")
    class_options = [None] + sorted(info.classes)
    class_id = c2.selectbox("Class", class_options, key="explore_class", persist_state="session",
                            format_func=lambda c: "All classes" if c is None else f"{c}: {info.classes[c]}")
    query = c3.text_input("Search file names", key="explore_query", persist_state="session", placeholder="e.g. 00014_")
    sort = c4.selectbox("Sort by", browse.SORTS, key="explore_sort", persist_state="session")
    page_size = c5.selectbox("Per page", [12, 24, 48, 96], index=2, key="explore_page_size", persist_state="session")
    generated = generated_controls(info, key="explore_generated")  # the one switch, and hiding them here

    # Page state survives reruns; it resets when the filter changes.
    filter_key = (info.name, split, class_id, query, sort, page_size, generated)
    if st.session_state.get("explore_filter") != filter_key:
        st.session_state.explore_filter = filter_key
        st.session_state.explore_page = 1
    result = browse.browse(info, split=split, class_id=class_id, page=st.session_state.explore_page,
                           page_size=page_size, query=query, sort=sort, index=index, generated=generated)

    def turn_page(delta: int) -> None:
        st.session_state.explore_page = result.page + delta

    nav = st.columns([1, 1, 4])
    nav[0].button("\u2190 Previous", disabled=result.page <= 1, key="explore_prev", on_click=turn_page, args=(-1,))
    nav[1].button("Next \u2192", disabled=result.page >= result.pages, key="explore_next", on_click=turn_page, args=(1,))
    nav[2].markdown(f"Page **{result.page} / {result.pages}** \u00b7 {result.total:,} images \u00b7 "
                    "click a caption to open the image")

    # Like a file explorer, the grid stays as it is until the next page arrives, instead of Streamlit's greying of
    # everything on the page while it reruns (elements it marks data-stale).
    st.html("<style>.st-key-explore_grid [data-stale='true'] {opacity: 1 !important; transition: none !important}"
            "</style>")
    grid = st.container(key="explore_grid")
    if not result.rows:
        grid.info("No images in this selection.")
    else:
        with grid:
            clicked = thumbnail_grid([str(p) for p in result.paths], thumb_captions(result.rows, result.paths),
                                     key="explore_thumb", columns=COLUMNS)
        if clicked is not None:
            image_dialog(result.rows[clicked])

    all_splits = st.toggle("Chart every split", key="explore_all_splits", persist_state="session")
    st.subheader("Images per class" + ("" if all_splits else f" in {split}"))
    counts = browse.class_counts(info)
    if not all_splits:
        counts = counts[counts["split"] == split]
    fig = px.bar(counts, x="class_id", y="images", color="split", barmode="group", hover_data=["name"],
                 category_orders={"split": list(SPLITS)}, height=360)
    fig.update_layout(xaxis_title="class id", yaxis_title="images", margin=dict(t=10, b=10))
    st.plotly_chart(fig, width="stretch")


@st.fragment(run_every=1.0)
def issues_progress(run_id: str) -> None:
    run = runs.get(run_id)
    if run is not None and run["status"] in runs.ACTIVE:
        run_status(run)
    elif run is not None:
        rerun_page()  # finished (or failed): the whole tab shows the result


with tab_issues:
    st.caption("Images whose label looks wrong (confident learning on probabilities from a model that never saw "
               "that label), images that look like an image of another split (leakage), and outliers (novelty). "
               "Tick findings and act on them: every action is one change of a workspace that you can undo. "
               "Found as a run: leave the page and come back, the result waits here.")
    c1, c2 = st.columns([3, 1])
    with c1:
        model = pick_model(key="issues_model")
    issue_split = c2.selectbox("Split", SPLITS, key="issues_split", persist_state="session")
    if model is None:
        st.stop()
    status = issues_status(model.name, info.name, issue_split)
    try:
        shown = shown_issues(model.name, info.name, issue_split)
    except ValueError as e:
        st.error(f"{e}. Find the issues again.")
        shown = None
    if status.active is not None:
        issues_progress(status.active["id"])
    elif st.button("Find data issues" if shown is None else "Find again", key="issues_go",
                   type="primary" if shown is None or shown.stale else "secondary"):
        try:
            runs.start("issues", IssuesRun(model=model.name, dataset=info.name, split=issue_split))
            st.rerun()
        except ValueError as e:
            st.error(str(e))
    if status.failed is not None:
        st.error(status.failed["error"])
    show_message()
    undo_bar(info, key="issues_undo")
    if shown is not None:
        stale_note(info, shown)
        show_findings(info, shown)
