"""The Make more like these page's views: the two sources (a report's mistakes, ticked on a grid, or images of a
dataset named one a line), the method settings, the ``generate`` runs' progress, a finished run's preview (each
source image, then the images made near it, each with a "keep" box) and the panel that adds the kept ones to a
workspace. Everything previewed is read back from the run's folder (:func:`core.feedback.generate_run.load_preview`):
nothing is generated again on a rerun."""
from __future__ import annotations

import time

import numpy as np
import streamlit as st

from core import runs
from core.analysis import reports
from core.base import demo
from core.base.text import plural
from core.data import datasets, workspaces
from core.feedback import generate, generate_run, methods, sources
from core.learning import registry
from ui.widgets import follow_runs, pick_dataset, pick_model

#: The sources of the images to make more like, as the radio names them.
SOURCES = {"report": "A report's mistakes", "dataset": "Images of a dataset"}
#: At most this many of a report's images on the picking grid (the most confident mistakes first).
MAX_GRID = 48
#: Thumbnails per row on the grid (room for a "true → predicted · 93 %" label under each).
GRID = 6
#: Generated images per row of the preview, after the source's (wider) column.
PREVIEW_ROW = 8
PREVIEW_COLUMNS = [2] + [1] * PREVIEW_ROW
#: Source images shown in the preview (with their generated ones); those made near the rest are kept.
MAX_PREVIEW_SOURCES = 24
#: The "into" option that derives a new workspace from the source's (built) dataset.
NEW_WORKSPACE = ""


def more_like_these(dataset: str, files: list[str], *, model: str | None = None) -> None:
    """Open this page with ``files`` of ``dataset`` as its source: a Data issues or Visualise selection."""
    st.session_state.update(gen_source="dataset", gen_dataset=dataset, gen_refs="\n".join(files))
    if model is not None:
        st.session_state.gen_model = model
    st.switch_page("pages/generate.py")


def _pct(confidence: float) -> str:
    return f"{100 * confidence:.0f} %"


def report_source() -> dict | None:
    """Pick a report and tick some of its images; returns the :class:`GenerateRun` source fields, or None."""
    records = reports.list_reports()  # newest first
    if not records:
        st.info("No reports yet: evaluate a model first (Evaluate models), then come back to make more images "
                "like the ones it got wrong.")
        st.page_link("pages/evaluate.py", label="Evaluate models", icon=":material/analytics:")
        return None
    by_id = {r["id"]: r for r in records}
    rid = st.selectbox("Report", list(by_id), key="gen_report", persist_state="session",
                       format_func=lambda i: reports.report_label(by_id[i]))
    c1, c2 = st.columns([1, 2])
    low = c1.checkbox("Low confidence too", key="gen_low", persist_state="session",
                      help="Also offer the images the model classified correctly but with low confidence")
    bound = c2.slider("Correct images below confidence", 0.05, 1.0, 0.6, 0.05, key="gen_low_conf",
                      persist_state="session", disabled=not low)
    try:
        report = reports.load_report(rid)
        rows = sources.report_rows(report, which="both" if low else "misclassified", max_confidence=bound)
        shown = rows[:MAX_GRID]
        images = reports.report_images(report, shown)
    except ValueError as e:  # a stale report (its dataset changed), a deleted one
        st.error(str(e))
        return None
    if not len(rows):
        st.info("This report has no misclassified images" + ("." if low else ": tick Low confidence too to pick "
                                                                          "among the correct but unsure ones."))
        return None
    st.caption(f"{plural(len(rows), 'image')}" + (f"; showing the first {MAX_GRID}" if len(rows) > MAX_GRID else "")
               + ". Tick the ones to make more like (caption: true \u2192 predicted class \u00b7 confidence).")
    try:
        known = set(registry.get_model(report.summary["model"]).class_ids) or None
    except ValueError:  # the report's model is gone: Generate says so
        known = None
    lacking = 0 if known is None else int(sum(int(report.predictions.y_true[i]) not in known for i in shown))
    if lacking:
        st.caption(f"{plural(lacking, 'image')} shown {'is' if lacking == 1 else 'are'} of classes the model "
                   f"{report.summary['model']} lacks (greyed out): evaluate on the model's classes only to hide them.")
    picked = image_picker(report, rid, shown, images, known=known)
    if not picked:
        st.caption("Tick at least one image.")
        return None
    return {"model": report.summary["model"], "report": rid, "indices": tuple(picked)}


def image_picker(report: reports.Report, rid: str, rows: np.ndarray, images: list, *,
                 known: set[int] | None) -> list[int]:
    """A grid of the report's images, a checkbox under each; returns the ticked report rows in grid order.
    ``known``: the model's classes (an image of another class cannot be ticked: the methods need the model to know
    its true class), None to allow every one."""
    p = report.predictions
    picked = []
    cols = st.columns(GRID)
    for k, (i, image) in enumerate(zip(rows.tolist(), images)):
        t, q = int(p.y_true[i]), int(p.y_pred[i])
        lacking = known is not None and t not in known
        with cols[k % GRID]:
            st.image(image, width=72)
            if st.checkbox(f"{t}\u2192{q} \u00b7 {_pct(p.confidence[i])}", key=f"gen_pick_{rid}_{i}",
                           disabled=lacking,
                           help=f"#{i}: {p.files[i]}; true {t}: {report.class_name(t)}, predicted {q}: "
                                f"{report.class_name(q)}" + (f". The model has no class {t}: it cannot make images "
                                                             "of it" if lacking else "")) and not lacking:
                picked.append(i)
    return picked


def dataset_source() -> dict | None:
    """Pick a dataset, a model and name images of it one a line; returns the source fields, or None."""
    c1, c2 = st.columns(2)
    with c1:
        info = pick_dataset(key="gen_dataset")
    names = [m.name for m in registry.list_models()]
    if "benchmark" in names and st.session_state.get("gen_model") not in names:
        st.session_state.gen_model = "benchmark"  # the shipped classifier unless the user chose another
    with c2:
        model = pick_model("Model (its verdict on each image is recorded)", key="gen_model")
    text = st.text_area("Images, one a line", key="gen_refs", height=120, placeholder="val/14/00012_00003.png",
                        help="Their files as Explore dataset lists them (val/00012_00003.png), or an added image's id")
    refs = tuple(line.strip() for line in text.splitlines() if line.strip())
    if info is None or model is None or not refs:
        return None
    return {"model": model.name, "dataset": info.name, "refs": refs}


def method_settings() -> dict:
    """The method, images per source image and seed, as :class:`GenerateRun` fields."""
    names = methods.list_methods()
    c1, c2, c3 = st.columns([3, 2, 2])
    method = c1.selectbox("Method", names, key="gen_method", persist_state="session",
                          format_func=lambda m: methods.get_method(m).label,
                          help="  \n".join(f"**{methods.get_method(m).label}**: {methods.get_method(m).description}"
                                           for m in names))
    per_image = c2.number_input("Images per mistake", 1, generate.MAX_PER_IMAGE, 4, key="gen_per_image",
                                persist_state="session", help=f"1 to {generate.MAX_PER_IMAGE} new images near each")
    seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="gen_seed", persist_state="session",
                           help="The same seed, method and images make the same new images")
    st.caption(methods.get_method(method).description)
    return {"method": method, "per_image": int(per_image), "seed": int(seed)}


def start(request: dict) -> None:
    """Start a ``generate`` run; the poller opens its preview when it ends."""
    try:
        job = runs.start("generate", generate_run.GenerateRun(**request))
    except ValueError as e:
        st.error(str(e))
        return
    st.session_state.setdefault("_gen_watch", set()).add(job)
    st.success(f"Started {job}: the preview opens here when it ends.")


def finished_runs() -> list[dict]:
    """The finished generate runs this session may see, newest first."""
    return [r for r in runs.list_runs("generate", statuses=("done",)) if demo.visible(r.get(demo.SESSION_FIELD))]


@st.fragment(run_every=1.0)
def generate_jobs() -> None:
    """The generate runs under way (progress, cancel) and this session's failed ones; a run that ends opens."""
    follow_runs("generate", prefix="gen", open_key="gen_open")


def pick_run() -> str | None:
    """Choose a finished generate run to preview (the newest, or the one that just ended, first)."""
    done = finished_runs()
    if not done:
        return None
    by_id = {j["id"]: j for j in done}
    if st.session_state.get("gen_open") not in by_id:
        st.session_state.gen_open = done[0]["id"]
    return st.selectbox("Generated", list(by_id), key="gen_open", format_func=lambda i: (
        f"{by_id[i]['title']} \u00b7 {time.strftime('%H:%M, %d %b', time.localtime(by_id[i]['created']))}"))


@st.cache_resource(max_entries=4, show_spinner="Reading the generated images...")
def cached_preview(run_id: str) -> generate.Generated:
    """A finished run's generated images; they never change, so one read per run."""
    return generate_run.load_preview(run_id)


def show_preview(run_id: str, gen: generate.Generated) -> list[int]:
    """Each source image, then the images made near it with a "keep" box each (ticked); returns the indices of
    ``gen.images`` kept."""
    label = methods.get_method(gen.method).label if gen.method in methods.list_methods() else gen.method
    st.subheader("Preview")
    st.caption(f"{plural(len(gen.images), 'new image')} by {label} near {plural(len(gen.mistakes), 'source image')} "
               f"(seed {gen.seed}, model {gen.model}, generator version {gen.generator_version}). Each row: the "
               "source on the left, then the new images labelled with its true class; untick the ones not to keep.")
    if gen.message:
        st.info(gen.message, icon=":material/info:")
    for s, mistake in enumerate(gen.mistakes[:MAX_PREVIEW_SOURCES]):
        made = np.flatnonzero(gen.source == s).tolist()
        with st.container(border=True):
            verdict = "?" if mistake.predicted_id is None else mistake.predicted_id
            for start in range(0, max(1, len(made)), PREVIEW_ROW):
                cols = st.columns(PREVIEW_COLUMNS)  # the source's column wider: its caption on one line
                if start == 0:
                    cols[0].image(mistake.image, width=64)  # (an image's caption wraps at the image's width)
                    cols[0].caption(f"source {mistake.class_id}\u2192{verdict} \u00b7 {_pct(mistake.confidence)}")
                for col, j in zip(cols[1:], made[start:start + PREVIEW_ROW]):
                    with col:
                        st.image(gen.images[j], width=64)
                        st.checkbox("keep", value=True, key=f"gen_keep_{run_id}_{j}")
    if len(gen.mistakes) > MAX_PREVIEW_SOURCES:
        st.caption(f"The images made near the other {len(gen.mistakes) - MAX_PREVIEW_SOURCES} source images are "
                   "not shown; they are kept.")
    return [j for j in range(len(gen.images)) if st.session_state.get(f"gen_keep_{run_id}_{j}", True)]


def _add(run_id: str, target: str, new_name: str, split: str, force: bool, keep: list[int]) -> None:
    """Button callback: add the kept images (into a workspace derived first when asked); a refusal leaves nothing
    behind, not even the derived workspace."""
    derived = None
    try:
        gen = cached_preview(run_id)
        name = target
        if target == NEW_WORKSPACE:
            info = datasets.get_dataset(gen.mistakes[0].dataset)
            name, made = workspaces.change_target(info, new_name.strip(), doing="add the generated images")
            derived = name if made else None
        done = generate.add_generated(name, gen, split=split, keep=keep, force_test=force)
    except ValueError as e:
        if derived:
            workspaces.delete(derived)
        st.session_state.gen_add_message = (run_id, "error", str(e))
        return
    st.session_state.gen_add_message = (run_id, "success", done.message)
    st.session_state.gen_into = done.workspace
    st.session_state.added_ws = done.workspace  # Added images opens on it


def add_panel(run_id: str, gen: generate.Generated, keep: list[int]) -> None:
    """Add the kept images to a workspace (or one derived now from the source's built dataset), to a split."""
    st.subheader("Add to a workspace")
    source = gen.mistakes[0].dataset if gen.mistakes else ""
    spaces = workspaces.list_workspaces()
    by_name = {w.name: w for w in sorted(spaces, key=lambda w: w.base != source and w.name != source)}
    built = [d for d in datasets.list_datasets() if d.kind == "built" and d.name == source]
    options = list(by_name) + ([NEW_WORKSPACE] if built else [])
    if not options:
        st.info(f"No workspace to add to: derive one from {source or 'a built dataset'} on Add new classes.")
        return
    if st.session_state.get("gen_into") not in options:
        st.session_state.gen_into = options[0]
    c1, c2, c3 = st.columns([3, 2, 2])
    target = c1.selectbox("Into", options, key="gen_into", format_func=lambda n: (
        f"a new workspace of {source}" if n == NEW_WORKSPACE else f"{n} (workspace of {by_name[n].base})"))
    new_name = ""
    if target == NEW_WORKSPACE:
        new_name = c2.text_input("New workspace name", value=workspaces.free_name(f"{source}-generated"),
                                 key="gen_new_workspace",
                                 help=f"{source} is a built dataset and never changes: adding derives this workspace "
                                      "from it first")
    split = c3.selectbox("Split", datasets.SPLITS, key="gen_split", persist_state="session")
    force = False
    if split == "test":
        st.warning("A test split measures the model on real images: generated ones there make its numbers "
                   "say less. They go there only if you force it.")
        force = st.checkbox("Add them to the test split anyway", key="gen_force")
    st.button(f"Add {plural(len(keep), 'image')} to the workspace", key="gen_add", type="primary", disabled=not keep,
              on_click=_add, args=(run_id, target, new_name, split, force, keep))
    # The last add's outcome stays while this run is shown (until the next add), so a rerun (another widget, a
    # timer) does not take away the message and its link.
    shown, kind, text = st.session_state.get("gen_add_message", (None, None, None))
    if shown != run_id:
        kind = None
    if kind:
        getattr(st, kind)(text)
    if kind == "success":
        st.page_link("pages/added_images.py", label="Open Added images", icon=":material/photo_library:")
