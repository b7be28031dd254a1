"""Improve model: incremental learning, transfer learning (frozen features or resume) or training from scratch.

The run started here shows right under the form while it works; when it ends, a model trained from a base model
shows how it compares with that base on the same images (old and new classes, what regressed)."""
from __future__ import annotations

import dataclasses

import streamlit as st

from core.learning import registry, training
from core import runs
from core.base import demo
from core.learning.train_run import TrainRun
from core.learning.distributed import PRECISIONS
from core.learning.models import ARCHITECTURES
from core.learning.training_config import AUGMENT_ENGINES, HARDEN_AT, OUTLIER_LOSSES
from ui.train_views import show_job
from ui.widgets import pick_dataset, pick_model, show_model_stats
from ui.nav import ensure_router

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it

DEFAULTS = training.TrainConfig()
HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(training.TrainConfig)}


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
    info = pick_dataset(key="improve_dataset", default=registry.default_dataset(base))
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
            outlier_loss = st.selectbox("Outlier exposure term", OUTLIER_LOSSES,
                                        index=OUTLIER_LOSSES.index(DEFAULTS.outlier_loss), key="improve_outlier_loss",
                                        persist_state="session", help=HELP["outlier_loss"])
            harden = st.number_input("Hardening against camera corruptions (probability per group)", 0.0, 1.0,
                                     DEFAULTS.harden_p, key="improve_harden", persist_state="session",
                                     help=HELP["harden_p"] + " (needs augmentation on)")
            harden_at = st.selectbox("Hardening acts on", HARDEN_AT, index=HARDEN_AT.index(DEFAULTS.harden_at),
                                     key="improve_harden_at", persist_state="session",
                                     format_func={"source": "the source image", "input": "the network input"}.get,
                                     help=HELP["harden_at"])
            batch = st.number_input("Batch size", 8, 1024, DEFAULTS.batch_size, key="improve_batch",
                                    persist_state="session",
                                    help=HELP["batch_size"])
            seed = st.number_input("Seed", 0, 2**31 - 1, DEFAULTS.seed, key="improve_seed",
                                   persist_state="session", help=HELP["seed"])
            precision = st.selectbox("Arithmetic", PRECISIONS, index=PRECISIONS.index(DEFAULTS.precision),
                                     key="improve_precision", persist_state="session", help=HELP["precision"])
            engine = st.selectbox("Augmentation engine", AUGMENT_ENGINES, key="improve_engine", persist_state="session",
                                  index=AUGMENT_ENGINES.index(DEFAULTS.augment_engine), help=HELP["augment_engine"])
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
                outlier_loss=outlier_loss, harden_p=float(harden), harden_at=harden_at,
                precision=precision, augment_engine=engine)
            job_id = runs.start("train", TrainRun(cfg, dataset=info.name, name=name.strip(),
                                                  base=base.name if base else None))
            st.session_state.improve_job = job_id
            st.success(f"Started training run {job_id}.")
        except ValueError as e:
            st.error(str(e))


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
