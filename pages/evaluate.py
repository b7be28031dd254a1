"""Evaluate models: run evaluation jobs, open reports, find the images behind every mistake, the slices where a
model does worse, and where two models disagree."""
from __future__ import annotations

import streamlit as st

from core.analysis import reports
from core import runs
from core.analysis.evaluate_run import EvaluateRun
from core.learning.tta import VIEWS, describe as tta_views
from core.data.datasets import SPLITS
from ui.compare_views import compare_models
from ui.evaluate_views import show_comparison, show_report, show_slices
from ui.nav import ensure_router, rerun_page
from ui.widgets import model_dataset, pick_dataset, pick_model, run_status, show_model_stats

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it

st.title("Evaluate models")

with st.container(border=True):
    st.subheader("New evaluation")
    left, right = st.columns(2)
    with left:
        model = pick_model(key="eval_model")
        if model:
            show_model_stats(model)
    with right:
        own = model_dataset(model)
        if model and st.session_state.get("_eval_dataset_for") != model.name:  # another model: its own data again
            st.session_state._eval_dataset_for = model.name
            if own:
                st.session_state.pop("eval_dataset", None)
        info = pick_dataset(key="eval_dataset", prefer=list(model.class_ids) if model and model.class_ids else None,
                            default=own)
        split = st.selectbox("Split", SPLITS, index=2, key="eval_split", persist_state="session")
        classes = "model"
        if model and info and model.class_ids and set(model.class_ids) != set(info.classes):
            extra = sorted(set(info.classes) - set(model.class_ids))
            missing = sorted(set(model.class_ids) - set(info.classes))
            st.warning(f"{model.name} predicts {model.num_classes} classes, {info.name} has {info.num_classes}"
                       + ("; classes the model lacks: " + ", ".join(f"{c}: {info.classes[c]}" for c in extra[:8])
                          + (", ..." if len(extra) > 8 else "") if extra else "")
                       + (f"; classes the dataset lacks: {', '.join(map(str, missing[:12]))}" if missing else "") + ".")
            classes = st.radio("Evaluate on", ["model", "all"], key="eval_classes",
                               persist_state="session", horizontal=True,
                               format_func={"model": "only the model's classes",
                                            "all": "all classes (the model's unknown classes count as errors)"}.get)
        tta = st.checkbox("Test-time augmentation", key="eval_tta", persist_state="session",
                          help=f"Average the model's probabilities over {tta_views()} (about "
                               f"{len(VIEWS)}x the time; the report says so)")
        if st.button("Run evaluation", type="primary", key="eval_run", disabled=model is None or info is None):
            try:
                job_id = runs.start("evaluate", EvaluateRun(model=model.name, dataset=info.name, split=split,
                                                            classes=classes, tta=tta))
                st.session_state.eval_report = job_id
                st.session_state.setdefault("_eval_watch", set()).add(job_id)  # announce it when it ends
                st.success(f"Started {job_id} (up to 5 evaluations run at once; more wait in the queue).")
            except ValueError as e:
                st.error(str(e))


@st.fragment(run_every=1.0)
def evaluation_jobs() -> None:
    active = runs.list_runs("evaluate", statuses=runs.ACTIVE)
    anchors = runs.list_runs("anchor", statuses=runs.ACTIVE)
    for job in active + anchors:
        run_status(job)
        if runs.cancellable(job["id"]) and st.button("Cancel", key=f"cancel-{job['id']}"):
            runs.cancel(job["id"])
    failed = [j for j in runs.list_runs("evaluate", statuses=("failed", "interrupted"))][:3]
    for job in failed:
        run_status(job)
    # Watch what this session started and what it saw running: a quick run may end before the first tick.
    watch = st.session_state.setdefault("_eval_watch", set())
    watch |= {j["id"] for j in active}
    recs = {i: runs.get(i) for i in sorted(watch)}
    ended = [i for i, j in recs.items() if j is None or j["status"] not in runs.ACTIVE]
    watch -= set(ended)
    done = [recs[i] for i in ended if recs[i] and recs[i]["status"] == "done"]
    if done:  # announce each finished report and open it at once, whatever else still runs
        st.session_state._eval_toasts = [f"Report ready: {j['title']} (acc {j['result']['accuracy']:.2%})"
                                         for j in done]
        st.session_state.eval_report = done[-1]["id"]
        rerun_page()  # the whole page, so the report list picks the new one up


for note in st.session_state.pop("_eval_toasts", []):  # after that rerun: a toast that outlives it
    st.toast(note, icon=":material/check:")

evaluation_jobs()

records = reports.list_reports()  # newest first
label = reports.report_label
ids = [r["id"] for r in records]
by_id = {r["id"]: r for r in records}


def manage(rid: str) -> None:
    with st.expander("Rename or delete this report"):
        c1, c2 = st.columns([3, 1])
        name = c1.text_input("Name", value=by_id[rid].get("name", ""), key=f"eval_name_{rid}")
        if c2.button("Rename", key="eval_rename"):
            try:
                reports.rename_report(rid, name)
                st.rerun()
            except ValueError as e:
                st.error(str(e))
        sure = st.checkbox("Yes, delete this report and its files", key=f"eval_sure_{rid}")
        if st.button("Delete report", key="eval_delete", disabled=not sure):
            try:
                reports.delete_report(rid)
            except ValueError as e:  # demo mode: another session's or a shared report
                st.error(str(e))
            else:
                st.session_state.pop("eval_report", None)
                st.rerun()


# A report that just finished (or was just asked for) opens once; after that the picker is the user's.
if st.session_state.get("eval_report") in ids and st.session_state.get("_eval_opened") != st.session_state.eval_report:
    st.session_state._eval_opened = st.session_state.eval_open = st.session_state.eval_report
if ids and st.session_state.get("eval_open") not in ids:
    st.session_state.eval_open = ids[0]
tab_report, tab_slices, tab_compare, tab_models = st.tabs(["Report", "Underperforming slices", "Compare two reports",
                                                           "Compare two models"])
with tab_report:
    if not ids:
        st.info("No reports yet: run an evaluation above.")
    else:
        rid = st.selectbox("Report", ids, format_func=lambda i: label(by_id[i]), key="eval_open",
                           persist_state="session")
        manage(rid)
        try:
            report = reports.load_report(rid)
        except ValueError as e:
            report = None
            st.error(str(e))
        if report is not None:
            show_report(report)
with tab_slices:
    if not ids or report is None:
        st.caption("Open a report first: its slices show here.")
    else:
        st.caption(f"Report: {label(by_id[rid])}")
        show_slices(report)
with tab_compare:
    if len(ids) < 2:
        st.caption("Run at least two evaluations to compare them.")
    else:
        a = st.selectbox("Report A", ids, index=1, format_func=lambda i: label(by_id[i]), key="eval_cmp_a",
                         persist_state="session")
        b = st.selectbox("Report B", ids, index=0, format_func=lambda i: label(by_id[i]), key="eval_cmp_b",
                         persist_state="session")
        try:
            show_comparison(reports.load_report(a), reports.load_report(b))
        except ValueError as e:
            st.error(str(e))
with tab_models:
    compare_models()
