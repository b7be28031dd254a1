"""Rendering of an evaluation report: metrics, per-class charts, confusion matrix, mistakes, comparison
(explanations of one image: ui/explain_views.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from core.analysis import metrics, reports
from ui.explain_views import explain_one, image_dialog
from ui.widgets import thumbnail_grid

GRID = 8
MAX_IMAGES = 48
ORDER_LABELS = {"confidence_desc": "most confident first", "confidence_asc": "least confident first",
                "index": "dataset order"}


def show_report(report: reports.Report) -> None:
    s = report.summary
    st.caption(f"{s['model']} on {s['dataset']}/{s['split']}: {s['n']:,} images, {s['images_per_s']:.0f} images/s"
               + (f"; dataset version {s['dataset_version']}" if s.get("dataset_version") else ""))
    if report.stale:
        st.warning(f"Stale report: {report.stale}")
    ov = s["metrics"]
    headlines = metrics.list_headlines()
    for col, key in zip(st.columns(len(headlines)), headlines):
        col.metric(metrics.get_headline(key).label, f"{ov[key]:.4f}", help=metrics.get_headline(key).help)
    with st.expander("All overall metrics"):
        st.dataframe(pd.DataFrame([{"metric": k, "value": v} for k, v in ov.items()]), hide_index=True)
    table = reports.per_class_frame(report)
    st.subheader("Per class")
    shown = reports.readable_per_class(table)  # the JSON keeps a finite cap; a person reads infinity
    st.dataframe(shown, hide_index=True, height=300,
                 column_config={m: st.column_config.Column(metrics.get_metric(m).label, help=metrics.get_metric(m).help)
                                for m in metrics.list_metrics() if m in shown})
    metric = st.selectbox("Chart metric", metrics.list_metrics(),
                          index=metrics.list_metrics().index(metrics.DEFAULT_CHART_METRIC),
                          format_func=lambda m: metrics.get_metric(m).label, key="eval_metric")
    ordered = reports.worst_first(table, metric).assign(
        label=lambda d: d["class_id"].astype(str) + ": " + d["name"].str.slice(0, 24))
    fig = px.bar(ordered, x="label", y=metric, hover_data=["name", "support"], height=320)
    fig.update_layout(margin=dict(t=10, b=10), yaxis_title=metrics.get_metric(metric).label,
                      xaxis_title="class (worst first)",
                      xaxis=dict(categoryorder="array", categoryarray=list(ordered["label"])))
    st.plotly_chart(fig, key="eval_metric_chart")
    show_confusion(report)
    if not report.stale:  # the files it names may hold other images now
        show_mistakes(report)


def show_confusion(report: reports.Report) -> None:
    st.subheader("Confusion matrix")
    labels = report.summary["labels"]
    cells = reports.confusion_cells(report)
    side = min(900, max(360, 16 * len(labels)))  # about 16 px a class, so squares never overlap
    # A scatter of square markers, one per non-empty cell: unlike a heatmap, its points can be clicked.
    fig = px.scatter(cells, x="predicted", y="true", color="log_count", custom_data=["count", "true_name", "pred_name"],
                     color_continuous_scale=["#fcae91", "#a50f15", "#3b0000"], height=side + 80,
                     labels={"log_count": "log(1+n)"})
    fig.update_traces(marker=dict(symbol="square", size=max(4, int(0.8 * side / max(len(labels), 1))),
                                  line=dict(width=0)),
                      hovertemplate="true %{y}: %{customdata[1]}<br>predicted %{x}: %{customdata[2]}<br>"
                                    "%{customdata[0]} images<extra></extra>")
    axis = dict(tickmode="array", tickvals=labels, range=[min(labels) - 1, max(labels) + 1], dtick=1)
    fig.update_layout(xaxis=dict(title="predicted", **axis), margin=dict(t=10, b=10),
                      yaxis=dict(title="true", autorange="reversed", **{k: v for k, v in axis.items() if k != "range"}))
    st.caption("Click a cell to see the images behind it (or pick it below).")
    event = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key="eval_confusion")
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    if points and st.session_state.get("_eval_last_click") != points[0]:
        st.session_state._eval_last_click = points[0]
        st.session_state.eval_cell_true = int(points[0]["y"])
        st.session_state.eval_cell_pred = int(points[0]["x"])
    worst = reports.worst_confusion(report)
    if worst and st.session_state.get("_eval_cell_report") != report.id:  # open on the largest confusion
        st.session_state._eval_cell_report = report.id
        st.session_state.eval_cell_true, st.session_state.eval_cell_pred = worst
    c1, c2 = st.columns(2)
    name = report.class_name
    t = c1.selectbox("Cell: true class", labels, key="eval_cell_true", format_func=lambda c: f"{c}: {name(c)}")
    p = c2.selectbox("Cell: predicted class", labels, key="eval_cell_pred", format_func=lambda c: f"{c}: {name(c)}")
    idx = reports.cell_indices(report, t, p)
    st.caption(f"{len(idx)} image(s) of class {t} predicted as {p}" + (f"; showing {MAX_IMAGES}" if len(idx) > MAX_IMAGES else ""))
    if not report.stale:
        image_grid(report, idx[:MAX_IMAGES], key="cell")


def image_grid(report: reports.Report, idx: np.ndarray, *, key: str) -> int | None:
    """The report's images at ``idx``; returns the report index of a clicked thumbnail (or None)."""
    if not len(idx):
        return None
    pr = report.predictions
    clicked = thumbnail_grid(reports.report_images(report, idx),
                             [f"#{i}: {pr.y_pred[i]} ({pr.confidence[i]:.0%})" for i in idx], key=key, columns=GRID,
                             width=64)
    if clicked is not None:
        image_dialog(report, int(idx[clicked]))
        return int(idx[clicked])
    return None


def show_mistakes(report: reports.Report) -> None:
    st.subheader("Misclassified images")
    pr = report.predictions
    wrong_classes = reports.wrong_classes(report)
    if not wrong_classes:
        st.success("No misclassified images.")
        return
    c1, c2, c3 = st.columns([3, 2, 2])
    cid = c1.selectbox("True class", [None] + wrong_classes, key="eval_wrong_class",
                       format_func=lambda c: "All classes" if c is None else
                       f"{c}: {report.class_name(c)} ({len(reports.misclassified(report, c))} wrong)")
    low, high = c2.slider("Confidence of the wrong prediction", 0.0, 1.0, (0.0, 1.0), 0.05, key="eval_wrong_conf")
    order = c3.selectbox("Sort", reports.IMAGE_ORDERS, key="eval_wrong_order", format_func=ORDER_LABELS.get)
    idx = reports.misclassified(report, cid, min_confidence=low, max_confidence=high, order=order)
    st.caption(f"{len(idx)} misclassified image(s)" + (f"; showing {MAX_IMAGES}" if len(idx) > MAX_IMAGES else "")
               + ". Click a caption to open the image with its explanation.")
    idx = idx[:MAX_IMAGES]
    if not len(idx):
        st.info("No misclassified images in this selection.")
        return
    clicked = image_grid(report, idx, key="wrong")
    if clicked is not None:  # the panel below follows the clicked image
        st.session_state.eval_explain = clicked
    if st.session_state.get("eval_explain") not in set(idx.tolist()):
        st.session_state.eval_explain = int(idx[0])
    pick = st.selectbox("Explain image", idx.tolist(), key="eval_explain", format_func=lambda i: f"#{i}: {pr.files[i]} "
                        f"predicted {pr.y_pred[i]} ({report.class_name(int(pr.y_pred[i]))}), {pr.confidence[i]:.1%}")
    explain_one(report, int(pick))


def show_comparison(a: reports.Report, b: reports.Report) -> None:
    rows = pd.DataFrame(reports.compare_reports(a, b))
    warning = reports.comparison_warning(a, b)
    if warning:
        st.warning(f"Not like for like: {warning}.")
    st.caption(f"A: {a.summary['model']} on {a.summary['dataset']}/{a.summary['split']} \u2014 "
               f"B: {b.summary['model']} on {b.summary['dataset']}/{b.summary['split']}; delta = B \u2212 A")
    compared = metrics.list_headlines(compared=True)
    for col, key in zip(st.columns(len(compared)), compared):
        va, vb = a.summary["metrics"][key], b.summary["metrics"][key]
        col.metric(f"{metrics.get_headline(key).label} B", f"{vb:.4f}", f"{vb - va:+.4f}")
    options = metrics.list_compared()
    m = st.selectbox("Compared metric", options, format_func=lambda k: metrics.get_metric(k).label,
                     index=options.index(metrics.DEFAULT_CHART_METRIC) if metrics.DEFAULT_CHART_METRIC in options
                     else 0, key="eval_compare_metric")
    fig = px.bar(rows, x="class_id", y=f"{m}_delta", hover_data=["name", f"{m}_a", f"{m}_b"], height=300,
                 color=rows[f"{m}_delta"].fillna(0) >= 0, color_discrete_map={True: "#2e7d32", False: "#c62828"})
    fig.update_layout(showlegend=False, yaxis_title=f"{metrics.get_metric(m).label} delta (B \u2212 A)",
                      margin=dict(t=10, b=10))
    st.plotly_chart(fig, key="eval_compare_chart")
    st.dataframe(rows, hide_index=True, height=300)
