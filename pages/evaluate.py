"""Evaluate models: run evaluation jobs, open reports, find the images behind every mistake."""
from __future__ import annotations

import streamlit as st

from core import reports, runs
from core.datasets import SPLITS
from pages._evaluate_views import show_comparison, show_report
from pages._ui import ensure_router, pick_dataset, pick_model, run_status, show_model_stats

ensure_router()
st.title("Evaluate models")

with st.container(border=True):
    st.subheader("New evaluation")
    left, right = st.columns(2)
    with left:
        model = pick_model(key="eval_model")
        if model:
            show_model_stats(model)
    with right:
        info = pick_dataset(key="eval_dataset")
        split = st.selectbox("Split", SPLITS, index=2, key="eval_split")
        if st.button("Run evaluation", type="primary", key="eval_run", disabled=model is None or info is None):
            try:
                job_id = runs.start("evaluate", runs.EvaluateRun(model=model.name, dataset=info.name, split=split))
                st.session_state.eval_report = job_id
                st.success(f"Started {job_id} (up to 5 evaluations run at once; more wait in the queue).")
            except ValueError as e:
                st.error(str(e))


@st.fragment(run_every=1.0)
def evaluation_jobs() -> None:
    active = runs.list_runs("evaluate", statuses=runs.ACTIVE)
    anchors = runs.list_runs("anchor", statuses=runs.ACTIVE)
    for job in active + anchors:
        run_status(job)
        if st.button("Cancel", key=f"cancel-{job['id']}"):
            runs.cancel(job["id"])
    failed = [j for j in runs.list_runs("evaluate", statuses=("failed", "interrupted"))][:3]
    for job in failed:
        run_status(job)
    if st.session_state.get("_eval_active") and not active:
        st.session_state._eval_active = False
        st.rerun()  # a report finished: refresh the report list
    st.session_state._eval_active = bool(active)


evaluation_jobs()

records = reports.list_reports()
if not records:
    st.info("No reports yet: run an evaluation above.")
    st.stop()


def label(r: dict) -> str:
    return f"{r['model']} on {r['dataset']}/{r['split']} \u2014 acc {r['accuracy']:.2%}, macro F1 {r['macro_f1']:.3f} ({r['id']})"


ids = [r["id"] for r in records]
by_id = {r["id"]: r for r in records}
default = ids.index(st.session_state.eval_report) if st.session_state.get("eval_report") in ids else 0
tab_report, tab_compare = st.tabs(["Report", "Compare two reports"])
with tab_report:
    rid = st.selectbox("Report", ids, index=default, format_func=lambda i: label(by_id[i]), key="eval_open")
    try:
        show_report(reports.load_report(rid))
    except ValueError as e:
        st.error(str(e))
with tab_compare:
    if len(ids) < 2:
        st.caption("Run at least two evaluations to compare them.")
    else:
        a = st.selectbox("Report A", ids, index=1, format_func=lambda i: label(by_id[i]), key="eval_cmp_a")
        b = st.selectbox("Report B", ids, index=0, format_func=lambda i: label(by_id[i]), key="eval_cmp_b")
        show_comparison(reports.load_report(a), reports.load_report(b))
