"""Improve model: incremental learning, transfer learning (frozen features or resume) or training from scratch.

The run started here shows right under the form while it works; when it ends, a model trained from a base model
shows how it compares with that base on the same images (old and new classes, what regressed)."""
from __future__ import annotations

import dataclasses

import pandas as pd
import plotly.express as px
import streamlit as st

from core.learning import registry, training, vs_base
from core import runs
from core.base import demo
from core.data import datasets
from core.data.images import load_image
from core.learning.train_run import TrainRun, saved_epochs
from core.analysis.curves import live_frames
from core.learning.distributed import PRECISIONS
from core.learning.models import ARCHITECTURES
from ui.widgets import pick_dataset, pick_model, run_status, show_model_stats
from ui.nav import ensure_router

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it

DEFAULTS = training.TrainConfig()
HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(training.TrainConfig)}
#: Regressed images shown under a comparison.
SHOWN_IMAGES = 8
#: Plotly's toolbar would sit over the charts' titles.
CHART_CONFIG = {"displayModeBar": False}


def pct(x: float | None) -> str:
    return "\u2013" if x is None else f"{100 * x:.1f} %"


def images(n: int) -> str:
    return f"{n:,} image" + ("" if n == 1 else "s")


def default_dataset(base: registry.ModelInfo | None) -> str | None:
    """The dataset to offer first for ``base``: a workspace derived from its own dataset (where classes get
    added), else that dataset itself."""
    if base is None:
        return None
    infos = datasets.list_datasets()
    derived = [d.name for d in infos if d.kind == "workspace" and d.base == base.dataset]
    return derived[0] if derived else next((d.name for d in infos if d.name == base.dataset), None)


st.title("Improve model")
left, right = st.columns([1, 1])
with left:
    mode = st.radio("Mode", training.MODES, key="improve_mode",
                    persist_state="session", horizontal=True, format_func=training.MODE_LABELS.get)
    about = training.MODE_DESCRIPTIONS[mode]
    st.caption(about[0].upper() + about[1:])
    base = None
    if mode != "scratch":
        base = pick_model("Base model", key="improve_base")
        if base:
            show_model_stats(base)
    info = pick_dataset(key="improve_dataset", default=default_dataset(base))
with right:
    # enter_to_submit=False: Enter in a field only confirms it; training starts with the button alone.
    with st.form("improve_form", enter_to_submit=False):
        name = st.text_input("New model name", value="my-model", key="improve_name", persist_state="session")
        c1, c2 = st.columns(2)
        epochs = c1.number_input("Epochs", 1, demo.DEMO_MAX_EPOCHS if demo.enabled() else 300, DEFAULTS.epochs,
                                 key="improve_epochs", persist_state="session", help=HELP["epochs"])
        rate = "finetune_lr" if mode == "incremental" else "lr"  # adding classes fine-tunes at its own, lower rate
        lr = c2.number_input("Learning rate", 1e-5, 0.5, getattr(DEFAULTS, rate), format="%.5f",
                             key=f"improve_{rate}", persist_state="session", help=HELP[rate])
        augment = st.checkbox("In-model augmentation (recommended)", value=DEFAULTS.augment, key="improve_augment",
                              persist_state="session",
                              help=HELP["augment"])
        arch = st.selectbox("Architecture (from scratch only)", ARCHITECTURES, key="improve_arch",
                            persist_state="session",
                            disabled=mode != "scratch", index=ARCHITECTURES.index(DEFAULTS.architecture),
                            help=HELP["architecture"])
        with st.expander("Advanced"):
            new_epochs = st.number_input("Adding classes: epochs on the new classes only", 1, 5,
                                         DEFAULTS.new_class_epochs, key="improve_new_epochs", persist_state="session",
                                         help=HELP["new_class_epochs"])
            replay = st.number_input("Adding classes: replayed images per old class", 0, 500,
                                     DEFAULTS.replay_per_class, key="improve_replay",
                                     persist_state="session", help=HELP["replay_per_class"])
            old_lr = st.number_input("Adding classes: learning rate of the base model's layers (share)", 0.01, 1.0,
                                     DEFAULTS.old_layers_lr, key="improve_old_lr",
                                     persist_state="session", help=HELP["old_layers_lr"])
            align = st.checkbox("Adding classes: align the new classes' weights to the old ones'",
                                DEFAULTS.weight_align, key="improve_align",
                                persist_state="session", help=HELP["weight_align"])
            calibrate = st.checkbox("Adding classes: correct the new classes' scores on the validation images",
                                    DEFAULTS.calibrate_new_classes, key="improve_calibrate", persist_state="session",
                                    help=HELP["calibrate_new_classes"])
            lwf = st.number_input("Adding classes: weight of remembering the base model's answers", 0.0, 10.0,
                                  DEFAULTS.lwf_weight, key="improve_lwf",
                                  persist_state="session", help=HELP["lwf_weight"])
            teachers = st.multiselect("Distil from (teacher models)", [m.name for m in registry.list_models()],
                                      key="improve_teachers", persist_state="session",
                                      help="The new model also learns the averaged, softened predictions of these "
                                           "models: folds an ensemble's accuracy into one network. Teachers must "
                                           "predict the model's classes (or its first ones).")
            distill = st.number_input("Distillation weight", 0.0, 50.0, DEFAULTS.distill_weight, key="improve_distill",
                                      persist_state="session",
                                      help=HELP["distill_weight"])
            outlier = st.number_input("Outlier exposure weight (sharper novelty scores)", 0.0, 10.0,
                                      DEFAULTS.outlier_weight, key="improve_outlier",
                                      persist_state="session", help=HELP["outlier_weight"])
            batch = st.number_input("Batch size", 8, 1024, DEFAULTS.batch_size, key="improve_batch",
                                    persist_state="session",
                                    help=HELP["batch_size"])
            seed = st.number_input("Seed", 0, 2**31 - 1, DEFAULTS.seed, key="improve_seed",
                                   persist_state="session", help=HELP["seed"])
            precision = st.selectbox("Arithmetic", PRECISIONS, index=PRECISIONS.index(DEFAULTS.precision),
                                     key="improve_precision", persist_state="session", help=HELP["precision"])
        submitted = st.form_submit_button("Start training", type="primary")
    if submitted and info is not None and mode == "incremental" and epochs <= new_epochs:
        st.warning(f"With {epochs} epoch{'s' if epochs != 1 else ''} in all and {new_epochs} on the new classes "
                   "only, only phase 1 runs: the new classes' rows learn, every other weight stays as the base "
                   "model's. Give more epochs to fine-tune all layers too.")
    if submitted and info is not None:
        try:
            cfg = training.TrainConfig(
                mode=mode, architecture=arch, epochs=int(epochs), **{rate: float(lr)}, augment=augment,
                batch_size=int(batch), seed=int(seed), new_class_epochs=int(new_epochs), replay_per_class=int(replay),
                old_layers_lr=float(old_lr), weight_align=bool(align), calibrate_new_classes=bool(calibrate),
                lwf_weight=float(lwf),
                teachers=tuple(teachers), distill_weight=float(distill), outlier_weight=float(outlier),
                precision=precision)
            job_id = runs.start("train", TrainRun(cfg, dataset=info.name, name=name.strip(),
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


def show_vs_base(cmp: dict, base_name: str) -> None:
    """How the new model compares with its base on the same images: a table, the regressed classes and images."""
    old, new = cmp["old_classes"], cmp["new_classes"]
    st.markdown(f"**Compared with {base_name}** on the {cmp['split']} images of {cmp['dataset']} "
                f"({images(cmp['images'])}):")
    rows = [(f"Old classes (the base model's, {old['classes']})", old), (f"New classes ({new['classes']})", new)]
    st.table(pd.DataFrame([{"": label, "images": g["images"], "before": pct(g["before"]), "after": pct(g["after"])}
                           for label, g in rows if g["images"]]).set_index(""))
    if old["images"] and old["before"] - old["after"] > cmp["regression_points"] / 100:
        lost = cmp["regressed_images_total"]
        st.warning(f"The base model's classes lost accuracy: {pct(old['before'])} before, {pct(old['after'])} "
                   f"after; {images(lost)} it got right {'is' if lost == 1 else 'are'} now wrong.")
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


@st.fragment(run_every=1.5)
def current_run() -> None:
    """The run started here (or, before one, the newest one still working), near the top of the page."""
    job = runs.get(st.session_state["improve_job"]) if "improve_job" in st.session_state else None
    if job is None:  # a training started elsewhere (another tab, the command line) stays here once seen
        job = next(iter(runs.list_runs("train", statuses=runs.ACTIVE)), None)
        if job is not None:
            st.session_state.improve_job = job["id"]
    st.session_state.improve_shown = job["id"] if job is not None else None
    if job is not None:
        with st.container(border=True):
            show_job(job, details=True)


@st.fragment(run_every=1.5)
def training_jobs() -> None:
    st.subheader("Earlier training runs")
    shown = st.session_state.get("improve_shown")
    recent = [j for j in runs.list_runs("train") if j["id"] != shown][:6]
    if not recent:
        st.caption("No other training runs yet.")
    for job in recent:
        with st.container(border=True):
            show_job(job, details=False)


with right:
    current_run()
training_jobs()
