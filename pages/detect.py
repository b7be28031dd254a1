"""Detect signs: upload street photos or dashcam video; the ``detect`` run finds, classifies and tracks the signs;
see the boxes, open any detection's crop with its top-5 and Integrated Gradients, and harvest crops into a
workspace."""
from __future__ import annotations

import streamlit as st

from core.base.text import plural
from core.detection import detect_run
from ui.detect_views import UPLOAD_TYPES, detect_jobs, pick_run, settings, show_results
from ui.nav import ensure_router

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it

st.title("Detect signs")
st.caption("Find the traffic signs in street photos and dashcam videos: each candidate box is classified by the "
           "model (or called an unknown sign), videos are sampled and each sign followed as one track. Send the "
           "crops you want to a workspace as training data.")
chosen = settings()
limit = st.get_option("server.maxUploadSize")
files = st.file_uploader(f"Photos (PNG, JPEG, WebP, BMP) or videos (MP4, WebM, MOV), up to {limit} MB a file",
                         type=UPLOAD_TYPES, accept_multiple_files=True, key="detect_files")
if st.button(f"Detect in {plural(len(files or []), 'file')}" if files else "Detect", type="primary",
             key="detect_start", disabled=not files or chosen is None):
    try:
        job = detect_run.start_detection([(f.name, f.getvalue()) for f in files], **chosen)
    except ValueError as e:
        st.error(str(e))
    else:
        st.session_state.setdefault("_detect_watch", set()).add(job)  # the poller opens it when it ends
        st.success(f"Started {job}: the results open here when it ends.")

detect_jobs()
run_id = pick_run()
if run_id is None:
    st.info("No results yet: upload photos or a video and press Detect.")
    st.stop()
show_results(run_id)
