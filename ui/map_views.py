"""The Visualise page's map pieces: the cached map and placements, the compute button with its progress, and the
colours and marker shapes of classes and groups."""
from __future__ import annotations

import numpy as np
import plotly.express as px
import streamlit as st

from core import runs
from core.analysis import embedding
from core.analysis.embed_run import EmbedRun
from ui.cache import load_model, novelty_detector
from ui.nav import rerun_page
from ui.widgets import run_status

#: 64 distinct colours that show on white (Alphabet, Dark24, Light24 less the palest: relative luminance >= 0.75);
#: past them a class gets the next marker shape too.
PALETTE = [c for c in px.colors.qualitative.Alphabet + px.colors.qualitative.Dark24 + px.colors.qualitative.Light24
           if np.dot([int(c[k:k + 2], 16) / 255 for k in (1, 3, 5)], [0.2126, 0.7152, 0.0722]) < 0.75]
SHAPES = ("circle", "square", "diamond", "triangle-up")
GROUP_SHAPES = ("star", "diamond-tall", "hexagram", "triangle-up", "pentagon", "star-square", "bowtie", "hourglass")


@st.cache_data(show_spinner=False, max_entries=4)
def load_map(path: str) -> embedding.Map:
    return embedding.Map.load(path)


@st.cache_resource(show_spinner=False, max_entries=4)
def placer(path: str) -> embedding.Placer:
    return embedding.Placer(load_map(path))


@st.cache_data(show_spinner="Placing the new images into the map...", max_entries=8)
def place_new(path: str, model_path: str, images: tuple[bytes, ...], shape: tuple[int, ...],
              method: str) -> embedding.Placement:
    ckpt, model = load_model(model_path)
    arr = np.frombuffer(b"".join(images), np.uint8).reshape(shape)
    return embedding.place_new_images(placer(path), model, list(arr), class_ids=ckpt["class_ids"],
                                      detector=novelty_detector(model_path)[0], method=method)


def compute_button(cfg: EmbedRun, run_key: str, label: str) -> None:
    if st.button(label, type="primary", key="vis_compute"):
        try:
            st.session_state[run_key] = runs.start("embed", cfg)
        except ValueError as e:
            st.error(str(e))

    @st.fragment(run_every=1.0)
    def progress() -> None:
        run = runs.get(st.session_state[run_key]) if st.session_state.get(run_key) else None
        if run is None:
            return
        run_status(run)
        if run["status"] == "done":  # the map is there now: show it (once: the run is forgotten)
            st.session_state.pop(run_key, None)
            rerun_page()

    progress()


def style(order: list[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker shape) per legend entry: a distinct colour for each of the first 64, then shapes too."""
    return {c: (PALETTE[k % len(PALETTE)], SHAPES[(k // len(PALETTE)) % len(SHAPES)]) for k, c in enumerate(order)}
