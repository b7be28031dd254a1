"""The Evaluate page's newer parts and rough edges, through Home.py's router: the just-finished report opens,
report labels, the dataset picker's default, run status lines, honest time estimates, plurals, charts without a
toolbar, the underperforming slices and the "Compare two models" section."""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import runs
from core.analysis import model_diff, reports, slices
from core.analysis.evaluate_run import EvaluateRun
from core.analysis.evaluation import Predictions
from core.data import workspaces
from core.learning import models, registry
from core.runs import records
from ui import compare_views
from tests.run_support import finished
from waits import PAGE_S, RUN_S, wait_until
from app_support import router_mode  # noqa: F401 (autouse: AppTests through Home.py's router)

HOME = str(Path(__file__).resolve().parent.parent / "Home.py")
LABEL = re.compile(r"^(.+) on (\w+)/(\w+) \u00b7 \d{1,3}\.\d % \u00b7 \d\d:\d\d, \d{1,2} [A-Z][a-z]{2}$")


def open_evaluate() -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=PAGE_S)
    at.run()
    at.switch_page("pages/evaluate.py")
    at.run()
    assert not at.exception, at.exception
    return at


def register(name: str, n: int = 48, *, dataset: str = "Sample48", seed: int = 0) -> None:
    import torch
    torch.manual_seed(seed)
    names = [f"class {i}" for i in range(n)]
    names[14] = "Stop"
    ck = models.make_checkpoint(models.build_model("published", n), architecture="published",
                                class_ids=list(range(n)), class_names=names, dataset=dataset,
                                dataset_fingerprint="x", parent=None, mode="scratch", epochs=1, history=[],
                                metrics={"best_val_acc": 0.1}, config={})
    registry.register(name, ck)


def evaluated(model: str, split: str = "test", dataset: str = "Sample48") -> str:
    run = finished(runs.start("evaluate", EvaluateRun(model=model, dataset=dataset, split=split)))
    assert run["status"] == "done", run.get("error")
    return run["id"]


# --- reports: newest first, the just-finished one opened, labels that tell them apart ---------------------------

def test_the_report_that_just_finished_opens_and_reports_are_listed_newest_first():
    register("old")
    register("new", seed=1)
    first, second = evaluated("old", "val"), evaluated("old", "test")
    at = open_evaluate()
    box = at.selectbox(key="eval_open")
    assert box.options[0].startswith("old on Sample48/test") and box.value == second  # newest first, opened
    at.selectbox(key="eval_open").set_value(first).run()  # the user opens the older one
    at.run()
    assert at.selectbox(key="eval_open").value == first  # and it stays open on reruns
    at.selectbox(key="eval_model").set_value("new").run()
    at.button(key="eval_run").click().run()
    job = at.session_state["eval_report"]
    assert finished(job)["status"] == "done"
    at.run()  # the poller sees it end and reruns the page
    at.run()
    assert not at.exception, at.exception
    box = at.selectbox(key="eval_open")
    assert box.value == job and box.options[0].startswith("new on Sample48/test")
    assert all(LABEL.match(o) for o in box.options), box.options
    at.selectbox(key="eval_open").set_value(first).run()
    at.run()
    assert at.selectbox(key="eval_open").value == first  # opened once, then the picker is the user's again


def test_report_labels_give_model_data_accuracy_and_time():
    rec = {"model": "benchmark", "dataset": "Sample48", "split": "test", "accuracy": 0.97312,
           "created": time.mktime((2026, 12, 3, 14, 2, 0, 0, 0, -1))}
    now = time.mktime((2026, 12, 4, 9, 0, 0, 0, 0, -1))
    assert reports.report_label(rec, now=now) == "benchmark on Sample48/test \u00b7 97.3 % \u00b7 14:02, 3 Dec"
    assert reports.report_label({**rec, "name": "baseline"}, now=now).startswith("baseline \u00b7 97.3 %")
    last_year = time.mktime((2027, 1, 2, 9, 0, 0, 0, 0, -1))
    assert reports.report_label(rec, now=last_year).endswith("3 Dec 2026")


# --- the dataset picker's default -----------------------------------------------------------------------------

def _picker_app():
    import streamlit as st
    from ui.widgets import pick_dataset
    info = pick_dataset(key="d", default=st.session_state.get("want"))
    st.write(f"picked {info.name}")


def test_pick_dataset_preselects_the_default_only_while_it_has_no_value():
    workspaces.derive("Sample48", "Main")
    at = AppTest.from_function(_picker_app, default_timeout=PAGE_S)
    at.session_state["want"] = "Main"
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="d").value == "Main"
    at.selectbox(key="d").set_value("Sample48").run()
    assert at.selectbox(key="d").value == "Sample48"  # the user's choice stays
    other = AppTest.from_function(_picker_app, default_timeout=PAGE_S)
    other.session_state["want"] = "No such dataset"
    other.run()
    assert not other.exception and other.selectbox(key="d").value == "Sample48"  # an unknown default is ignored


def test_evaluate_picks_the_models_own_dataset_or_a_workspace_derived_from_it():
    workspaces.derive("Sample48", "Main")
    register("on-main", dataset="Main")
    register("on-sample", seed=1)
    register("on-gone", dataset="Gone", seed=2)
    at = open_evaluate()
    at.selectbox(key="eval_model").set_value("on-main").run()
    assert at.selectbox(key="eval_dataset").value == "Main"
    at.selectbox(key="eval_model").set_value("on-sample").run()
    assert at.selectbox(key="eval_dataset").value == "Sample48"
    at.selectbox(key="eval_dataset").set_value("Main").run()
    at.selectbox(key="eval_split").set_value("val").run()
    assert at.selectbox(key="eval_dataset").value == "Main"  # a choice made for this model stays
    at.selectbox(key="eval_model").set_value("on-gone").run()
    assert not at.exception and at.selectbox(key="eval_dataset").value == "Main"  # nothing to go by: unchanged


# --- run status lines, plurals ----------------------------------------------------------------------------------

def _status_app():
    import streamlit as st
    from ui.widgets import run_status
    for job in st.session_state["jobs"]:
        run_status(job)


def test_run_status_says_cancelled_and_failed_once():
    ended = time.mktime((2026, 12, 3, 14, 2, 0, 0, 0, -1))
    jobs = [{"status": "cancelled", "title": "train a", "message": "cancelled; no model or report was saved",
             "progress": 0.4, "finished": ended},
            {"status": "failed", "title": "evaluate b", "message": "failed: failed: Sample48/test has no images",
             "error": "ValueError: Sample48/test has no images", "progress": 0.1},
            {"status": "cancelled", "title": "map c", "message": "cancelled before it started", "progress": 0.0,
             "updated": ended},
            {"status": "running", "title": "train d", "message": "epoch 2", "progress": 0.5, "seconds_left": 42},
            {"status": "interrupted", "title": "train e", "message": "interrupted (Ctrl-C)", "progress": 0.2}]
    at = AppTest.from_function(_status_app, default_timeout=PAGE_S)
    at.session_state["jobs"] = jobs
    at.run()
    assert not at.exception, at.exception
    bars = [p.proto.text for p in at.get("progress")]
    assert bars[0].endswith("train a \u2014 Cancelled: no model or report was saved \u00b7 14:02, 3 Dec")
    assert bars[1].endswith("map c \u2014 Cancelled before it started \u00b7 14:02, 3 Dec")
    assert bars[2].endswith("train d \u2014 Running: epoch 2 \u00b7 50 % \u00b7 about 42 s left")
    assert bars[3].endswith("train e \u2014 Interrupted (Ctrl-C)")
    assert [e.value.split("\u2014 ")[1] for e in at.error] == ["Failed: Sample48/test has no images"]  # one box
    text = " ".join(bars + [e.value for e in at.error]).lower()
    assert "cancelled: cancelled" not in text and "failed: failed" not in text


def test_plurals_read_right():
    from ui.widgets import plural
    assert [plural(n, "image") for n in (0, 1, 2, 1204)] == ["0 images", "1 image", "2 images", "1,204 images"]
    assert plural(1, "class", "classes") == "1 class" and plural(3, "class", "classes") == "3 classes"


# --- honest time estimates ---------------------------------------------------------------------------------------

def test_time_left_goes_by_the_measured_pace_of_the_ticks_seen():
    rec = {"status": "running", "started": 1.0, "progress": 0.5}
    # 40 % in the 4 s between the ticks seen: 50 % more takes 5 s, whatever happened before the first tick.
    assert runs.time_left({**rec, "pace": [(10.0, 0.1), (12.0, 0.3), (14.0, 0.5)]}, now=100.0) == pytest.approx(5.0)
    assert runs.time_left({**rec, "pace": [(14.0, 0.5)]}, now=100.0) is None              # one tick: no pace yet
    assert runs.time_left({**rec, "pace": [(13.0, 0.1), (14.0, 0.5)]}, now=100.0) is None  # under 3 s of ticks
    assert runs.time_left({**rec, "pace": [(10.0, 0.49), (14.0, 0.5)]}, now=100.0) is None  # too little progress
    assert runs.time_left({**rec, "status": "done", "pace": [(10.0, 0.1), (14.0, 0.5)]}) is None


def test_a_running_record_estimates_from_its_ticks_not_from_its_slow_start(monkeypatch):
    monkeypatch.setattr(records, "MIN_PACE_SECONDS", 0.0)  # the pace of any two ticks, so no test waits seconds
    go, release = threading.Event(), threading.Event()

    def work(ctx, cfg):  # a slow start (the test holds it), then steady ticks
        ctx.progress(0.1, "loaded")
        while not go.is_set():
            ctx.progress(0.1, "loaded")
            time.sleep(0.05)
        while not release.is_set():
            ctx.progress(0.6, "working")
            time.sleep(0.05)
        return {}

    run_id = runs.submit("eta", {}, work)
    try:
        first = wait_until(lambda: (r := runs.get(run_id))["progress"] == 0.1 and r, what="the first tick",
                           timeout=PAGE_S)
        assert first["seconds_left"] is None  # one tick seen: no pace to go by
        wait_until(lambda: time.time() - first["started"] > 1.0, what="a slow start", timeout=PAGE_S)
        go.set()
        rec = wait_until(lambda: (r := runs.get(run_id))["progress"] == 0.6 and r, what="the second tick",
                         timeout=PAGE_S)
    finally:
        go.set()
        release.set()
    (t0, f0), (t1, f1) = rec["pace"][0], rec["pace"][-1]
    assert (f0, f1) == (0.1, 0.6)
    assert rec["seconds_left"] == pytest.approx(0.4 * (t1 - t0) / 0.5)
    straight_line = (time.time() - rec["started"]) * 0.4 / 0.6  # the old estimate counted the slow start
    assert rec["seconds_left"] < straight_line
    finished(run_id)


# --- the report view: charts, table, confusion matrix ------------------------------------------------------------

def test_report_view_is_narrow_named_and_its_charts_have_no_toolbar():
    register("m")
    evaluated("m")
    at = open_evaluate()
    table = next(d.value for d in at.dataframe if "class" in d.value.columns)
    assert list(table.columns) == ["class", "support", "precision", "recall", "f1"]
    assert "14: Stop" in set(table["class"])
    charts = at.get("plotly_chart")
    assert charts and all(json.loads(c.proto.config).get("displayModeBar") is False for c in charts)
    confusion = json.loads(next(c for c in charts if c.proto.id and "eval_confusion" in c.proto.id).proto.spec)
    assert "log scale" in confusion["layout"]["coloraxis"]["colorbar"]["title"]["text"]
    assert any("log scale" in c.value for c in at.caption)
    bars = json.loads(next(c for c in charts if "eval_metric_chart" in c.proto.id).proto.spec)
    shown = bars["data"][0]["y"]
    assert len(shown) == 15 and all(re.match(r"^\d+: \S", label) for label in shown)  # "id: name", whole
    assert {label for label in shown if label.startswith("14: ")} <= {"14: Stop"}


# --- underperforming slices ----------------------------------------------------------------------------------

def test_slices_tab_ranks_the_worst_slices_and_opens_their_images():
    register("m")
    rid = evaluated("m")
    at = open_evaluate()
    assert not at.exception, at.exception
    assert any(c.value.startswith("Overall accuracy") for c in at.caption)
    report = reports.load_report(rid)
    res = slices.report_slices(report)
    assert res.worst, "a random model does worse on some slices"
    worst = next(d.value for d in at.dataframe if "gap to overall" in d.value.columns and len(d.value) <= 10)
    assert worst.iloc[0]["slice"] == res.worst[0].label
    assert worst.iloc[0]["gap to overall"].endswith(" points")
    at.button(key="slice-0").click().run()
    assert not at.exception, at.exception
    assert "eval_dialog_ig" in [c.key for c in at.get("plotly_chart")]
    every = next(d.value for d in at.dataframe if "gap to overall" in d.value.columns and len(d.value) > 10)
    assert set(every["slice"]) == {s.label for s in res.slices}


# --- compare two models ---------------------------------------------------------------------------------------

def open_compare(split: str = "test") -> AppTest:
    """The Evaluate page with m48 (A) and m43 (B) registered and chosen for a comparison on Sample48/``split``."""
    register("m48")
    register("m43", 43, seed=1)
    at = open_evaluate()
    at.selectbox(key="cmp_model_a").set_value("m48").run()
    at.selectbox(key="cmp_model_b").set_value("m43").run()
    at.selectbox(key="cmp_dataset").set_value("Sample48").run()
    at.selectbox(key="cmp_split").set_value(split).run()
    return at


def test_compare_two_models_evaluates_first_then_shows_the_disagreements():
    at = open_compare()
    assert any("no report on Sample48/test" in i.value for i in at.info)
    at.button(key="cmp_evaluate").click().run()
    assert not at.exception, at.exception
    started = [r["id"] for r in runs.list_runs("evaluate")]
    assert len(started) == 2
    for run_id in started:
        assert finished(run_id)["status"] == "done"
    at.run()
    at.run()
    assert not at.exception, at.exception
    labels = {m.label: m.value for m in at.metric}
    diff = _current_diff("m48", "m43")
    assert labels["A right, B wrong"] == str(len(diff.a_right_b_wrong))
    assert labels["B right, A wrong"] == str(len(diff.b_right_a_wrong))
    assert labels["Images compared"] == f"{43 * 6:,}"
    assert "p by track" not in labels  # Sample48's test split has no track ids
    assert any("43 classes both models predict" in c.value and "left out: 5 classes" in c.value for c in at.caption)
    per_class = next(d.value for d in at.dataframe if "accuracy_b" in d.value.columns)
    assert len(per_class) == 43 and per_class["class"].str.contains(": ").all()
    grid = [b for b in at.button if b.key and b.key.startswith(("cmp_a-", "cmp_b-"))]
    assert len(grid) == min(48, len(diff.a_right_b_wrong)) + min(48, len(diff.b_right_a_wrong))
    grid[0].click().run()
    assert not at.exception, at.exception
    keys = [c.key for c in at.get("plotly_chart")]
    assert "diff_ig_A" in keys and "diff_ig_B" in keys
    assert any("**A: m48**" in m.value and "1. " in m.value for m in at.markdown)


def _current_diff(a: str, b: str, split: str = "test") -> model_diff.ModelDiff:
    return model_diff.diff_models(a, b, "Sample48", split)


def test_compare_on_a_split_made_by_track_counts_each_track_once():
    at = open_compare("val")
    at.button(key="cmp_evaluate").click().run()
    for run_id in [r["id"] for r in runs.list_runs("evaluate")]:
        assert finished(run_id)["status"] == "done"
    at.run()
    at.run()
    assert not at.exception, at.exception
    diff = _current_diff("m48", "m43", "val")
    assert diff.tracks > 1 and diff.track_p is not None
    labels = {m.label: m.value for m in at.metric}
    assert labels["p by track"] == f"{diff.track_p:.3g}" and labels["McNemar p"] == f"{diff.mcnemar_p:.3g}"
    verdict = compare_views.verdict(diff)
    assert any(m.value == verdict for m in at.markdown)


def test_the_verdict_on_a_split_made_by_track_uses_the_track_test():
    files = [f"t1_{i}.png" for i in range(10)] + ["t2_0.png"]
    a = _diff_report("ra", [0] * 10 + [1], files, model="A")
    b = _diff_report("rb", [1] * 10 + [0], files, model="B")
    by_image = model_diff.diff_reports(a, b, tracks={})
    assert "**A** is right more often" in compare_views.verdict(by_image)
    assert "is more than chance" in compare_views.verdict(by_image)  # McNemar: 10 against 1, p = 0.012
    by_track = model_diff.diff_reports(a, b, tracks={f: f[:2] for f in files})
    assert compare_views.verdict(by_track).endswith("with p = 1, each of the 2 tracks counted once, this could "
                                                    "well be chance (threshold 0.05).")


def _diff_report(rid: str, y_pred: list[int], files: list[str], *, model: str) -> reports.Report:
    n = len(files)
    y_true, y_pred = np.zeros(n, int), np.asarray(y_pred)
    summary = {"model": model, "model_version": model, "dataset": "D", "split": "val", "dataset_version": "v",
               "labels": [0, 1], "model_classes": [0, 1], "class_names": {"0": "zero", "1": "one"}}
    return reports.Report(rid, summary, Predictions(y_true, y_pred, np.ones(n), y_pred[:, None], np.ones((n, 1)),
                                                    files))


def test_compare_two_models_refuses_the_same_model_twice_with_a_message():
    register("m48")
    at = open_evaluate()
    at.selectbox(key="cmp_model_a").set_value("m48").run()
    at.selectbox(key="cmp_model_b").set_value("m48").run()
    assert any("same model twice" in e.value for e in at.error)
    assert runs.list_runs("evaluate") == []


def test_slices_of_a_large_report_wait_for_a_click(monkeypatch):
    import ui.evaluate_views as views
    monkeypatch.setattr(views, "SLICES_AT_ONCE", 100)  # the sample's 288 test images count as large here
    register("m")
    evaluated("m")
    at = open_evaluate()
    assert not any(c.value.startswith("Overall accuracy") for c in at.caption)
    at.button(key="eval_slices_go").click().run()
    assert not at.exception, at.exception
    assert any(c.value.startswith("Overall accuracy") for c in at.caption)
    at.run()
    assert any(c.value.startswith("Overall accuracy") for c in at.caption)  # on for the session
