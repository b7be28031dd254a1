"""The Detect signs page's views: the settings, the detect runs' progress, a finished run's results (each photo with
its boxes as a clickable chart, each video's tracks on a timeline, one table of every detection), the chosen
detection's crop with the classifier's top-5 and Integrated Gradients, and the harvest panel that sends crops to a
workspace. Everything shown is read back from the run's folder (:func:`core.detection.detect_run.load_results`):
nothing is detected again on a rerun."""
from __future__ import annotations

import base64
import io
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from core import runs
from core.analysis import prediction
from core.analysis.embedding import selected_points
from core.base import demo
from core.base.text import plural
from core.data import datasets, workspaces
from core.detection import detect_run, pipeline, tracking
from core.detection.boxes import scale_boxes
from core.detection.results import Detection, FileResult
from core.learning import registry
from ui.cache import class_heatmap, load_model
from ui.widgets import follow_runs, ig_figure, pick_dataset, pick_model, top_k_bars

#: What the uploader takes: photos, and videos PyAV decodes (core.detection.video).
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "mp4", "webm", "mov"]
#: Box colours: a sign of the model's classes, and an unknown sign (the novelty check's verdict).
KNOWN_COLOUR = "#2e7d32"
NOVEL_COLOUR = "#ef6c00"
#: A photo is drawn at most this many pixels wide (its boxes scaled with it): a 40-megapixel photo as a chart
#: would be megabytes of page.
MAX_DRAWN_WIDTH = 1200
#: Best crops shown per row under a video.
CROPS_PER_ROW = 8


@st.cache_resource(max_entries=8, ttl=60, show_spinner=False)
def shipped_threshold(detector: str) -> float:
    """The detector's shipped operating threshold (its min score); read again after a minute (a retrained
    detector file)."""
    return float(pipeline.load_detector(detector).min_score)


@st.cache_resource(max_entries=8, show_spinner="Reading the results...")
def cached_results(run_id: str) -> tuple[dict, list[FileResult]]:
    """A finished run's saved summary and results; they never change, so one read per run."""
    return detect_run.read_summary(run_id), detect_run.load_results(run_id)


def settings() -> dict | None:
    """The detection settings (model, detector, min score, video frames per second) as :class:`DetectRun` fields;
    None while there is no model."""
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    names = [m.name for m in registry.list_models()]
    if "benchmark" in names and st.session_state.get("detect_model") not in names:
        st.session_state.detect_model = "benchmark"  # the shipped classifier unless the user chose another
    with c1:
        model = pick_model("Classifier model", key="detect_model")
    detector = c2.selectbox("Detector", pipeline.list_detectors(), key="detect_detector", persist_state="session",
                            help="**detector**: the shipped learned detector; **colour**: colour proposals, the "
                                 "approach it was compared against")
    try:
        shipped = shipped_threshold(detector)
    except ValueError as e:  # the learned detector's file is missing or broken
        c3.error(str(e))
        return None
    min_score = c3.slider("Min score", 0.0, 1.0, shipped, 0.01, key=f"detect_min_score_{detector}",
                          help=f"Boxes the detector scores below this are dropped; {shipped:.2f} is its shipped "
                               "operating threshold (lower finds more signs and more false alarms)")
    fps = c4.number_input("Video frames per second", 0.1, detect_run.MAX_FPS, 2.0, 0.5, key="detect_fps",
                          persist_state="session", help="How many frames of each second of video are analysed")
    if model is None:
        return None
    return {"model": model.name, "detector": detector, "fps": float(fps),
            "min_score": None if abs(min_score - shipped) < 1e-9 else float(min_score)}


@st.fragment(run_every=1.0)
def detect_jobs() -> None:
    """The detect runs under way (progress, cancel) and this session's failed ones; a run that ends opens."""
    follow_runs("detect", prefix="detect", open_key="detect_open")


def run_label(job: dict) -> str:
    """'2 files, 5 detections, 1 track · 14:02 (detect signs in ... with benchmark)'."""
    r = job.get("result") or {}
    when = time.strftime("%H:%M, %d %b", time.localtime(job["created"]))
    return (f"{plural(r.get('files', 0), 'file')}, {plural(r.get('detections', 0), 'detection')}, "
            f"{plural(r.get('tracks', 0), 'track')} \u00b7 {when} ({job['title']})")


def pick_run() -> str | None:
    """Choose a finished detect run (the newest, or the one that just ended, first)."""
    done = detect_run.list_finished()
    if not done:
        return None
    ids = [j["id"] for j in done]
    if st.session_state.get("detect_open") not in ids:
        st.session_state.detect_open = ids[0]
    by_id = {j["id"]: j for j in done}
    return st.selectbox("Results", ids, key="detect_open", format_func=lambda i: run_label(by_id[i]))


def detection_rows(results: list[FileResult]) -> list[dict]:
    """One table row per detection of every file, in file order; ``pick`` is its (file index, detection index)."""
    rows = []
    for k, r in enumerate(results):
        for j, d in enumerate(r.detections):
            rows.append({"file": r.file, "frame": "" if d.frame is None else str(d.frame),  # blank for a photo
                         "time (s)": "" if d.time_s is None else f"{d.time_s:.2f}",
                         "track": "" if d.track is None else str(d.track), "label": d.label,
                         "confidence": float(d.confidence),
                         "score": round(float(d.score), 3), "novel": bool(d.novel),
                         "box": ", ".join(f"{v:.0f}" for v in d.box), "pick": (k, j)})
    return rows


def _data_uri(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def photo_figure(result: FileResult, first_row: int) -> go.Figure:
    """The photo with a rectangle and caption per detection and a marker at each box's centre (customdata
    ``[0, table row]``: clicking it picks the detection)."""
    image = result.image
    h, w = image.shape[:2]
    scale = min(1.0, MAX_DRAWN_WIDTH / w)
    shown = np.asarray(Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale)))))
    fig = go.Figure(go.Image(source=_data_uri(shown), hoverinfo="skip"))
    dets = result.detections
    boxes = scale_boxes([d.box for d in dets], from_size=(w, h), to_size=(shown.shape[1], shown.shape[0]))
    for d, (x0, y0, x1, y1) in zip(dets, boxes):
        colour = NOVEL_COLOUR if d.novel else KNOWN_COLOUR
        fig.add_shape(type="rect", x0=x0, y0=y0, x1=x1, y1=y1, line=dict(color=colour, width=3))
        fig.add_annotation(x=x0, y=y0, text=f"{d.label} ({d.confidence:.0%})", showarrow=False, xanchor="left",
                           yanchor="bottom", font=dict(color="white", size=12), bgcolor=colour)
    if dets:
        fig.add_trace(go.Scatter(
            x=(boxes[:, 0] + boxes[:, 2]) / 2, y=(boxes[:, 1] + boxes[:, 3]) / 2, mode="markers",
            customdata=[[0, first_row + j] for j in range(len(dets))],
            marker=dict(size=11, color=[NOVEL_COLOUR if d.novel else KNOWN_COLOUR for d in dets], opacity=0.7,
                        line=dict(width=2, color="white")),
            text=[f"{d.label}<br>confidence {d.confidence:.0%}, detector score {d.score:.2f}" for d in dets],
            hovertemplate="%{text}<extra>click to open</extra>", showlegend=False))
    fig.update_xaxes(visible=False, range=[0, shown.shape[1]])
    fig.update_yaxes(visible=False, range=[shown.shape[0], 0], scaleanchor="x")
    fig.update_layout(height=min(720, shown.shape[0] + 20), margin=dict(t=5, b=5, l=5, r=5), dragmode=False,
                      clickmode="event+select")
    return fig


def timeline_figure(result: FileResult) -> go.Figure:
    """Each track of a video as a bar from its first to its last sighting (seconds), labelled with its vote."""
    step = 1.0 / (result.sample_fps or 1.0)  # a track seen once still gets a visible bar
    tracks = result.tracks
    first = [t.first_time_s or 0.0 for t in tracks]
    fig = go.Figure(go.Bar(
        y=[f"track {t.id}" for t in tracks], base=first,
        x=[max((t.last_time_s or 0.0) - f, step) for t, f in zip(tracks, first)], orientation="h",
        marker_color=[NOVEL_COLOUR if t.class_id is None else KNOWN_COLOUR for t in tracks],
        text=[t.label for t in tracks], textposition="inside", insidetextanchor="start",
        hovertemplate="%{y}: %{text}<br>from %{base:.1f} s<extra></extra>"))
    fig.update_layout(height=80 + 30 * len(tracks), margin=dict(t=10, b=10, l=10, r=10), showlegend=False,
                      xaxis=dict(title="time in the video (s)", range=[0, max(result.duration_s or 0, step)]),
                      yaxis=dict(autorange="reversed"))
    return fig


def _clicked(event, key: str, n_rows: int) -> int | None:
    """The table row of a box clicked on a chart in this run (a new click only), or None."""
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    picked = selected_points(points, n_map=n_rows, n_new=0)
    last = st.session_state.get(f"_last_{key}")
    st.session_state[f"_last_{key}"] = picked
    return picked[-1][1] if picked and picked != last else None


def file_panel(run_id: str, k: int, result: FileResult, first_row: int, n_rows: int) -> int | None:
    """One input file's results; returns the table row of a box clicked on its chart (or None)."""
    st.markdown(f"**{result.file}** \u2014 {plural(len(result.detections), 'detection')}"
                + (f" in {plural(result.frames, 'frame')} ({result.sample_fps:g} a second)"
                   if result.kind == "video" else f", {result.width}\u00d7{result.height} px"))
    for note in result.notes:
        st.info(note, icon=":material/info:")
    clicked = None
    if result.kind == "video":
        if result.tracks:
            st.plotly_chart(timeline_figure(result), key=f"detect_timeline_{run_id}_{k}",
                            config={"displayModeBar": False})
            with st.expander(f"The {plural(len(result.tracks), 'track')} as a table"):
                st.dataframe(pd.DataFrame(tracking.timeline_rows(result.tracks)), hide_index=True, width="stretch",
                             key=f"detect_tracks_{run_id}_{k}")
            best = [t.best for t in result.tracks]
            cols = st.columns(CROPS_PER_ROW)
            for n, (t, d) in enumerate(zip(result.tracks, best)):
                if d.crop is not None:
                    cols[n % CROPS_PER_ROW].image(d.crop, width=72, caption=f"track {t.id}: {t.label}")
        else:
            st.caption("No sign was tracked in this video.")
    elif result.image is not None:
        key = f"detect_photo_{run_id}_{k}"
        event = st.plotly_chart(photo_figure(result, first_row), key=key, on_select="rerun",
                                selection_mode="points", config={"displayModeBar": False})
        clicked = _clicked(event, key, n_rows)
    return clicked


def detection_table(run_id: str, rows: list[dict]) -> list[int]:
    """Every detection as a table with row selection; returns the selected rows."""
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "pick"} for r in rows])
    event = st.dataframe(table, key=f"detect_table_{run_id}", on_select="rerun", selection_mode="multi-row",
                         hide_index=True, width="stretch",
                         column_config={"confidence": st.column_config.ProgressColumn(
                             "confidence", min_value=0, max_value=1, format="percent")})
    return list(event.selection.rows) if event else []


def detection_detail(meta: dict, result: FileResult, det: Detection) -> None:
    """A detection's crop, the classifier's top-5 with pictograms, and Integrated Gradients of its top-1."""
    where = f" \u00b7 frame {det.frame} ({det.time_s:.1f} s) \u00b7 track {det.track}" if det.frame is not None else ""
    st.markdown(f"**{result.file}**{where} \u2192 **{det.label}** ({det.confidence:.1%}), detector score "
                f"{det.score:.2f}")
    if det.novel:
        st.warning("Probably not one of the model's classes"
                   + (f" (novelty score {det.novelty_score:.2f})" if det.novelty_score is not None else "")
                   + ": shown as an unknown sign. If it is a new sign, harvest it to the Extra bucket and add it as "
                     "a class.")
    path = registry.model_path(meta["model"])
    if det.crop is None or not det.top or not path.is_file():
        st.caption("No crop or model file to explain this detection with.")
        return
    ckpt, _ = load_model(str(path))
    if registry.file_version(path) != meta["model_version"]:
        st.caption(f"The model file {meta['model']} has changed since this detection: the explanation below is "
                   "by its current version.")
    c1, c2 = st.columns([3, 2])
    top1 = int(det.top[0]["class_id"])
    c1.plotly_chart(ig_figure(det.crop, class_heatmap(str(path), det.crop, top1), title="Integrated Gradients "
                              "(top-1)"), key="detect_ig", config={"displayModeBar": False})
    with c2:
        st.image(det.crop, width=120, caption=f"crop {det.crop.shape[1]}\u00d7{det.crop.shape[0]} px")
        top_k_bars(det.top, prediction.class_pictograms(ckpt, [t["class_id"] for t in det.top]))


def _harvest(run_id: str, picks: list, settings: dict, picker_key: str) -> None:
    """Button callback (runs before the rerun, so it may move the dataset picker to a new workspace)."""
    try:
        done = detect_run.harvest_run(run_id, picks, **settings)
    except ValueError as e:
        st.session_state.detect_harvest_message = ("error", str(e))
        return
    st.session_state.detect_harvest_message = ("success" if done.harvested.added else "info", done.message)
    if done.derived:
        st.session_state[picker_key] = done.workspace


def harvest_panel(run_id: str, results: list[FileResult], picks: list[tuple[int, int]]) -> None:
    """Send the chosen detections, or each track's best crop, to a class (or the Extra bucket) of a workspace."""
    st.subheader("Harvest into training data")
    tracks = sum(len(r.tracks) for r in results)
    what = "chosen"
    if tracks:
        what = st.radio("Harvest", ["chosen", "tracks"], key="detect_harvest_what", horizontal=True,
                        format_func={"chosen": f"the detections chosen in the table ({len(picks)})",
                                     "tracks": f"each track's best crop ({tracks})"}.get)
    n = len(picks) if what == "chosen" else tracks
    spaces = workspaces.list_workspaces()
    c1, c2, c3 = st.columns(3)
    with c1:
        info = pick_dataset("Into dataset", key="detect_harvest_dataset",
                            default=spaces[0].name if spaces else None)
    if info is None:
        return
    guess = [results[k].detections[j].class_id for k, j in picks] if what == "chosen" else []
    options = [None] + sorted(info.classes)
    common = max(set(guess), key=guess.count) if guess else None
    class_id = c2.selectbox("Class", options, index=options.index(common) if common in options else 0,
                            key=f"detect_harvest_class_{info.name}",
                            format_func=lambda c: "Extra bucket (no class yet)" if c is None else
                            f"{c}: {info.classes[c]}")
    split = c3.selectbox("Split", datasets.SPLITS, key="detect_harvest_split", disabled=class_id is None,
                         help="Where the crops go when they get a class (the Extra bucket has no split)")
    workspace = ""
    if info.kind != "workspace":
        workspace = st.text_input("Workspace to derive", value=workspaces.free_name(f"{info.name}-detections"),
                                  key="detect_harvest_workspace",
                                  help=f"{info.name} is a built dataset and never changes: harvesting derives this "
                                       "workspace from it first and adds the crops there.").strip()
    settings = {"dataset": info.name, "class_id": class_id, "split": split, "workspace": workspace,
                "best_of_tracks": what == "tracks"}
    label = f"Harvest {plural(n, 'crop')}" + ("" if info.kind == "workspace" else " into a new workspace")
    st.button(label, key="detect_harvest", type="primary", disabled=n == 0, on_click=_harvest,
              args=(run_id, picks if what == "chosen" else [], settings, "detect_harvest_dataset"))
    kind, text = st.session_state.pop("detect_harvest_message", (None, None))
    if kind:
        getattr(st, kind)(text)


def show_results(run_id: str) -> None:
    """A finished run's results: each file, the table, the chosen detection, the harvest panel."""
    try:
        meta, results = cached_results(run_id)
    except ValueError as e:
        st.error(str(e))
        return
    st.caption(f"Classifier {meta['model']} (version {meta['model_version']}), detector {meta['detector']} "
               f"(version {meta['detector_version']}), min score {meta['min_score']:.2f}; video frames sampled at "
               f"{meta['fps']:g} a second. Green boxes: a class of the model; orange: unknown sign.")
    rows = detection_rows(results)
    focus_key = f"detect_focus_{run_id}"
    first = 0
    for k, result in enumerate(results):
        with st.container(border=True):
            if result.error:
                st.error(result.error)
            else:
                clicked = file_panel(run_id, k, result, first, len(rows))
                if clicked is not None:
                    st.session_state[focus_key] = clicked
        first += len(result.detections)
    if not rows:
        st.info("No signs found: try a lower min score, or another detector.")
        return
    st.subheader("Detections")
    st.caption("Tick rows to harvest them; the last ticked row (or a clicked box) opens below.")
    selected = detection_table(run_id, rows)
    last_sel = st.session_state.get(f"_detect_sel_{run_id}", [])
    new = [r for r in selected if r not in last_sel]
    st.session_state[f"_detect_sel_{run_id}"] = selected
    if new:
        st.session_state[focus_key] = new[-1]
    focus = st.session_state.get(focus_key)
    if focus is not None and 0 <= focus < len(rows):
        k, j = rows[focus]["pick"]
        with st.container(border=True):
            detection_detail(meta, results[k], results[k].detections[j])
    harvest_panel(run_id, results, [rows[i]["pick"] for i in selected if 0 <= i < len(rows)])
