"""Make more like these: pick the images a model got wrong (from a report, or named images of a dataset), let the
``generate`` run make new labelled images near each by the chosen method, preview them, and add the ones kept to a
workspace, marked as generated with where they came from."""
from __future__ import annotations

import streamlit as st

from ui.generate_views import (SOURCES, add_panel, cached_preview, dataset_source, generate_jobs, method_settings,
                               pick_run, report_source, show_preview, start)
from ui.nav import ensure_router

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it

st.title("Make more like these")
st.caption("Learn from mistakes: choose images the model gets wrong, make new images like them (each labelled with "
           "its source's true class), keep the good ones and add them to a workspace to train on. Generated images "
           "are marked as generated wherever they appear.")
with st.container(border=True):
    source = st.radio("Source", list(SOURCES), key="gen_source", horizontal=True, persist_state="session",
                      format_func=SOURCES.get)
    request = report_source() if source == "report" else dataset_source()
with st.container(border=True):
    settings = method_settings()
    if st.button("Generate", type="primary", key="gen_start", disabled=request is None):
        start({**request, **settings})

generate_jobs()
run_id = pick_run()
if run_id is None:
    st.info("Nothing generated yet: choose images above and press Generate.")
    st.stop()
try:
    gen = cached_preview(run_id)
except ValueError as e:  # its files are gone, or another session's run in the public demo
    st.error(str(e))
    st.stop()
keep = show_preview(run_id, gen)
add_panel(run_id, gen, keep)
