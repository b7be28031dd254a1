"""Explanations of one report image: the click dialog (Integrated Gradients), the explain panel (IG on request,
Anchors as a run), and the dialog of an image two models disagree on (both models' top 3 and IG)."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core.analysis import explain, reports
from core import runs
from core.analysis.anchor_run import AnchorRun
from ui.cache import report_explanation
from ui.widgets import ig_figure, run_status


@st.dialog("Image and explanation", width="large")
def image_dialog(report: reports.Report, index: int) -> None:
    pr = report.predictions
    t, p = int(pr.y_true[index]), int(pr.y_pred[index])
    st.markdown(f"**#{index}** `{pr.files[index]}`  \n**True** {t}: {report.class_name(t)}  \n"
                f"**Predicted** {p}: {report.class_name(p)} with {pr.confidence[index]:.1%} confidence"
                + ("" if t == p else "  \n:red[wrong]"))
    try:
        shown = report_explanation(report, index)
    except ValueError as e:
        st.error(str(e))
        return
    st.plotly_chart(ig_figure(shown.image, shown.ig.heatmap, title="Integrated Gradients (predicted class)"),
                    key="eval_dialog_ig", config={"displayModeBar": False})
    st.caption("Brighter = pixels that pushed the model more towards its prediction. Anchors for this image: "
               "pick it under Misclassified images.")


def explain_one(report: reports.Report, index: int) -> None:
    (image,) = reports.report_images(report, [index])
    pred = int(report.predictions.y_pred[index])
    c1, c2 = st.columns([2, 1])
    key = (report.id, index)
    if c1.button("Explain with Integrated Gradients", key="eval_ig_run"):
        st.session_state.setdefault("eval_ig", set()).add(key)
    if key in st.session_state.get("eval_ig", set()):  # only when asked, then cached
        try:
            heat = report_explanation(report, index).ig.heatmap
            c1.plotly_chart(ig_figure(image, heat, title="Integrated Gradients (predicted class)"), key="eval_ig_fig",
                            config={"displayModeBar": False})
        except ValueError as e:
            c1.error(str(e))
    else:
        c1.image(image, width=160, caption=f"true {report.predictions.y_true[index]}, predicted {pred}")
    threshold = c2.slider("Anchor precision threshold", 0.80, 0.99, 0.95, 0.01, key="eval_anchor_thr")
    if c2.button("Run Anchors", key="eval_anchor_run"):
        try:
            st.session_state[f"anchor-{report.id}-{index}"] = runs.start(
                "anchor", AnchorRun(report=report.id, index=index, threshold=threshold))
        except ValueError as e:  # the public demo's run caps, or a report that changed
            c2.error(str(e))
    job_id = st.session_state.get(f"anchor-{report.id}-{index}")
    if job_id:
        with c2:
            show_anchor(job_id, image)


@st.fragment(run_every=1.0)
def show_anchor(job_id: str, image: np.ndarray) -> None:
    job = runs.get(job_id)
    if job is None:
        return
    if job["status"] != "done":
        run_status(job)
        return
    r = job["result"]
    mask, _ = reports.load_anchor(r["file"])
    st.image(explain.anchor_overlay(image, mask), width=160,
             caption=f"Anchor: precision {r['precision']:.2f}, coverage {r['coverage']:.2f}"
                     + ("" if r["met_threshold"] else " (threshold not reached)"))
    st.caption(f"With only the coloured regions kept as they are (the rest replaced at random), the model still "
               f"says class {r['prediction']} in {r['precision']:.0%} of {r['num_samples']:,} tries: these regions "
               f"are enough for its decision. Coverage {r['coverage']:.0%}: the share of random variations of the "
               "image that keep these regions; low means a very specific rule.")


def top_predictions(report: reports.Report, index: int, k: int = 3) -> list[str]:
    """The report's top-``k`` classes of one image in words: "14: Stop, 92.1 %"."""
    pr = report.predictions
    return [f"{int(c)}: {report.class_name(int(c))}, {100 * float(p):.1f} %"
            for c, p in zip(pr.top_ids[index][:k], pr.top_p[index][:k])]


@st.dialog("Image: both models", width="large")
def diff_dialog(a: reports.Report, b: reports.Report, row_a: int, row_b: int) -> None:
    """One image two models disagree on: each model's top 3 and its Integrated Gradients heat map."""
    pr = a.predictions
    t = int(pr.y_true[row_a])
    st.markdown(f"`{pr.files[row_a]}`  \n**True** {t}: {a.class_name(t)}")
    for col, report, row, who in zip(st.columns(2), (a, b), (row_a, row_b), ("A", "B")):
        with col:
            right = int(report.predictions.y_pred[row]) == t
            st.markdown(f"**{who}: {report.summary['model']}** " + (":green[right]" if right else ":red[wrong]")
                        + "".join(f"  \n{k}. {line}" for k, line in enumerate(top_predictions(report, row), 1)))
            try:
                shown = report_explanation(report, row)
            except ValueError as e:
                st.error(str(e))
                continue
            st.plotly_chart(ig_figure(shown.image, shown.ig.heatmap, title=f"{who}: Integrated Gradients"),
                            key=f"diff_ig_{who}", config={"displayModeBar": False})
    st.caption("Brighter = pixels that pushed that model more towards its own prediction.")
