"""The Improve page's training views: a run's status, curves and result, and how a model trained from a base
compares with it on the same images (old and new classes, what regressed)."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from core import runs
from core.analysis.curves import live_frames
from core.base.text import plural
from core.data import datasets
from core.data.images import load_image
from core.learning.train_run import saved_epochs
from ui.widgets import run_status

#: Regressed images shown under a comparison.
SHOWN_IMAGES = 8
#: Plotly's toolbar would sit over the charts' titles.
CHART_CONFIG = {"displayModeBar": False}


def pct(x: float | None) -> str:
    return "\u2013" if x is None else f"{100 * x:.1f} %"



def curve_chart(frame, y: str):
    """Batch means as a thin line, epoch values as markers; x in epochs (fractional for batches)."""
    fig = px.line(frame, x="epoch", y=y, color="curve", markers=True, height=250, title=y)
    fig.update_traces(selector=lambda t: "batches" in t.name, marker=dict(size=3), line=dict(width=1))
    fig.update_layout(margin=dict(t=40, b=10), legend_title_text="")
    return fig


def show_vs_base(cmp: dict, base_name: str) -> None:
    """How the new model compares with its base on the same images: a table, the regressed classes and images."""
    old, new = cmp["old_classes"], cmp["new_classes"]
    st.markdown(f"**Compared with {base_name}** on the {cmp['split']} images of {cmp['dataset']} "
                f"({plural(cmp['images'])}):")
    rows = [(f"Old classes (the base model's, {old['classes']})", old), (f"New classes ({new['classes']})", new)]
    st.table(pd.DataFrame([{"": label, "images": g["images"], "before": pct(g["before"]), "after": pct(g["after"])}
                           for label, g in rows if g["images"]]).set_index(""))
    if old["images"] and old["before"] - old["after"] > cmp["regression_points"] / 100:
        lost = cmp["regressed_images_total"]
        st.warning(f"The base model's classes lost accuracy: {pct(old['before'])} before, {pct(old['after'])} "
                   f"after; {plural(lost)} it got right {'is' if lost == 1 else 'are'} now wrong.")
    elif old["images"]:
        st.success(f"The base model's classes kept their accuracy: {pct(old['before'])} before, "
                   f"{pct(old['after'])} after.")
    if cmp["regressions"]:
        st.markdown("**Classes that lost accuracy**")
        table = pd.DataFrame([{"class": f"{r['class_id']}: {r['name']}", "images": r["images"],
                               "before": pct(r["before"]), "after": pct(r["after"]),
                               "change": f"{r['delta_points']:+.1f} pt"} for r in cmp["regressions"]])
        st.table(table.set_index("class"))
    shown = cmp["regressed_images"][:SHOWN_IMAGES]
    if shown:
        st.markdown(f"**Images the base model got right and this one gets wrong** ({len(shown)} of "
                    f"{cmp['regressed_images_total']})")
        info = next((d for d in datasets.list_datasets() if d.name == cmp["dataset"]), None)
        cols = st.columns(4)
        for k, im in enumerate(shown):
            with cols[k % 4]:
                if info is not None and info.image_path(im["file"]).is_file():
                    st.image(load_image(info.image_path(im["file"])), width=96)
                st.caption(f"{im['class_id']}: {im['name']}  \nbefore: {im['before']}: {im['before_name']}  \n"
                           f"after: {im['after']}: {im['after_name']}")


def show_job(job: dict, *, details: bool) -> None:
    """One training run: status, curves, buttons, and (``details``) the comparison with its base when done."""
    run_status(job)
    loss, acc = live_frames(job.get("history") or [], runs.curve_points(job["id"]))
    if len(loss):
        c1, c2 = st.columns(2)
        version = f"{job['id']}-{len(loss)}"
        c1.plotly_chart(curve_chart(loss, "loss"), key=f"loss-{version}", config=CHART_CONFIG)
        c2.plotly_chart(curve_chart(acc, "accuracy"), key=f"acc-{version}", config=CHART_CONFIG)
    if job["status"] in runs.ACTIVE:
        if runs.cancellable(job["id"]):
            if st.button("Cancel", key=f"cancel-{job['id']}"):
                runs.cancel(job["id"])
        else:
            st.caption("Running in another process (a command line?): stop it there, with Ctrl-C.")
    if runs.resumable(job):
        done = saved_epochs(job["id"])
        if st.button(f"Resume after epoch {done}", key=f"resume-{job['id']}",
                     help="Go on after the last finished epoch, with the same settings and random streams: "
                          "the result is the one an uninterrupted run would have given."):
            try:
                runs.resume(job["id"])
            except ValueError as e:
                st.error(str(e))
    if job["status"] == "done" and job.get("result"):
        r = job["result"]
        st.success(f"Model **{r['model']}** saved: best validation accuracy {pct(r['best_val_acc'])} "
                   f"(epoch {r['best_epoch']}), {r['seconds']:.0f} s. It is now in every model picker.")
        if r.get("classes_without_train_images"):
            st.warning(f"The dataset had no train images for classes {r['classes_without_train_images']}: "
                       "the model kept them but may have forgotten them.")
        if details and r.get("vs_base"):
            show_vs_base(r["vs_base"], job["config"].get("base") or "the base model")
