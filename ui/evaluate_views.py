"""Rendering of an evaluation report: metrics, per-class charts, confusion matrix, mistakes, comparison
(explanations of one image: ui/explain_views.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from core.analysis import metrics, reports, slices
from ui.explain_views import explain_one, image_dialog
from ui.export_views import report_downloads
from ui.widgets import plural, thumbnail_grid


GRID = 8
MAX_IMAGES = 48
#: Charts without Plotly's toolbar, which covered their titles.
CHART = {"displayModeBar": False}
#: Per-class metrics shown in the table (the others in "All per-class metrics").
TABLE_METRICS = ("precision", "recall", "f1")
#: Classes in the per-class chart (the worst ones).
CHART_CLASSES = 15
#: Reports up to this many images get their slices at once; larger ones when asked (their images are measured).
SLICES_AT_ONCE = 2000
ORDER_LABELS = {"confidence_desc": "most confident first", "confidence_asc": "least confident first",
                "index": "dataset order"}


def show_report(report: reports.Report) -> None:
    s = report.summary
    st.caption(f"{s['model']} on {s['dataset']}/{s['split']}: {plural(s['n'], 'image')}, {s['images_per_s']:.0f} "
               "images/s" + (f"; dataset version {s['dataset_version']}" if s.get("dataset_version") else "")
               + (f"; test-time augmentation: {s['tta_views']} views averaged" if s.get("tta_views", 1) > 1 else ""))
    if report.stale:
        st.warning(f"Stale report: {report.stale}")
    ov = s["metrics"]
    headlines = metrics.list_headlines()
    for col, key in zip(st.columns(len(headlines)), headlines):
        col.metric(metrics.get_headline(key).label, f"{100 * ov[key]:.2f} %", help=metrics.get_headline(key).help)
    report_downloads(report.id)
    with st.expander("All overall metrics"):
        st.dataframe(pd.DataFrame([{"metric": k, "value": v} for k, v in ov.items()]), hide_index=True)
    table = reports.per_class_frame(report)
    st.subheader("Per class")
    show_per_class(table)
    show_class_chart(table)
    show_confusion(report)
    if not report.stale:  # the files it names may hold other images now
        show_mistakes(report)


def show_per_class(table: pd.DataFrame) -> None:
    """The per-class table, narrow: class, images and three metrics; every metric in an expander."""
    shown = reports.readable_per_class(table)
    shown.insert(0, "class", table["class_id"].astype(str) + ": " + table["name"])
    percent = [m for m in metrics.list_metrics() if m in shown and metrics.get_metric(m).format == "percent"]
    shown[percent] = shown[percent] * 100  # read as "92.1 %"
    config = {m: st.column_config.NumberColumn(metrics.get_metric(m).label, help=metrics.get_metric(m).help,
                                               format="%.1f %%" if m in percent else None)
              for m in metrics.list_metrics() if m in shown and metrics.get_metric(m).format != "ratio"}
    config["support"] = st.column_config.NumberColumn("images")
    st.dataframe(shown[["class", "support", *TABLE_METRICS]], hide_index=True, height=300, column_config=config,
                 key="eval_per_class")
    with st.expander("All per-class metrics"):
        st.dataframe(shown.drop(columns=["class_id", "name"]), hide_index=True, column_config=config)


def show_class_chart(table: pd.DataFrame) -> None:
    """The worst classes for a chosen metric, as horizontal bars labelled "id: name" in full."""
    metric = st.selectbox("Chart metric", metrics.list_metrics(),
                          index=metrics.list_metrics().index(metrics.DEFAULT_CHART_METRIC),
                          format_func=lambda m: metrics.get_metric(m).label, key="eval_metric", persist_state="session")
    ordered = reports.worst_first(table, metric).head(CHART_CLASSES).assign(
        label=lambda d: d["class_id"].astype(str) + ": " + d["name"])
    fig = px.bar(ordered, y="label", x=metric, orientation="h", hover_data=["support"],
                 height=90 + 22 * len(ordered))
    fig.update_layout(margin=dict(t=30, b=10), xaxis_title=metrics.get_metric(metric).label, yaxis_title=None,
                      title=f"The {plural(len(ordered), 'worst class', 'worst classes')} by "
                            f"{metrics.get_metric(metric).label}",
                      yaxis=dict(categoryorder="array", categoryarray=list(ordered["label"]), autorange="reversed"))
    st.plotly_chart(fig, key="eval_metric_chart", config=CHART)


def show_confusion(report: reports.Report) -> None:
    st.subheader("Confusion matrix")
    labels = report.summary["labels"]
    cells = reports.confusion_cells(report)
    side = min(900, max(360, 16 * len(labels)))  # about 16 px a class, so squares never overlap
    # A scatter of square markers, one per non-empty cell: unlike a heatmap, its points can be clicked.
    counts = [c for c in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if c <= max(cells["count"].max(), 1)]
    fig = px.scatter(cells, x="predicted", y="true", color="log_count", custom_data=["count", "true_name", "pred_name"],
                     color_continuous_scale=["#fcae91", "#a50f15", "#3b0000"], height=side + 80)
    fig.update_traces(marker=dict(symbol="square", size=max(4, int(0.8 * side / max(len(labels), 1))),
                                  line=dict(width=0)),
                      hovertemplate="true %{y}: %{customdata[1]}<br>predicted %{x}: %{customdata[2]}<br>"
                                    "%{customdata[0]} images<extra></extra>")
    axis = dict(tickmode="array", tickvals=labels, range=[min(labels) - 1, max(labels) + 1], dtick=1)
    fig.update_layout(xaxis=dict(title="predicted class id", **axis), margin=dict(t=10, b=10),
                      yaxis=dict(title="true class id", autorange="reversed",
                                 **{k: v for k, v in axis.items() if k != "range"}),
                      coloraxis_colorbar=dict(title="images<br>(log scale)", tickvals=list(np.log1p(counts)),
                                              ticktext=[str(c) for c in counts]))
    st.caption("Colour: number of images, on a log scale. Hover a cell for the class names; click it to see the "
               "images behind it (or pick it below).")
    event = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key="eval_confusion", config=CHART)
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
    t = c1.selectbox("Cell: true class", labels, key="eval_cell_true",
                     persist_state="session", format_func=lambda c: f"{c}: {name(c)}")
    p = c2.selectbox("Cell: predicted class", labels, key="eval_cell_pred",
                     persist_state="session", format_func=lambda c: f"{c}: {name(c)}")
    idx = reports.cell_indices(report, t, p)
    st.caption(f"{plural(len(idx), 'image')} of class {t}: {name(t)} predicted as {p}: {name(p)}"
               + (f"; showing {MAX_IMAGES}" if len(idx) > MAX_IMAGES else ""))
    if not report.stale:
        image_grid(report, idx[:MAX_IMAGES], key="cell")


def image_grid(report: reports.Report, idx: np.ndarray, *, key: str) -> int | None:
    """The report's images at ``idx``; returns the report index of a clicked thumbnail (or None)."""
    if not len(idx):
        return None
    pr = report.predictions
    clicked = thumbnail_grid(reports.report_images(report, idx),
                             [f"#{i}: {pr.y_pred[i]} ({pr.confidence[i]:.0%})" for i in idx], key=key, columns=GRID,
                             width=64, helps=[f"true {pr.y_true[i]}: {report.class_name(int(pr.y_true[i]))}; "
                                              f"predicted {pr.y_pred[i]}: {report.class_name(int(pr.y_pred[i]))}"
                                              for i in idx])
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
    cid = c1.selectbox("True class", [None] + wrong_classes, key="eval_wrong_class", persist_state="session",
                       format_func=lambda c: "All classes" if c is None else
                       f"{c}: {report.class_name(c)} ({len(reports.misclassified(report, c))} wrong)")
    low, high = c2.slider("Confidence of the wrong prediction", 0.0, 1.0, (0.0, 1.0), 0.05, key="eval_wrong_conf",
                          persist_state="session")
    order = c3.selectbox("Sort", reports.IMAGE_ORDERS, key="eval_wrong_order",
                         persist_state="session", format_func=ORDER_LABELS.get)
    idx = reports.misclassified(report, cid, min_confidence=low, max_confidence=high, order=order)
    st.caption(f"{plural(len(idx), 'misclassified image')}" + (f"; showing {MAX_IMAGES}" if len(idx) > MAX_IMAGES
                                                                else "")
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
    pick = st.selectbox("Explain image", idx.tolist(), key="eval_explain",
                        persist_state="session", format_func=lambda i: f"#{i}: {pr.files[i]} "
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
                     else 0, key="eval_compare_metric", persist_state="session")
    rows.insert(0, "class", rows["class_id"].astype(str) + ": " + rows["name"])
    fig = px.bar(rows, x="class_id", y=f"{m}_delta", hover_data=["class", f"{m}_a", f"{m}_b"], height=300,
                 color=rows[f"{m}_delta"].fillna(0) >= 0, color_discrete_map={True: "#2e7d32", False: "#c62828"})
    fig.update_layout(showlegend=False, yaxis_title=f"{metrics.get_metric(m).label} delta (B \u2212 A)",
                      xaxis_title="class id (hover for its name)", margin=dict(t=10, b=10))
    st.plotly_chart(fig, key="eval_compare_chart", config=CHART)
    st.dataframe(rows.drop(columns=["class_id", "name"]), hide_index=True, height=300)


@st.cache_data(show_spinner="Measuring the report's images...", max_entries=8)
def _slices(report_id: str, dataset_version: str | None, bins: int, min_images: int) -> slices.SliceResult:
    return slices.report_slices(reports.load_report(report_id), bins=bins, min_images=min_images)


def _percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def slice_rows(found: list) -> pd.DataFrame:
    """Slices as a table for people: slice, images, accuracy, gap to overall (percentage points)."""
    return pd.DataFrame([{"slice": s.label, "images": s.n, "accuracy": _percent(s.accuracy),
                          "gap to overall": f"{100 * s.gap:+.1f} points"} for s in found],
                        columns=["slice", "images", "accuracy", "gap to overall"])


def show_slices(report: reports.Report) -> None:
    """The report's underperforming slices (:mod:`core.analysis.slices`) and the images of a chosen one."""
    st.caption("Where the model does worse than overall: the report's images grouped by brightness, contrast, "
               "sharpness (variance of the Laplacian; low = blurry), the sign's size in the original image and "
               "source. Each numeric property is cut into quantile bins, about as many images in each.")
    if report.stale:
        st.info("This report's dataset has changed, so its images cannot be measured. Evaluate again.")
        return
    c1, c2 = st.columns(2)
    bins = c1.slider("Bins per property", 2, 8, slices.DEFAULT_BINS, key="eval_slice_bins", persist_state="session")
    least = int(c2.number_input("Smallest slice ranked (images)", 1, 10_000, slices.DEFAULT_MIN_IMAGES,
                                key="eval_slice_min", persist_state="session"))
    if report.summary["n"] > SLICES_AT_ONCE and not st.session_state.get("eval_slices_on"):
        st.caption(f"Measuring {plural(report.summary['n'], 'image')} takes a moment.")
        if not st.button("Find underperforming slices", key="eval_slices_go"):
            return
        st.session_state.eval_slices_on = True  # from now on for every report of this session
    try:
        res = _slices(report.id, report.summary.get("dataset_version"), bins, least)
    except ValueError as e:
        st.error(str(e))
        return
    unknown = res.unknown.get("sign_size", 0)
    st.caption(f"Overall accuracy {_percent(res.overall)} on {plural(res.n, 'image')}."
               + (" Sign size: not known (the dataset records no original size)." if unknown == res.n else
                  f" Sign size: not known for {plural(unknown, 'image')}." if unknown else ""))
    if not res.worst:
        st.success(f"No slice of at least {plural(least, 'image')} does worse than overall.")
    else:
        st.subheader("Worst slices")
        st.dataframe(slice_rows(res.worst[:10]), hide_index=True, key="eval_worst_slices")
        pick = st.selectbox("Show the images of", range(min(10, len(res.worst))), key="eval_slice_pick",
                            persist_state="session",
                            format_func=lambda k: f"{res.worst[k].label} ({_percent(res.worst[k].accuracy)})")
        chosen = res.worst[pick]
        p = report.predictions
        rows = chosen.rows[np.argsort(p.y_true[chosen.rows] == p.y_pred[chosen.rows], kind="stable")]
        wrong = int((p.y_true[chosen.rows] != p.y_pred[chosen.rows]).sum())
        st.caption(f"{plural(chosen.n, 'image')}, {wrong} wrong (shown first)"
                   + (f"; showing {MAX_IMAGES}" if chosen.n > MAX_IMAGES else "") + ". Click one to open it.")
        image_grid(report, rows[:MAX_IMAGES], key="slice")
    with st.expander("Every slice"):
        st.dataframe(slice_rows(res.slices), hide_index=True)
