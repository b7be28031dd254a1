"""AppTest per page: start from Home.py (the router), switch page, assert no exception and the visible result."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.analysis import reports
from core.learning import models, registry
from core import runs
from core.analysis.evaluate_run import EvaluateRun
from core.learning.train_run import RESUME_FILE, saved_epochs
from tests.run_support import cancelled_training, finished
from waits import PAGE_S
from app_support import router_mode  # noqa: F401 (autouse: AppTests through Home.py's router)

HOME = str(Path(__file__).resolve().parent.parent / "Home.py")


def app() -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=PAGE_S)
    at.run()
    assert not at.exception, at.exception
    return at


def open_page(page: str) -> AppTest:
    at = app()
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def test_home_lists_datasets_and_routes_to_every_page():
    at = app()
    assert at.title[0].value == "Traffic-sign model workbench"
    assert any(s.value == "Start here" for s in at.subheader)
    models_table = at.dataframe[1].value
    bench = models_table.loc[models_table["model"] == "incremental48"].iloc[0]
    assert bench["lineage"] == "incremental48 \u2190 benchmark" and bench["test accuracy"] > 0.9
    table = at.dataframe[0].value
    assert "Sample48" in set(table["dataset"])
    assert int(table.loc[table["dataset"] == "Sample48", "classes"].iloc[0]) == 48
    assert any("python -m core datasets build" in i.value for i in at.info)


def test_explore_shows_a_page_of_thumbnails_counts_and_details():
    at = open_page("pages/explore.py")
    at.selectbox(key="dataset").set_value("Sample48").run()
    at.selectbox(key="explore_class").set_value(14).run()
    assert not at.exception
    assert any("Page **1 / 1**" in m.value and "12 images" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == 1
    assert len(at.get("image")) == 12
    assert "**Class** 14: Stop" not in " ".join(m.value for m in at.markdown)
    at.button(key="explore_thumb-3").click().run()  # a thumbnail's caption opens its details
    details = " ".join(m.value for m in at.markdown)
    assert "**Class** 14: Stop" in details and "**Split** train" in details
    assert len(at.get("image")) == 12 + 2  # the page of thumbnails, the enlarged image and its pictogram


def test_explore_searches_file_names_and_sorts():
    at = open_page("pages/explore.py")
    at.selectbox(key="dataset").set_value("Sample48").run()
    from core.data.datasets import get_dataset, list_files
    wanted = list_files(get_dataset("Sample48"), "train", 14)[0].rsplit("/", 1)[-1]
    at.text_input(key="explore_query").input(wanted).run()
    assert not at.exception
    assert any("1 images" in m.value for m in at.markdown)
    assert len(at.get("image")) == 1
    at.text_input(key="explore_query").input("no-such-file").run()
    assert any("No images in this selection" in i.value for i in at.info)
    at.text_input(key="explore_query").input("").run()
    at.selectbox(key="explore_sort").set_value("file").run()
    assert not at.exception


def test_explore_pages_forward_and_back():
    at = open_page("pages/explore.py")
    at.selectbox(key="dataset").set_value("Sample48").run()
    at.selectbox(key="explore_page_size").set_value(96).run()
    assert any("Page **1 / 6**" in m.value for m in at.markdown)  # 576 train images
    at.button(key="explore_next").click().run()
    assert any("Page **2 / 6**" in m.value for m in at.markdown)
    at.button(key="explore_prev").click().run()
    assert any("Page **1 / 6**" in m.value for m in at.markdown)


def test_improve_trains_a_model_end_to_end_on_the_sample():
    at = open_page("pages/improve.py")
    at.radio(key="improve_mode").set_value("scratch").run()
    at.selectbox(key="improve_dataset").set_value("Sample48").run()
    at.text_input(key="improve_name").set_value("apptest-model")
    at.number_input(key="improve_epochs").set_value(1)
    at.checkbox(key="improve_augment").check()
    assert at.selectbox(key="improve_engine").value == "auto"
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any("Started training run" in s.value for s in at.success), [e.value for e in at.error]
    job_id = at.session_state["improve_job"]
    assert finished(job_id)["status"] == "done"
    assert "apptest-model" in [m.name for m in registry.list_models()]
    ckpt = models.load_checkpoint(registry.get_model("apptest-model").path)
    assert ckpt["metrics"]["augment_engine"] == "batch"  # auto, without hardening
    at.run()
    assert any("apptest-model" in s.value for s in at.success)


def test_improve_distils_from_chosen_teachers():
    at = open_page("pages/improve.py")
    at.radio(key="improve_mode").set_value("scratch").run()
    at.selectbox(key="improve_dataset").set_value("Sample48").run()
    assert "published43" in at.multiselect(key="improve_teachers").options
    at.text_input(key="improve_name").set_value("apptest-student")
    at.number_input(key="improve_epochs").set_value(1)
    at.multiselect(key="improve_teachers").set_value(["published43"])
    at.selectbox(key="improve_precision").set_value("fp32")
    at.number_input(key="improve_outlier").set_value(0.5)
    at.selectbox(key="improve_outlier_loss").set_value("energy")
    at.number_input(key="improve_harden").set_value(0.2)
    at.selectbox(key="improve_harden_at").set_value("input")
    at.button[0].click().run()
    assert not at.exception, at.exception
    job = finished(at.session_state["improve_job"])
    assert job["status"] == "done", job.get("error")
    ckpt = models.load_checkpoint(registry.get_model("apptest-student").path)
    assert list(ckpt["config"]["teachers"]) == ["published43"] and ckpt["config"]["outlier_weight"] == 0.5
    assert ckpt["config"]["harden_p"] == 0.2 and ckpt["config"]["outlier_loss"] == "energy"
    assert ckpt["config"]["harden_at"] == "input"
    assert ckpt["metrics"]["augment_engine"] == "albumentations"  # auto: hardening needs albumentations
    assert ckpt["config"]["precision"] == "fp32" and ckpt["metrics"]["precision"] == "fp32"  # as chosen


def test_improve_warns_about_classes_the_dataset_could_not_teach():
    result = {"model": "partial", "seconds": 3.0, "best_val_acc": 0.5, "best_epoch": 1,
              "classes_without_train_images": [48, 49]}
    job_id = runs.submit("train", {}, lambda ctx, cfg: result, title="train partial (resume) on Sample48")
    assert finished(job_id)["status"] == "done"
    at = open_page("pages/improve.py")
    assert any("no train images for classes [48, 49]" in w.value for w in at.warning), [w.value for w in at.warning]


def test_improve_refuses_a_duplicate_name_with_a_message():
    at = open_page("pages/improve.py")
    at.radio(key="improve_mode").set_value("scratch").run()
    at.selectbox(key="improve_dataset").set_value("Sample48").run()
    at.text_input(key="improve_name").set_value("bad name!")
    at.button[0].click().run()
    assert not at.exception
    assert any("model name" in e.value for e in at.error)


def _register_small_model(name: str = "small48", n: int = 48) -> None:
    import torch
    from core.learning import models
    torch.manual_seed(0)
    m = models.build_model("published", n)
    names = [f"class {i}" for i in range(n)]
    names[14] = "Stop"
    ck = models.make_checkpoint(m, architecture="published", class_ids=list(range(n)), class_names=names,
                                dataset="Sample48", dataset_fingerprint="x", parent=None, mode="scratch", epochs=1,
                                history=[{"epoch": 1, "phase": "all", "loss": 3.0, "train_acc": 0.1, "val_acc": 0.1}],
                                metrics={"best_val_acc": 0.1}, config={})
    registry.register(name, ck)


def _png_bytes(size=(40, 30), mode="RGB") -> bytes:
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.new(mode, size, color=(200, 30, 30) if mode == "RGB" else 128).save(buf, format="PNG")
    return buf.getvalue()


def test_evaluate_runs_a_report_and_shows_metrics_confusion_and_explanations():
    _register_small_model()
    at = open_page("pages/evaluate.py")
    assert any("No reports yet" in i.value for i in at.info)
    at.selectbox(key="eval_model").set_value("small48").run()
    at.selectbox(key="eval_dataset").set_value("Sample48").run()
    at.selectbox(key="eval_split").set_value("test").run()
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    job_id = at.session_state["eval_report"]
    assert finished(job_id)["status"] == "done"
    at.run()
    assert not at.exception, at.exception
    assert any("Report ready" in t.value for t in at.toast)  # announced once, then opened
    at.run()
    assert not any("Report ready" in t.value for t in at.toast)
    labels = [m.label for m in at.metric]
    assert "Accuracy" in labels and "Macro F1" in labels
    assert len(at.get("plotly_chart")) >= 2  # per-class metric chart and the confusion matrix
    assert any(" of class " in c.value and "predicted as" in c.value for c in at.caption)
    # A random model makes mistakes: the misclassified grid; IG only when asked (not on every rerun).
    wrong = [b for b in at.button if b.key and b.key.startswith("wrong-")]
    assert wrong and all(b.label.startswith("#") for b in wrong)
    assert not any(c.key in ("eval_ig_fig", "eval_dialog_ig") for c in at.get("plotly_chart"))
    at.button(key="eval_ig_run").click().run()
    assert "eval_ig_fig" in [c.key for c in at.get("plotly_chart")]
    # Clicking a thumbnail's caption opens it with its IG heat map, and the explain panel follows it.
    clicked = int(wrong[-1].label[1:].split(":")[0])
    at.button(key=wrong[-1].key).click().run()
    assert not at.exception, at.exception
    assert "eval_dialog_ig" in [c.key for c in at.get("plotly_chart")]
    assert any(f"**#{clicked}**" in m.value for m in at.markdown)
    assert at.selectbox(key="eval_explain").value == clicked
    # Filter by confidence and sort: the confident mistakes first, none above the upper bound.
    at.selectbox(key="eval_wrong_order").set_value("confidence_desc").run()
    at.slider(key="eval_wrong_conf").set_value((0.0, 0.5)).run()
    assert not at.exception, at.exception
    report = reports.load_report(job_id)
    grid = sorted((int(b.key.split("-")[1]), b.label) for b in at.button if b.key and b.key.startswith("wrong-"))
    shown = [int(label[1:].split(":")[0]) for _, label in grid]  # in grid order (the columns list them apart)
    conf = report.predictions.confidence[shown]
    assert len(shown) and (conf <= 0.5).all() and (np.diff(conf) <= 0).all()


def test_misclassified_filters_by_confidence_and_sorts():
    _register_small_model("sorter")
    rid = finished(runs.start("evaluate", EvaluateRun(model="sorter", dataset="Sample48",
                                                      split="test")))["result"]["report"]
    report = reports.load_report(rid)
    p = report.predictions
    everything = reports.misclassified(report)
    assert (p.y_true[everything] != p.y_pred[everything]).all()
    asc = reports.misclassified(report, order="confidence_asc")
    assert sorted(asc.tolist()) == everything.tolist() and (np.diff(p.confidence[asc]) >= 0).all()
    mid = reports.misclassified(report, min_confidence=0.05, max_confidence=0.1)
    assert set(mid.tolist()) == {i for i in everything.tolist() if 0.05 <= p.confidence[i] <= 0.1}
    with pytest.raises(ValueError, match="valid orders"):
        reports.misclassified(report, order="random")
    with pytest.raises(ValueError, match="min_confidence"):
        reports.misclassified(report, min_confidence=0.8, max_confidence=0.2)


def test_evaluate_reports_can_be_renamed_and_deleted_with_confirmation():
    from core.analysis import reports
    _register_small_model("one")
    rid = finished(runs.start("evaluate", EvaluateRun(model="one", dataset="Sample48", split="val")))["id"]
    at = open_page("pages/evaluate.py")
    box = at.selectbox(key="eval_open")
    assert "one on Sample48/val \u00b7 " in box.options[0] and " %" in box.options[0]  # creation time in the label
    at.text_input(key=f"eval_name_{rid}").input("baseline on val")
    at.button(key="eval_rename").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="eval_open").options[0].startswith("baseline on val")
    assert at.button(key="eval_delete").disabled  # not before the confirmation
    at.checkbox(key=f"eval_sure_{rid}").check().run()
    at.button(key="eval_delete").click().run()
    assert not at.exception, at.exception
    assert reports.list_reports() == [] and not reports.report_dir(rid).exists()
    assert any("No reports yet" in i.value for i in at.info)


def test_make_prediction_summarises_results_in_a_table_with_csv_download():
    from core.data.images import encode_png
    from core.data import datasets
    split = datasets.load_split("Sample48", "test")
    stop = split.images[split.labels == 14][0]
    at = open_page("pages/predict.py")
    at.file_uploader(key="predict_files").set_value([("stop.png", encode_png(stop), "image/png"),
                                                     ("bad.png", b"nope", "image/png")]).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["file"]) == ["stop.png", "bad.png"] and table.loc[0, "class_id"] == 14
    assert table.loc[1, "error"] and not table.loc[0, "error"]
    assert len(at.get("download_button")) == 1


def test_evaluate_refuses_an_empty_split_with_a_message():
    from core.data.built import SplitToWrite, write_dataset
    write_dataset("NoTest", {"train": SplitToWrite([np.zeros((32, 32, 3), np.uint8)], np.array([0]), ["a.png"],
                                                   ["s"], [""], np.array([[32, 32]]))},
                  classes={0: "a"}, source="t", recipe="t")
    _register_small_model()
    at = open_page("pages/evaluate.py")
    at.selectbox(key="eval_dataset").set_value("NoTest").run()
    at.selectbox(key="eval_split").set_value("test").run()
    at.button(key="eval_run").click().run()
    assert not at.exception
    assert any("empty" in e.value for e in at.error)


def test_predict_shows_top5_and_ig_and_a_message_per_bad_file():
    _register_small_model()
    at = open_page("pages/predict.py")
    at.selectbox(key="predict_model").set_value("small48").run()
    at.file_uploader(key="predict_files").set_value([
        ("sign.png", _png_bytes(), "image/png"),
        ("alpha.png", _png_bytes((64, 64), "RGBA"), "image/png"),
        ("grey.png", _png_bytes((20, 90), "L"), "image/png"),
        ("broken.png", _png_bytes()[:40], "image/png"),
        ("empty.png", b"", "image/png"),
    ]).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 2 and any("broken.png" in e for e in errors) and any("empty.png" in e for e in errors)
    results = [m.value for m in at.markdown if "\u2192" in m.value]
    assert len(results) == 3 and any(r.startswith("**sign.png**") for r in results)
    bars = at.get("progress")
    assert len(bars) == 15  # top-5 for each of the 3 good images
    assert any("3 images predicted, 2 refused" in c.value for c in at.caption)


def test_evaluate_compares_two_reports_per_class():
    _register_small_model("one")
    _register_small_model("two")
    for m in ("one", "two"):
        finished(runs.start("evaluate", EvaluateRun(model=m, dataset="Sample48", split="test")))
    at = open_page("pages/evaluate.py")
    assert not at.exception, at.exception
    labels = [m.label for m in at.metric]
    assert "Accuracy B" in labels and "Macro F1 B" in labels
    assert any("delta = B" in c.value for c in at.caption)


def test_explaining_a_report_of_a_deleted_model_gives_the_explain_entry_message():
    from ui.cache import report_explanation
    _register_small_model("gone")
    run = finished(runs.start("evaluate", EvaluateRun(model="gone", dataset="Sample48", split="test")))
    registry.get_model("gone").path.unlink()  # unregistered too: list_models skips a missing file
    with pytest.raises(ValueError, match="model 'gone' of report .* no longer exists"):
        report_explanation(reports.load_report(run["result"]["report"]), 0)


def test_a_job_left_running_by_a_dead_app_shows_as_interrupted():
    from core.base import store
    from ui.cache import recover_runs
    recover_runs.clear()
    store.insert("runs", {"id": "train-old", "kind": "train", "title": "train old", "status": "running",
                          "progress": 0.5, "message": "epoch 3", "created": 1.0, "owner": "dead-process",
                          "history": []})
    at = open_page("pages/improve.py")
    assert runs.get("train-old")["status"] == "interrupted"
    assert any("train old \u2014 Interrupted" in p.proto.text for p in at.get("progress"))


def test_evaluate_shows_a_report_on_a_changed_workspace_as_stale_without_its_images():
    from core.analysis import reports
    from core.data import workspace_changes, workspaces
    workspaces.derive("Sample48", "Main")
    _register_small_model("m")
    run = finished(runs.start("evaluate", EvaluateRun(model="m", dataset="Main", split="test")))
    assert run["status"] == "done", run.get("error")
    at = open_page("pages/evaluate.py")
    assert not any("Stale report" in w.value for w in at.warning)
    assert any(s.value == "Misclassified images" for s in at.subheader)
    workspace_changes.delete_images("Main", [reports.load_report(run["id"]).predictions.files[0]])
    at = open_page("pages/evaluate.py")
    assert any("Stale report" in w.value and "has changed since" in w.value for w in at.warning)
    assert not any(s.value == "Misclassified images" for s in at.subheader)
    assert at.metric  # the numbers are still shown


def test_pickers_offer_workspaces_with_their_base():
    from core.data import workspaces
    workspaces.derive("Sample48", "Main")
    at = open_page("pages/explore.py")
    box = at.selectbox(key="dataset")
    assert "Main (workspace of Sample48)" in box.options
    box.set_value("Main").run()
    assert not at.exception, at.exception
    assert len(at.get("imgs")) > 0 or len(at.image) > 0  # the workspace's thumbnails come from its base


def _png(seed: int, size: int = 40) -> bytes:
    from conftest import smooth_images
    from core.data.images import encode_png
    return encode_png(smooth_images(1, size, seed=seed)[0])


def test_add_classes_creates_a_workspace_in_one_click_then_adds_renames_and_removes_a_class():
    from core.data import datasets
    at = open_page("pages/add_classes.py")
    assert any("Create a workspace above" in i.value for i in at.info)
    assert at.text_input(key="classes_ws_new").value == "Main"
    at.selectbox(key="classes_ws_base").set_value("Sample48")
    at.button(key="classes_ws_create").click().run()
    assert not at.exception, at.exception
    assert datasets.get_dataset("Main").kind == "workspace"
    at.text_input(key="classes_name").input("  Speed limit (100km/h, China) ")
    at.button[[b.label for b in at.button].index("Add class")].click().run()
    assert not at.exception, at.exception
    assert any("Added class 48" in s.value for s in at.success), [e.value for e in at.error]
    table = at.dataframe[0].value
    assert table.loc[table["id"] == 48, "name"].iloc[0] == "Speed limit (100km/h, China)"
    assert bool(table.loc[table["id"] == 48, "added here"].iloc[0])
    at.text_input(key="classes_name").input("stop")
    at.button[[b.label for b in at.button].index("Add class")].click().run()
    assert any("has a class named 'Stop' already" in e.value for e in at.error)
    at.selectbox(key="classes_rename_id").set_value(48)
    at.text_input(key="classes_rename_name").input("China 100")
    at.button[[b.label for b in at.button].index("Rename")].click().run()
    assert datasets.get_dataset("Main").classes[48] == "China 100"
    at.selectbox(key="classes_remove_id").set_value(14)
    at.button[[b.label for b in at.button].index("Remove")].click().run()
    assert any("still has" in e.value for e in at.error) and 14 in datasets.get_dataset("Main").classes
    at.selectbox(key="classes_remove_id").set_value(48)
    at.button[[b.label for b in at.button].index("Remove")].click().run()
    assert 48 not in datasets.get_dataset("Main").classes


def test_add_images_previews_variants_and_adds_them_as_a_run():
    from core.data import datasets, workspace_changes, workspaces
    workspaces.derive("Sample48", "Main")
    cid = workspace_changes.add_class("Main", "New sign")
    at = open_page("pages/add_images.py")
    assert at.selectbox(key="add_class").value == cid  # the newest class is offered first
    at.file_uploader(key="add_files").set_value([("a.png", _png(1), "image/png"), ("b.png", _png(2), "image/png"),
                                                 ("bad.png", b"\x89PNG\r\n garbage", "image/png")])
    at.multiselect(key="add_groups").set_value(["noise", "colour"])
    at.number_input(key="add_variants").set_value(2)
    at.radio(key="add_to").set_value("test").run()
    assert not at.exception, at.exception
    assert any("2 uploads x 3 = 6 images" in s.value for s in at.subheader)
    assert any("bad.png" in e.value for e in at.error)
    assert len(at.get("imgs")) + len(at.image) >= 1  # the preview grid
    at.button(key="add_go").click().run()
    assert not at.exception, at.exception
    run = finished(at.session_state["add_run"])
    assert run["status"] == "done", run.get("error")
    assert run["result"]["added"] == 6 and run["result"]["by_split"]["test"] == 6
    assert datasets.get_dataset("Main").counts["test"][cid] == 6
    at.run()
    assert any("Added 6 images: 6 to test" in s.value for s in at.success)


def test_added_images_filters_moves_edits_deletes_and_undoes():
    from core.data import datasets, uploads, workspace_changes, workspaces
    from core.curation import importing as curation
    workspaces.derive("Sample48", "Main")
    cid = workspace_changes.add_class("Main", "New sign")
    batch = [u for k in range(3) for u in uploads.read_bytes(f"s{k}.png", _png(10 + k))]
    res = curation.import_images(batch, curation.ImportSettings(dataset="Main", class_id=cid, to="test"))
    at = open_page("pages/added_images.py")
    assert any("3 of 3 added images" in m.value for m in at.markdown)
    first = res["ids"][0]
    at.checkbox(key=f"added_sel_{first}").check().run()
    at.selectbox(key="added_target").set_value("val").run()
    at.button(key="added_move").click().run()
    assert not at.exception, at.exception
    assert any("Moved 1 image to val" in s.value for s in at.success)
    assert datasets.get_dataset("Main").counts["val"][cid] == 1
    at.selectbox(key="added_split").set_value("val").run()
    assert any("1 of 3 added images" in m.value for m in at.markdown)
    at.selectbox(key="added_split").set_value(None).run()
    second = res["ids"][1]
    at.checkbox(key=f"added_sel_{second}").check().run()
    at.button(key="added_delete").click().run()
    assert any("to the trash" in s.value for s in at.success)
    assert len(workspaces.current_added(datasets.get_dataset("Main"))) == 2
    assert "delete 1 image" in at.button(key="added_undo").label
    at.button(key="added_undo").click().run()
    assert any("Undone: delete 1 image" in s.value for s in at.success)
    assert len(workspaces.current_added(datasets.get_dataset("Main"))) == 3
    pick = at.selectbox(key="added_edit_pick")
    rec = pick.value
    at.selectbox(key="added_rotate").set_value(90)
    at.selectbox(key="added_flip").set_value("horizontal").run()
    assert any("edited" in (c or "") for c in [i.caption for i in at.get("imgs")] + [""]) or not at.exception
    at.button(key="added_save").click().run()
    assert not at.exception, at.exception
    assert any(f"(parent {rec['id']})" in s.value for s in at.success), [e.value for e in at.error]
    recs = {r["id"]: r for r in workspaces.current_added(datasets.get_dataset("Main"))}
    assert rec["id"] not in recs and any(r.get("parent") == rec["id"] for r in recs.values())


def test_make_prediction_warns_when_an_image_is_probably_not_one_of_the_models_classes():
    from core.data.images import encode_png
    at = open_page("pages/predict.py")
    assert at.selectbox(key="predict_model").value == "benchmark"  # ships its calibrated novelty detector
    junk = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    at.file_uploader(key="predict_files").set_value([("noise.png", encode_png(junk), "image/png")]).run()
    assert not at.exception, at.exception
    assert any("Probably not one of the model's classes" in w.value for w in at.warning)


def test_visualise_computes_a_map_places_uploads_and_flags_the_unknown_group():
    from conftest import star_sign
    from core.data import datasets
    from core.data.images import encode_png
    at = open_page("pages/visualise.py")
    at.selectbox(key="vis_dataset").set_value("Sample48")
    at.selectbox(key="vis_split").set_value("val").run()
    assert any("No map yet" in i.value for i in at.info)
    at.button(key="vis_compute").click().run()
    assert not at.exception, at.exception
    finished(next(at.session_state[k] for k in at.session_state if k.startswith("vis_run_")))
    at.run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 1
    split = datasets.load_split("Sample48", "test")
    stops = [("stop%d.png" % k, encode_png(im), "image/png") for k, im in enumerate(split.images[split.labels == 14][:3])]
    stars = [("star%d.png" % k, encode_png(star_sign(k)), "image/png") for k in range(3)]
    at.radio(key="vis_source").set_value("upload").run()
    at.file_uploader(key="vis_files").set_value(stops + stars).run()
    assert not at.exception, at.exception
    groups = [m.value for m in at.markdown if m.value.startswith("**Group")]
    assert any("likely a new class" in g and "(3 images)" in g for g in groups), groups
    assert any("probably a known class" in g and "14: Stop" in g for g in groups), groups


def test_evaluate_warns_about_class_sets_and_opens_the_worst_confusion():
    from core.analysis import reports
    _register_small_model("m43", n=43)
    at = open_page("pages/evaluate.py")
    at.selectbox(key="eval_model").set_value("m43").run()
    at.selectbox(key="eval_dataset").set_value("Sample48").run()
    assert any("m43 predicts 43 classes, Sample48 has 48" in w.value for w in at.warning)
    assert at.radio(key="eval_classes").value == "model"
    at.selectbox(key="eval_split").set_value("test")
    at.button(key="eval_run").click().run()
    run = finished(at.session_state["eval_report"])
    assert run["config"]["classes"] == "model"
    at.run()
    assert not at.exception, at.exception
    rep = reports.load_report(run["id"])
    assert rep.summary["n"] == 43 * 6
    worst = reports.worst_confusion(rep)
    assert (at.selectbox(key="eval_cell_true").value, at.selectbox(key="eval_cell_pred").value) == worst
    assert worst[0] != worst[1]
    assert at.selectbox(key="eval_metric").value == "f1"


def test_improve_warns_when_an_incremental_run_would_only_train_the_new_rows():
    at = open_page("pages/improve.py")
    at.radio(key="improve_mode").set_value("incremental").run()
    at.selectbox(key="improve_dataset").set_value("Sample48")
    at.text_input(key="improve_name").input("one-epoch")
    at.number_input(key="improve_epochs").set_value(1)
    at.button[[b.label for b in at.button].index("Start training")].click().run()
    assert not at.exception, at.exception
    assert any("only phase 1 runs" in w.value for w in at.warning)
    run = finished(at.session_state["improve_job"])
    assert run["status"] == "done", run.get("error")
    assert [h["phase"] for h in run["history"]] == ["new_rows"]


def test_explore_all_classes_starts_at_class_zero():
    at = open_page("pages/explore.py")
    at.selectbox(key="dataset").set_value("Sample48").run()
    captions = [b.label for b in at.button if b.key and b.key.startswith("explore_thumb-")]
    assert captions[0].startswith("0 \u00b7") and len(captions[0]) <= 12


def test_improve_resumes_a_stopped_training_from_its_last_epoch():
    run_id = cancelled_training("resumed-model")
    assert "resumed-model" not in [m.name for m in registry.list_models()]  # no partial model
    at = open_page("pages/improve.py")
    button = at.button(key=f"resume-{run_id}")
    saved = saved_epochs(run_id)
    assert saved >= 1 and button.label == f"Resume after epoch {saved}"
    button.click().run()
    assert not at.exception, at.exception
    rec = finished(run_id)
    assert rec["status"] == "done" and rec["resumed"] == 1, rec.get("error")
    assert [h["epoch"] for h in rec["history"]] == list(range(1, 9))
    assert "resumed-model" in [m.name for m in registry.list_models()]
    assert not (runs.run_dir(run_id) / RESUME_FILE).exists()  # served its purpose
    at.run()
    assert not [b for b in at.button if b.key == f"resume-{run_id}"]


def test_resume_refuses_what_cannot_be_resumed():
    _register_small_model("m")
    ev = finished(runs.start("evaluate", EvaluateRun(model="m", dataset="Sample48", split="val")))
    with pytest.raises(ValueError, match="only training runs can be resumed"):
        runs.resume(ev["id"])
    with pytest.raises(ValueError, match="no run 'nope'"):
        runs.resume("nope")
    run_id = cancelled_training("again", epochs=8)
    (runs.run_dir(run_id) / RESUME_FILE).unlink()
    with pytest.raises(ValueError, match="nothing to resume"):
        runs.resume(run_id)
    assert runs.get(run_id)["status"] == "cancelled"  # unchanged


def test_durations_read_naturally():
    from core.base.progress import describe_seconds
    assert [describe_seconds(s) for s in (0.2, 42, 89, 3599, 3600, 7199)] == [
        "about 1 s", "about 42 s", "about 1 min", "about 1 h 0 min", "about 1 h 0 min", "about 2 h 0 min"]


def test_settings_survive_leaving_the_page_and_coming_back():
    at = open_page("pages/improve.py")
    at.radio(key="improve_mode").set_value("scratch").run()
    at.selectbox(key="improve_dataset").set_value("Sample48").run()  # (form fields count once the form is sent)
    at.switch_page("pages/evaluate.py").run()
    at.selectbox(key="eval_split").set_value("val").run()
    assert not at.exception, at.exception
    at.switch_page("pages/predict.py").run()
    at.switch_page("pages/improve.py").run()
    assert not at.exception, at.exception
    assert at.radio(key="improve_mode").value == "scratch" and at.selectbox(key="improve_dataset").value == "Sample48"
    at.switch_page("pages/evaluate.py").run()
    assert at.selectbox(key="eval_split").value == "val"
