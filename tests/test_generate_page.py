"""The Make more like these page through Home.py's router: before any report (evaluate first), a report's mistakes
ticked on the grid, the ``generate`` run started from the page and its preview (each source, then the images made
near it, each with a "keep" box), the kept ones added to a workspace as generated (or to a workspace derived in the
same click), a test split refused unless forced, and images of a dataset named one a line as the other source."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

from core import runs
from core.analysis import reports
from core.analysis.evaluate_run import EvaluateRun
from core.data import datasets, workspaces
from core.learning import models, registry
from tests.run_support import finished
from waits import PAGE_S, wait_until
from app_support import router_mode  # noqa: F401 (autouse: AppTests through Home.py's router)

HOME = str(Path(__file__).resolve().parent.parent / "Home.py")
PAGE = "pages/generate.py"


def open_generate() -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=PAGE_S)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, at.exception
    return at


def evaluated(split: str = "test", classes: str = "model") -> str:
    """The id of a report of the shipped benchmark on Sample48 (it gets a few of the sample's images wrong);
    ``classes="all"`` keeps the images of Sample48's classes 43 to 47, which the benchmark lacks."""
    run = finished(runs.start("evaluate", EvaluateRun(model="benchmark", dataset="Sample48", split=split,
                                                      classes=classes)))
    assert run["status"] == "done", run.get("error")
    return run["id"]


def keep_boxes(at: AppTest) -> list:
    return [c for c in at.checkbox if (c.key or "").startswith("gen_keep_")]


def generated(at: AppTest, *, per_image: int, method: str = "augment") -> str:
    """Press Generate with these settings; returns the run's id once its preview shows."""
    at.selectbox(key="gen_method").set_value(method).run()
    at.number_input(key="gen_per_image").set_value(per_image).run()
    at.button(key="gen_start").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    job = runs.list_runs("generate")[0]["id"]  # the newest
    rec = finished(job)
    assert rec["status"] == "done", rec.get("error")

    def preview_shown() -> bool:
        at.run()  # the poller sees the run end and opens its preview
        assert not at.exception, at.exception
        return bool(keep_boxes(at))
    wait_until(preview_shown, what=f"the preview of run {job}", timeout=PAGE_S)
    return job


def tick_mistakes(at: AppTest, report_id: str, n: int) -> list[int]:
    """Tick the first ``n`` images of the report's grid (its most confident mistakes); returns their rows."""
    rows = reports.misclassified(reports.load_report(report_id), order="confidence_desc")[:n].tolist()
    assert len(rows) == n, f"the benchmark makes {len(rows)} mistakes on Sample48, the test needs {n}"
    for i in rows:
        at.checkbox(key=f"gen_pick_{report_id}_{i}").check().run()
    assert not at.exception, at.exception
    return rows


def added_records(name: str) -> list[dict]:
    return workspaces.current_added(datasets.get_dataset(name))


# --- before anything ------------------------------------------------------------------------------------------------

def test_without_reports_the_page_says_to_evaluate_first_and_cannot_generate():
    at = open_generate()
    assert at.title[0].value == "Make more like these"
    assert at.radio(key="gen_source").value == "report"
    assert any("No reports yet" in i.value and "evaluate" in i.value for i in at.info)
    assert at.button(key="gen_start").disabled
    assert any("Nothing generated yet" in i.value for i in at.info)
    assert at.selectbox(key="gen_method").options[0]  # the methods are listed, labelled
    assert at.number_input(key="gen_per_image").value == 4 and at.number_input(key="gen_seed").value == 0


def test_the_grid_lists_the_reports_mistakes_most_confident_first_with_true_predicted_and_confidence():
    rid = evaluated()
    report = reports.load_report(rid)
    wrong = reports.misclassified(report, order="confidence_desc")
    at = open_generate()
    assert at.selectbox(key="gen_report").value == rid
    picks = [c for c in at.checkbox if (c.key or "").startswith(f"gen_pick_{rid}_")]
    p = report.predictions
    # (AppTest lists a grid's widgets column by column: compared by key, not in order)
    assert {c.key: c.label for c in picks} == {
        f"gen_pick_{rid}_{i}": f"{p.y_true[i]}\u2192{p.y_pred[i]} \u00b7 {100 * p.confidence[i]:.0f} %"
        for i in wrong[:48]}
    assert at.button(key="gen_start").disabled  # nothing ticked yet
    at.checkbox(key="gen_low").check().run()  # and the correct but unsure ones after them
    unsure = np.flatnonzero((p.y_true == p.y_pred) & (p.confidence < 0.6))
    picks = [c for c in at.checkbox if (c.key or "").startswith(f"gen_pick_{rid}_")]
    assert len(picks) == min(48, len(wrong) + len(unsure))


def test_images_of_classes_the_model_lacks_are_shown_but_cannot_be_ticked():
    rid = evaluated(classes="all")
    report = reports.load_report(rid)
    p = report.predictions
    shown = reports.misclassified(report, order="confidence_desc")[:48]
    lacking = [i for i in shown if p.y_true[i] >= 43]  # the benchmark knows classes 0 to 42
    assert lacking and len(lacking) < len(shown)
    at = open_generate()
    for i in shown:
        assert at.checkbox(key=f"gen_pick_{rid}_{i}").disabled == (i in lacking)
    assert any(f"{len(lacking)} images shown are of classes the model benchmark lacks" in c.value for c in at.caption)
    known = next(i for i in shown if i not in lacking)
    at.checkbox(key=f"gen_pick_{rid}_{known}").check().run()
    assert not at.button(key="gen_start").disabled


# --- the flow: tick, generate, preview, add --------------------------------------------------------------------------

def test_two_ticked_mistakes_make_two_images_each_that_are_added_to_a_workspace_as_generated():
    rid = evaluated()
    workspaces.derive("Sample48", "Main")
    at = open_generate()
    rows = tick_mistakes(at, rid, 2)
    assert not at.button(key="gen_start").disabled
    job = generated(at, per_image=2)
    assert len(keep_boxes(at)) == 4 and all(c.value for c in keep_boxes(at))  # kept unless unticked
    p = reports.load_report(rid).predictions
    assert [c.value for c in at.caption if c.value.startswith("source ")] == [
        f"source {p.y_true[i]}\u2192{p.y_pred[i]} \u00b7 {100 * p.confidence[i]:.0f} %" for i in rows]
    assert at.button(key="gen_add").label == "Add 4 images to the workspace"
    at.selectbox(key="gen_into").set_value("Main").run()
    assert at.selectbox(key="gen_split").value == "train"
    at.button(key="gen_add").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(at.success) == 1
    at.run()  # another rerun (a widget, a timer): the outcome and its link stay
    assert len(at.success) == 1 and "added 4 images" in at.success[0].value
    added = added_records("Main")
    assert len(added) == 4 and {a["origin"] for a in added} == {"generated"}
    assert sorted(a["source_file"] for a in added) == sorted([p.files[i] for i in rows] * 2)
    assert all(a["class_id"] == a["source_class_id"] for a in added)  # labelled with the source's true class
    assert {a["split"] for a in added} == {"train"} and {a["method"] for a in added} == {"augment"}
    assert {a["source_report"] for a in added} == {rid}
    assert runs.get(job)["status"] == "done"


def test_unticked_images_stay_out():
    rid = evaluated()
    workspaces.derive("Sample48", "Main")
    at = open_generate()
    tick_mistakes(at, rid, 1)
    generated(at, per_image=3, method="copies")
    at.checkbox(key=keep_boxes(at)[1].key).uncheck().run()
    assert at.button(key="gen_add").label == "Add 2 images to the workspace"
    at.selectbox(key="gen_into").set_value("Main").run()
    at.button(key="gen_add").click().run()
    assert len(added_records("Main")) == 2


def test_a_test_split_is_refused_without_force_and_taken_with_it():
    rid = evaluated()
    workspaces.derive("Sample48", "Main")
    at = open_generate()
    tick_mistakes(at, rid, 1)
    generated(at, per_image=2, method="copies")
    at.selectbox(key="gen_into").set_value("Main").run()
    at.selectbox(key="gen_split").set_value("test").run()
    assert any("test split" in w.value for w in at.warning)
    at.button(key="gen_add").click().run()
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "test" in at.error[0].value  # said why, no traceback
    assert added_records("Main") == []
    at.checkbox(key="gen_force").check().run()
    at.button(key="gen_add").click().run()
    assert not at.error, [e.value for e in at.error]
    added = added_records("Main")
    assert len(added) == 2 and {a["split"] for a in added} == {"test"}


def test_adding_to_the_built_dataset_derives_a_workspace_in_the_same_click_and_a_refusal_leaves_none():
    rid = evaluated()
    at = open_generate()
    tick_mistakes(at, rid, 1)
    generated(at, per_image=2, method="copies")
    assert at.selectbox(key="gen_into").options == ["a new workspace of Sample48"]  # no workspace yet
    at.text_input(key="gen_new_workspace").set_value("Made").run()
    at.selectbox(key="gen_split").set_value("test").run()
    at.button(key="gen_add").click().run()  # refused (test, not forced): no workspace either
    assert len(at.error) == 1
    assert "Made" not in {d.name for d in datasets.list_datasets()}
    at.selectbox(key="gen_split").set_value("train").run()
    at.button(key="gen_add").click().run()
    assert not at.error, [e.value for e in at.error]
    info = datasets.get_dataset("Made")
    assert info.kind == "workspace" and info.base == "Sample48"
    assert len(added_records("Made")) == 2
    assert at.selectbox(key="gen_into").value == "Made"  # the picker moves to it


def test_images_of_a_dataset_named_one_a_line_are_the_other_source():
    files = [r["file"] for r in datasets.read_index(datasets.get_dataset("Sample48")) if r["split"] == "val"][:2]
    workspaces.derive("Sample48", "Main")
    at = open_generate()
    at.radio(key="gen_source").set_value("dataset").run()
    at.selectbox(key="gen_dataset").set_value("Sample48").run()
    assert at.selectbox(key="gen_model").value == "benchmark"
    assert at.button(key="gen_start").disabled  # no images named yet
    at.text_area(key="gen_refs").set_value("\n".join(files) + "\n\n").run()
    generated(at, per_image=1, method="copies")
    assert len(keep_boxes(at)) == 2
    at.selectbox(key="gen_into").set_value("Main").run()
    at.button(key="gen_add").click().run()
    added = added_records("Main")
    assert sorted(a["source_file"] for a in added) == sorted(files) and {a["source_report"] for a in added} == {None}


def test_an_image_the_dataset_lacks_is_refused_at_generate_with_the_fix_not_a_traceback():
    at = open_generate()
    at.radio(key="gen_source").set_value("dataset").run()
    at.selectbox(key="gen_dataset").set_value("Sample48").run()
    at.text_area(key="gen_refs").set_value("no/such-file.png").run()
    at.button(key="gen_start").click().run()
    assert not at.exception, at.exception
    assert runs.list_runs("generate") == []  # refused before a run was registered
    assert any("no/such-file.png" in e.value and "not in Sample48" in e.value for e in at.error)
    assert any("Nothing generated yet" in i.value for i in at.info)


def test_a_report_whose_model_is_gone_is_refused_at_generate_with_the_fix():
    torch.manual_seed(0)
    registry.register("gone", models.make_checkpoint(
        models.build_model("published", 48), architecture="published", class_ids=list(range(48)),
        class_names=[f"class {i}" for i in range(48)], dataset="Sample48", dataset_fingerprint="x", parent=None,
        mode="scratch", epochs=1, history=[], metrics={}, config={}))
    run = finished(runs.start("evaluate", EvaluateRun(model="gone", dataset="Sample48", split="test")))
    assert run["status"] == "done", run.get("error")
    rid = run["id"]
    registry.delete_model("gone")
    at = open_generate()
    tick_mistakes(at, rid, 1)
    at.button(key="gen_start").click().run()
    assert not at.exception, at.exception
    assert any("no longer exists" in e.value for e in at.error), [e.value for e in at.error]
    assert runs.list_runs("generate") == []
