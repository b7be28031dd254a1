"""Rendering of an evaluation report: metrics, per-class charts, confusion matrix, mistakes, explanations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from core import explain, registry, reports, runs
from core.metrics import LR_CAP, METRIC_HELP, METRIC_LABELS, METRIC_NAMES
from pages._ui import ig_figure, load_model, run_status, thumbnail_grid

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
    cols = st.columns(5)
    for col, (key, text) in zip(cols, [("accuracy", "Accuracy"), ("macro_f1", "Macro F1"),
                                       ("macro_precision", "Macro precision"), ("macro_recall", "Macro recall"),
                                       ("mcc", "Matthews corr.")]):
        col.metric(text, f"{ov[key]:.4f}")
    with st.expander("All overall metrics"):
        st.dataframe(pd.DataFrame([{"metric": k, "value": v} for k, v in ov.items()]), hide_index=True)
    table = reports.per_class_frame(report)
    st.subheader("Per class")
    shown = table.copy()
    for col in ("plr", "nlr"):  # the JSON keeps a finite cap; a person reads infinity
        shown[col] = [("\u221e" if v >= LR_CAP else f"{v:.3g}") for v in shown[col]]
    st.dataframe(shown, hide_index=True, height=300,
                 column_config={m: st.column_config.Column(METRIC_LABELS[m], help=METRIC_HELP.get(m))
                                for m in METRIC_NAMES if m in shown})
    metric = st.selectbox("Chart metric", METRIC_NAMES, index=METRIC_NAMES.index("f1"),
                          format_func=lambda m: METRIC_LABELS[m], key="eval_metric")
    ordered = reports.worst_first(table, metric).assign(
        label=lambda d: d["class_id"].astype(str) + ": " + d["name"].str.slice(0, 24))
    fig = px.bar(ordered, x="label", y=metric, hover_data=["name", "support"], height=320)
    fig.update_layout(margin=dict(t=10, b=10), yaxis_title=METRIC_LABELS[metric], xaxis_title="class (worst first)",
                      xaxis=dict(categoryorder="array", categoryarray=list(ordered["label"])))
    st.plotly_chart(fig, key="eval_metric_chart")
    show_confusion(report)
    if not report.stale:  # the files it names may hold other images now
        show_mistakes(report)


def show_confusion(report: reports.Report) -> None:
    st.subheader("Confusion matrix")
    labels = report.summary["labels"]
    cells = reports.confusion_cells(report)
    cells["true_name"] = [report.class_name(int(c)) for c in cells["true"]]
    cells["pred_name"] = [report.class_name(int(c)) for c in cells["predicted"]]
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


@st.dialog("Image and explanation", width="large")
def image_dialog(report: reports.Report, index: int) -> None:
    pr = report.predictions
    t, p = int(pr.y_true[index]), int(pr.y_pred[index])
    st.markdown(f"**#{index}** `{pr.files[index]}`  \n**True** {t}: {report.class_name(t)}  \n"
                f"**Predicted** {p}: {report.class_name(p)} with {pr.confidence[index]:.1%} confidence"
                + ("" if t == p else "  \n:red[wrong]"))
    model_path = str(registry.get_model(report.summary["model"]).path)
    ckpt, _ = load_model(model_path)
    image, heat = ig_heatmap(model_path, report.id, index, ckpt["class_ids"].index(p))
    st.plotly_chart(ig_figure(image, heat, title="Integrated Gradients (predicted class)"), key="eval_dialog_ig")
    st.caption("Brighter = pixels that pushed the model more towards its prediction. Anchors for this image: "
               "pick it under Misclassified images.")


def show_mistakes(report: reports.Report) -> None:
    st.subheader("Misclassified images")
    pr = report.predictions
    wrong_classes = sorted(set(int(c) for c in pr.y_true[pr.y_true != pr.y_pred]))
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


@st.cache_data(show_spinner="Integrated Gradients...", max_entries=64)
def ig_heatmap(model_path: str, report_id: str, index: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, IG heat map) of one report image, computed once per (model, report, image)."""
    _, model = load_model(model_path)
    (image,) = reports.report_images(reports.load_report(report_id), [index])
    return image, explain.integrated_gradients(model, image, target=target).heatmap


def explain_one(report: reports.Report, index: int) -> None:
    (image,) = reports.report_images(report, [index])
    model_path = str(registry.get_model(report.summary["model"]).path)
    ckpt, _ = load_model(model_path)
    pred = int(report.predictions.y_pred[index])
    c1, c2 = st.columns([2, 1])
    key = (report.id, index)
    if c1.button("Explain with Integrated Gradients", key="eval_ig_run"):
        st.session_state.setdefault("eval_ig", set()).add(key)
    if key in st.session_state.get("eval_ig", set()):  # only when asked, then cached
        _, heat = ig_heatmap(model_path, report.id, index, ckpt["class_ids"].index(pred))
        c1.plotly_chart(ig_figure(image, heat, title="Integrated Gradients (predicted class)"), key="eval_ig_fig")
    else:
        c1.image(image, width=160, caption=f"true {report.predictions.y_true[index]}, predicted {pred}")
    threshold = c2.slider("Anchor precision threshold", 0.80, 0.99, 0.95, 0.01, key="eval_anchor_thr")
    if c2.button("Run Anchors", key="eval_anchor_run"):
        st.session_state[f"anchor-{report.id}-{index}"] = runs.start(
            "anchor", runs.AnchorRun(report=report.id, index=index, threshold=threshold))
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


def show_comparison(a: reports.Report, b: reports.Report) -> None:
    rows = pd.DataFrame(reports.compare_reports(a, b))
    warning = reports.comparison_warning(a, b)
    if warning:
        st.warning(f"Not like for like: {warning}.")
    st.caption(f"A: {a.summary['model']} on {a.summary['dataset']}/{a.summary['split']} \u2014 "
               f"B: {b.summary['model']} on {b.summary['dataset']}/{b.summary['split']}; delta = B \u2212 A")
    c = st.columns(2)
    c[0].metric("Accuracy B", f"{b.summary['accuracy']:.4f}", f"{b.summary['accuracy'] - a.summary['accuracy']:+.4f}")
    c[1].metric("Macro F1 B", f"{b.summary['macro_f1']:.4f}", f"{b.summary['macro_f1'] - a.summary['macro_f1']:+.4f}")
    fig = px.bar(rows, x="class_id", y="f1_delta", hover_data=["name", "f1_a", "f1_b"], height=300,
                 color=rows["f1_delta"].fillna(0) >= 0, color_discrete_map={True: "#2e7d32", False: "#c62828"})
    fig.update_layout(showlegend=False, yaxis_title="F1 delta (B \u2212 A)", margin=dict(t=10, b=10))
    st.plotly_chart(fig, key="eval_compare_chart")
    st.dataframe(rows, hide_index=True, height=300)
