"""Improve model: incremental learning, transfer learning (frozen features or resume) or training from scratch."""
from __future__ import annotations

import dataclasses

import plotly.express as px
import streamlit as st

from core.learning import registry, training
from core import runs
from core.base import demo
from core.learning.train_run import TrainRun, saved_epochs
from core.analysis.curves import live_frames
from core.learning.distributed import PRECISIONS
from core.learning.models import ARCHITECTURES
from ui.widgets import pick_dataset, pick_model, run_status, show_model_stats
from ui.nav import ensure_router

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it

DEFAULTS = training.TrainConfig()
HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(training.TrainConfig)}


st.title("Improve model")
left, right = st.columns([1, 1])
with left:
    mode = st.radio("Mode", training.MODES, key="improve_mode", horizontal=True)
    about = training.MODE_DESCRIPTIONS[mode]
    st.caption(about[0].upper() + about[1:])
    base = None
    if mode != "scratch":
        base = pick_model("Base model", key="improve_base")
        if base:
            show_model_stats(base)
    info = pick_dataset(key="improve_dataset")
with right:
    with st.form("improve_form"):
        name = st.text_input("New model name", value="my-model", key="improve_name")
        c1, c2 = st.columns(2)
        epochs = c1.number_input("Epochs", 1, demo.DEMO_MAX_EPOCHS if demo.enabled() else 300, DEFAULTS.epochs,
                                 key="improve_epochs", help=HELP["epochs"])
        lr = c2.number_input("Learning rate", 1e-5, 0.5, DEFAULTS.lr, format="%.5f", key="improve_lr",
                             help=HELP["lr"])
        augment = st.checkbox("In-model augmentation (recommended)", value=DEFAULTS.augment, key="improve_augment",
                              help=HELP["augment"])
        arch = st.selectbox("Architecture (scratch only)", ARCHITECTURES, key="improve_arch", disabled=mode != "scratch",
                            index=ARCHITECTURES.index(DEFAULTS.architecture), help=HELP["architecture"])
        with st.expander("Advanced"):
            new_epochs = st.number_input("Incremental: epochs on new rows only", 1, 5, DEFAULTS.new_class_epochs,
                                         key="improve_new_epochs", help=HELP["new_class_epochs"])
            replay = st.number_input("Incremental: replayed images per old class", 0, 500, DEFAULTS.replay_per_class,
                                     key="improve_replay", help=HELP["replay_per_class"])
            lwf = st.number_input("Incremental: LwF distillation weight", 0.0, 10.0, DEFAULTS.lwf_weight,
                                  key="improve_lwf", help=HELP["lwf_weight"])
            teachers = st.multiselect("Distil from (teacher models)", [m.name for m in registry.list_models()],
                                      key="improve_teachers",
                                      help="The new model also learns the averaged, softened predictions of these "
                                           "models: folds an ensemble's accuracy into one network. Teachers must "
                                           "predict the model's classes (or its first ones).")
            distill = st.number_input("Distillation weight", 0.0, 50.0, DEFAULTS.distill_weight, key="improve_distill",
                                      help=HELP["distill_weight"])
            outlier = st.number_input("Outlier exposure weight (sharper novelty scores)", 0.0, 10.0,
                                      DEFAULTS.outlier_weight, key="improve_outlier", help=HELP["outlier_weight"])
            batch = st.number_input("Batch size", 8, 1024, DEFAULTS.batch_size, key="improve_batch",
                                    help=HELP["batch_size"])
            seed = st.number_input("Seed", 0, 2**31 - 1, DEFAULTS.seed, key="improve_seed", help=HELP["seed"])
            precision = st.selectbox("Arithmetic", PRECISIONS, index=PRECISIONS.index(DEFAULTS.precision),
                                     key="improve_precision", help=HELP["precision"])
        submitted = st.form_submit_button("Start training", type="primary")
    if submitted and info is not None and mode == "incremental" and epochs <= new_epochs:
        st.warning(f"With {epochs} epoch(s) in all and {new_epochs} on the new rows, only phase 1 runs: the new "
                   "classifier rows learn, every other weight stays as the base model's. Give more epochs to "
                   "fine-tune all layers too.")
    if submitted and info is not None:
        cfg = training.TrainConfig(mode=mode, architecture=arch, epochs=int(epochs), lr=float(lr), augment=augment,
                                   batch_size=int(batch), seed=int(seed), new_class_epochs=int(new_epochs),
                                   replay_per_class=int(replay), lwf_weight=float(lwf), teachers=tuple(teachers),
                                   distill_weight=float(distill), outlier_weight=float(outlier),
                                   precision=precision)
        try:
            job_id = runs.start("train", TrainRun(cfg, dataset=info.name, name=name,
                                                  base=base.name if base else None))
            st.session_state.improve_job = job_id
            st.success(f"Started training run {job_id}.")
        except ValueError as e:
            st.error(str(e))


def curve_chart(frame, y: str):
    """Batch means as a thin line, epoch values as markers; x in epochs (fractional for batches)."""
    fig = px.line(frame, x="epoch", y=y, color="curve", markers=True, height=250, title=y)
    fig.update_traces(selector=lambda t: "batches" in t.name, marker=dict(size=3), line=dict(width=1))
    fig.update_layout(margin=dict(t=40, b=10), legend_title_text="")
    return fig


@st.fragment(run_every=1.5)
def training_jobs() -> None:
    st.subheader("Training runs")
    recent = runs.list_runs("train")[:6]
    if not recent:
        st.caption("No training runs yet.")
        return
    for job in recent:
        with st.container(border=True):
            run_status(job)
            loss, acc = live_frames(job.get("history") or [], runs.curve_points(job["id"]))
            if len(loss):
                c1, c2 = st.columns(2)
                version = f"{job['id']}-{len(loss)}"
                c1.plotly_chart(curve_chart(loss, "loss"), key=f"loss-{version}")
                c2.plotly_chart(curve_chart(acc, "accuracy"), key=f"acc-{version}")
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
                st.success(f"Model **{r['model']}** saved: best val acc {r['best_val_acc']:.2%} "
                           f"(epoch {r['best_epoch']}), {r['seconds']:.0f} s. It is now in every model picker.")
                if r.get("classes_without_train_images"):
                    st.warning(f"The dataset had no train images for classes {r['classes_without_train_images']}: "
                               "the model kept them but may have forgotten them.")


training_jobs()
