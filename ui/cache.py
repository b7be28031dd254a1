"""Cached wrappers around core for the pages: a dataset's index, a model file's network, its novelty detector, a
report image's explanation, an image's heat map, the recovery of interrupted runs. Caching lives here, in the page
layer, never in core; every cache is keyed by the version of what it reads (a dataset's version, a model file's
mtime, the model version a report records), so a changed input is read again."""
from __future__ import annotations

import os

import numpy as np
import streamlit as st

from core import runs
from core.analysis import explain, novelty, reports
from core.data import datasets
from core.learning import models


@st.cache_data(show_spinner=False, max_entries=16)
def cached_index(name: str, version: str) -> list[dict]:
    """A dataset's index rows, cached per dataset version (a changed workspace gets a new version)."""
    return datasets.read_index(datasets.get_dataset(name))


@st.cache_resource(max_entries=4, show_spinner="Loading model...")
def _load_model(path: str, mtime: float):
    ckpt = models.load_checkpoint(path)
    return ckpt, models.model_from_checkpoint(ckpt)


def load_model(path: str):
    """(checkpoint, network) of a model file, cached per file version."""
    return _load_model(path, os.path.getmtime(path))


@st.cache_resource(max_entries=4, show_spinner="Calibrating the novelty check (once per model)...")
def _novelty_detector(path: str, mtime: float):
    ckpt, model = _load_model(path, mtime)
    try:
        return novelty.load_or_fit(path, model, ckpt), None
    except ValueError as e:
        return None, str(e)


def novelty_detector(path: str):
    """(detector or None, why not) for a model file, cached per file version."""
    return _novelty_detector(path, os.path.getmtime(path))


@st.cache_data(show_spinner="Integrated Gradients...", max_entries=256)
def _class_heatmap(path: str, mtime: float, image: np.ndarray, class_id: int) -> np.ndarray:
    ckpt, model = _load_model(path, mtime)
    return explain.explain_class(model, image, class_ids=ckpt["class_ids"], class_id=class_id).heatmap


def class_heatmap(path: str, image: np.ndarray, class_id: int) -> np.ndarray:
    """Integrated Gradients heat map (48, 48) of dataset class ``class_id`` for one image, by the model file at
    ``path``; computed once per (model file version, pixels, class), not on every rerun."""
    return _class_heatmap(path, os.path.getmtime(path), image, int(class_id))


@st.cache_data(show_spinner="Integrated Gradients...", max_entries=64)
def _report_explanation(report_id: str, index: int, model_version: str | None) -> explain.ReportExplanation:
    return explain.explain_report_image(reports.load_report(report_id), index, load=load_model)


def report_explanation(report: reports.Report, index: int) -> explain.ReportExplanation:
    """:func:`core.analysis.explain.explain_report_image` of one report image, computed once per (report, image,
    the model version the report records), not on every rerun. The entry finds the model file and raises its
    ValueError (not cached) when the file is gone or is no longer that version; an explanation made before still
    explains the report's predictions, so it stays."""
    return _report_explanation(report.id, int(index), report.summary.get("model_version"))


@st.cache_resource(ttl=10)
def recover_runs() -> int:
    """Runs whose process is gone (a previous app, a killed CLI training) become 'interrupted'; at most every
    10 s, on any page's run. Runs of live processes, this app's or a CLI's, are left alone."""
    return runs.recover_interrupted()
