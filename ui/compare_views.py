"""The Evaluate page's "Compare two models" section: pick two models and a split, evaluate what is missing (as
runs, which the page's polling announces), then show where they disagree (:mod:`core.analysis.model_diff`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from core import runs
from core.analysis import model_diff, reports
from core.data.datasets import SPLITS
from core.learning import registry
from ui.explain_views import diff_dialog
from ui.widgets import model_dataset, pick_dataset, pick_model, plural, run_status, thumbnail_grid

#: Thumbnails shown of each disagreement set.
MAX_IMAGES = 48
#: Below this p-value the page calls the difference more than chance.
SIGNIFICANCE = 0.05


@st.cache_data(show_spinner="Comparing the two reports...", max_entries=8)
def _diff(report_a: str, report_b: str) -> model_diff.ModelDiff:
    return model_diff.diff_reports(reports.load_report(report_a), reports.load_report(report_b))


def _pending(missing: dict) -> list[dict]:
    """Active evaluate runs of the missing evaluations (started here or elsewhere)."""
    wanted = {(c.model, c.dataset, c.split) for c in missing.values()}
    return [r for r in runs.list_runs("evaluate", statuses=runs.ACTIVE)
            if (r["config"].get("model"), r["config"].get("dataset"), r["config"].get("split")) in wanted]


def compare_models() -> None:
    """Widgets, the evaluations still needed, then the diff."""
    c1, c2 = st.columns(2)
    with c1:
        a = pick_model("Model A", key="cmp_model_a")
    if a is not None and "cmp_model_b" not in st.session_state:  # open on two different models
        st.session_state.cmp_model_b = next((m.name for m in registry.list_models() if m.name != a.name), a.name)
    with c2:
        b = pick_model("Model B", key="cmp_model_b")
    c3, c4 = st.columns(2)
    with c3:
        info = pick_dataset("Compare on dataset", key="cmp_dataset", default=model_dataset(a),
                            prefer=list(a.class_ids) if a and a.class_ids else None)
    split = c4.selectbox("Compare on split", SPLITS, index=2, key="cmp_split", persist_state="session")
    if a is None or b is None or info is None:
        return
    try:
        missing = model_diff.missing_evaluations(a.name, b.name, info.name, split)
    except ValueError as e:
        st.error(str(e))
        return
    if missing:
        _evaluate_first(missing, info.name, split)
        return
    try:
        diff = _diff(model_diff.find_report(a.name, info.name, split), model_diff.find_report(b.name, info.name, split))
    except ValueError as e:
        st.error(str(e))
        return
    show_diff(diff)


def _evaluate_first(missing: dict, dataset: str, split: str) -> None:
    pending = _pending(missing)
    names = " and ".join(missing)
    if pending:
        st.info(f"Evaluating {names} on {dataset}/{split}; the comparison shows when "
                f"{'they end' if len(missing) > 1 else 'it ends'}.")
        for job in pending:
            run_status(job)
        return
    st.info(f"{names} {'have' if len(missing) > 1 else 'has'} no report on {dataset}/{split} for its current "
            "file yet: evaluate first (it runs in the background, like any evaluation).")
    if st.button(f"Evaluate {names}", key="cmp_evaluate", type="primary"):
        try:
            started = [runs.start("evaluate", cfg) for cfg in missing.values()]
        except ValueError as e:
            st.error(str(e))
            return
        st.session_state.setdefault("_eval_watch", set()).update(started)  # the page's poller announces them
        st.rerun()


def show_diff(diff: model_diff.ModelDiff) -> None:
    a, b = diff.model_a, diff.model_b
    left_out = diff.only_a + diff.only_b
    st.caption(f"A: {a}, B: {b}, on {diff.dataset}/{diff.split}: {plural(diff.n, 'image')} of the "
               f"{plural(len(diff.shared_classes), 'class', 'classes')} both models predict"
               + (f"; left out: {plural(len(left_out), 'class', 'classes')} only one of them predicts ("
                  + ", ".join(f"{c}" for c in left_out[:20]) + (", ..." if len(left_out) > 20 else "") + ")"
                  if left_out else "") + ".")
    cols = st.columns(5 if diff.track_p is not None else 4)
    cols[0].metric("Images compared", f"{diff.n:,}")
    cols[1].metric("A right, B wrong", len(diff.a_right_b_wrong))
    cols[2].metric("B right, A wrong", len(diff.b_right_a_wrong))
    cols[3].metric("McNemar p", f"{diff.mcnemar_p:.3g}", help="Exact McNemar test: how likely disagreements this "
                   "lopsided (or more) are if both models were equally good (two-sided binomial test on them)")
    if diff.track_p is not None:
        cols[4].metric("p by track", f"{diff.track_p:.3g}", help=f"The same question asked of the "
                       f"{diff.tracks:,} tracks (about 30 frames of one physical sign each), which err together: "
                       "each track's disagreements counted once, as A's wins minus B's (exact sign-flip test). "
                       "Use this one to choose between models on a split made by track.")
    st.markdown(verdict(diff))
    rows = pd.DataFrame(diff.per_class)
    if len(rows):
        changed = rows[rows["delta"] != 0]
        rows.insert(0, "class", rows["class_id"].astype(str) + ": " + rows["name"])
        if len(changed):
            shown = changed.assign(label=changed["class_id"].astype(str) + ": " + changed["name"]).head(20)
            fig = px.bar(shown, y="label", x="delta", orientation="h", height=90 + 22 * len(shown),
                         color=shown["delta"] >= 0, color_discrete_map={True: "#2e7d32", False: "#c62828"},
                         hover_data=["n", "accuracy_a", "accuracy_b"])
            fig.update_layout(showlegend=False, yaxis_title=None, xaxis_title="accuracy B \u2212 A",
                              xaxis_tickformat=".0%", margin=dict(t=30, b=10),
                              title="Classes whose accuracy changed", yaxis=dict(autorange="reversed"))
            st.plotly_chart(fig, key="cmp_delta_chart", config={"displayModeBar": False})
        table = rows[["class", "n", "accuracy_a", "accuracy_b", "delta", "a_right_b_wrong", "b_right_a_wrong"]].copy()
        table[["accuracy_a", "accuracy_b", "delta"]] *= 100  # read as "92.1 %"
        st.dataframe(table, hide_index=True, height=300, key="cmp_per_class", column_config={
                         "n": st.column_config.NumberColumn("images"),
                         "accuracy_a": st.column_config.NumberColumn("accuracy A", format="%.1f %%"),
                         "accuracy_b": st.column_config.NumberColumn("accuracy B", format="%.1f %%"),
                         "delta": st.column_config.NumberColumn("B \u2212 A", format="%+.1f points"),
                         "a_right_b_wrong": st.column_config.NumberColumn("A right, B wrong"),
                         "b_right_a_wrong": st.column_config.NumberColumn("B right, A wrong")})
    ra, rb = reports.load_report(diff.report_a), reports.load_report(diff.report_b)
    tab_a, tab_b = st.tabs([f"A right, B wrong ({len(diff.a_right_b_wrong)})",
                            f"B right, A wrong ({len(diff.b_right_a_wrong)})"])
    for tab, rows_a, key in ((tab_a, diff.a_right_b_wrong, "cmp_a"), (tab_b, diff.b_right_a_wrong, "cmp_b")):
        with tab:
            disagreement_grid(diff, ra, rb, rows_a, key=key)


def verdict(diff: model_diff.ModelDiff) -> str:
    """One sentence: which model wins the disagreements, and whether that is more than chance."""
    x, y = len(diff.a_right_b_wrong), len(diff.b_right_a_wrong)
    if x == y == 0:
        return "The two models never disagree on who is right here."
    better = diff.model_a if x > y else diff.model_b if y > x else None
    if better is None:
        return (f"Each model is right where the other is wrong equally often ({plural(x, 'time')} each): no "
                "difference.")
    p = diff.mcnemar_p if diff.track_p is None else diff.track_p
    more = "is more than chance" if p < SIGNIFICANCE else "could well be chance"
    by = "" if diff.track_p is None else f", each of the {diff.tracks:,} tracks counted once"
    return (f"**{better}** is right more often where they disagree ({max(x, y)} against {min(x, y)}); with "
            f"p = {p:.3g}{by}, this {more} (threshold {SIGNIFICANCE}).")


def disagreement_grid(diff: model_diff.ModelDiff, a: reports.Report, b: reports.Report, rows_a: np.ndarray, *,
                      key: str) -> None:
    """Thumbnails of one disagreement set; a click opens the image with both models' top 3 and IG."""
    if not len(rows_a):
        st.caption("None.")
        return
    if a.stale or b.stale:
        st.info("A report's dataset has changed since, so its images are not shown. Evaluate again.")
        return
    shown = rows_a[:MAX_IMAGES]
    pa, pb = a.predictions, b.predictions
    st.caption(f"{plural(len(rows_a), 'image')}" + (f"; showing {MAX_IMAGES}" if len(rows_a) > MAX_IMAGES else "")
               + ". Caption: true class, then A's and B's prediction. Click one to compare the explanations.")
    captions = [f"{pa.y_true[i]}: A {pa.y_pred[i]}, B {pb.y_pred[diff.rows_b[int(i)]]}" for i in shown]
    helps = [f"true {pa.y_true[i]}: {a.class_name(int(pa.y_true[i]))}; A says {pa.y_pred[i]}: "
             f"{a.class_name(int(pa.y_pred[i]))}; B says {pb.y_pred[diff.rows_b[int(i)]]}: "
             f"{b.class_name(int(pb.y_pred[diff.rows_b[int(i)]]))}" for i in shown]
    clicked = thumbnail_grid(reports.report_images(a, shown), captions, key=key, columns=8, width=64, helps=helps)
    if clicked is not None:
        row = int(shown[clicked])
        diff_dialog(a, b, row, diff.rows_b[row])
