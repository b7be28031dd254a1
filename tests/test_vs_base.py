"""Training from a base model ends with a comparison on the same images (core.learning.vs_base), kept with the run
and the model, printed by the CLI and shown on the Improve page; the settings that keep old classes; the Improve
page's checks and plain words."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core import runs
from core.data import datasets, workspaces
from core.data.built import SplitToWrite, write_dataset
from core.learning import models, registry, training, training_config, vs_base
from core.learning.epoch import NEW_ROW_OFFSETS, align_new_rows, calibrate_new_rows, param_groups
from core.learning.train_run import TrainRun
from cli_support import run_cli
from tests.run_support import finished
from waits import PAGE_S, wait_until
from app_support import router_mode  # noqa: F401 (autouse: AppTests through Home.py's router)

HOME = str(Path(__file__).resolve().parent.parent / "Home.py")
SAMPLE = "Sample48"
NO_ENTRY, LOOKALIKE = 17, 46  # a new class the tests make take over No entry's images


# -- the comparison on arrays ---------------------------------------------------------------------------------------

def _arrays():
    """Old classes 0 and 1 (the base's), new class 2; class 1 loses one of its two images."""
    labels = np.array([0, 0, 1, 1, 2, 2])
    before = np.array([0, 1, 1, 1, 0, 0])  # the base cannot predict class 2
    after = np.array([0, 1, 1, 2, 2, 0])
    return labels, before, after, [f"img{i}.png" for i in range(6)]


def test_compare_predictions_splits_old_from_new_classes_and_finds_what_regressed():
    labels, before, after, files = _arrays()
    out = vs_base.compare_predictions(labels, before, after, old_ids=[0, 1], files=files,
                                      class_names={0: "zero", 1: "one", 2: "two"})
    assert out["old_classes"] == {"classes": 2, "images": 4, "correct_before": 3, "correct_after": 2,
                                  "before": 0.75, "after": 0.5}
    assert out["new_classes"] == {"classes": 1, "images": 2, "correct_before": 0, "correct_after": 1,
                                  "before": 0.0, "after": 0.5}
    assert [(r["class_id"], r["delta_points"]) for r in out["per_class"]] == [(0, 0.0), (1, -50.0), (2, 50.0)]
    assert [(r["class_id"], r["name"], r["before"], r["after"]) for r in out["regressions"]] == [(1, "one", 1.0, 0.5)]
    assert out["regressed_images"] == [{"file": "img3.png", "class_id": 1, "name": "one", "before": 1,
                                        "before_name": "one", "after": 2, "after_name": "two"}]
    assert out["regressed_images_total"] == 1
    json.dumps(out)  # saved with runs and models as it is


def test_a_class_regresses_only_past_the_threshold_and_images_are_capped():
    labels, before, after, files = _arrays()
    out = vs_base.compare_predictions(labels, before, after, old_ids=[0, 1], files=files, regression_points=60.0,
                                      max_images=0)
    assert out["regressions"] == [] and out["regressed_images"] == [] and out["regressed_images_total"] == 1
    assert out["per_class"][1]["name"] == "class 1"  # no names given


def test_compare_predictions_refuses_arrays_of_different_lengths():
    labels, before, after, files = _arrays()
    with pytest.raises(ValueError, match="must be as long: got 6, 5, 6 and 6"):
        vs_base.compare_predictions(labels, before[:5], after, old_ids=[0, 1], files=files)


def test_the_comparison_runs_on_test_else_val():
    assert vs_base.comparison_split(datasets.get_dataset(SAMPLE)) == "test"
    imgs = list(np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8))

    def split(n):
        return SplitToWrite(imgs[:n], np.zeros(n, np.int64), [f"i{k}.png" for k in range(n)], ["s"] * n, [""] * n,
                            np.full((n, 2), 32))
    write_dataset("NoTest", {"train": split(2), "val": split(2)}, classes={0: "a"}, source="s", recipe="r")
    assert vs_base.comparison_split(datasets.get_dataset("NoTest")) == "val"
    write_dataset("TrainOnly", {"train": split(2)}, classes={0: "a"}, source="s", recipe="r")
    with pytest.raises(ValueError, match="no test or val images"):
        vs_base.comparison_split(datasets.get_dataset("TrainOnly"))


# -- the comparison of real models ----------------------------------------------------------------------------------

def _benchmark() -> dict:
    return models.load_checkpoint(registry.model_path("benchmark"))


def _confusing_child(parent: dict) -> dict:
    """``parent`` grown by Sample48's five new classes, where new class 46 copies the "No entry" row with a larger
    bias: every image the base called No entry is now called class 46."""
    info = datasets.get_dataset(SAMPLE)
    model = models.expand_classifier(models.model_from_checkpoint(parent), 5)
    with torch.no_grad():
        model.classifier.weight[LOOKALIKE] = model.classifier.weight[NO_ENTRY]
        model.classifier.bias[LOOKALIKE] = model.classifier.bias[NO_ENTRY] + 1.0
    ids = list(range(48))
    return models.make_checkpoint(model, architecture=parent["architecture"], class_ids=ids,
                                  class_names=[info.classes[c] for c in ids], dataset=SAMPLE, dataset_fingerprint="x",
                                  parent="benchmark", mode="incremental", epochs=1, history=[], metrics={}, config={})


def test_compare_models_names_the_class_a_new_one_took_over():
    base = _benchmark()
    info = datasets.get_dataset(SAMPLE)
    same = vs_base.compare_models(base, base, info)
    assert same["split"] == "test" and same["dataset"] == SAMPLE and same["dataset_version"] == info.fingerprint
    assert same["old_classes"]["images"] == 43 * 6 and same["new_classes"]["images"] == 5 * 6
    assert same["old_classes"]["correct_before"] == same["old_classes"]["correct_after"] > 0.9 * 258
    assert same["regressions"] == [] and same["regressed_images_total"] == 0
    assert same["new_classes"]["before"] == 0.0  # the base cannot predict them

    out = vs_base.compare_models(base, _confusing_child(base), info)
    (worst, *_) = out["regressions"]
    assert (worst["class_id"], worst["name"], worst["after"], worst["delta_points"]) == (
        NO_ENTRY, "No entry", 0.0, round(-100 * worst["before"], 2))
    lost = [im for im in out["regressed_images"] if im["class_id"] == NO_ENTRY]
    assert len(lost) == round(worst["before"] * worst["images"]) > 0
    assert all(im["after"] == LOOKALIKE and im["after_name"] == info.classes[LOOKALIKE] for im in lost)
    test_files = set(datasets.load_split(info, "test").files)
    assert all(im["file"] in test_files for im in out["regressed_images"])  # image ids of the split compared


# -- runs, registry and CLI -----------------------------------------------------------------------------------------

def _small_incremental(**kw) -> training.TrainConfig:
    return training.TrainConfig(**{"mode": "incremental", "epochs": 1, "batch_size": 64, "augment": False, **kw})


def test_a_training_from_a_base_keeps_the_comparison_with_the_run_and_the_model():
    run_id = runs.start("train", TrainRun(_small_incremental(), dataset=SAMPLE, name="inc-cmp", base="benchmark"))
    rec = finished(run_id)
    assert rec["status"] == "done", rec.get("error")
    cmp = rec["result"]["vs_base"]
    assert cmp["split"] == "test" and cmp["old_classes"]["images"] == 258 and cmp["new_classes"]["classes"] == 5
    # phase 1 moves only the new rows: the old classes can only lose images to the new ones
    assert cmp["old_classes"]["correct_after"] <= cmp["old_classes"]["correct_before"]
    assert registry.get_model("inc-cmp").metrics["vs_base"] == cmp
    assert models.load_checkpoint(registry.get_model("inc-cmp").path)["metrics"]["vs_base"] == cmp


def test_a_training_from_scratch_has_nothing_to_compare_with():
    cfg = training.TrainConfig(mode="scratch", epochs=1, batch_size=64, augment=False, max_train_images=64)
    rec = finished(runs.start("train", TrainRun(cfg, dataset=SAMPLE, name="scratch-cmp")))
    assert rec["status"] == "done" and "vs_base" not in rec["result"]


def test_cli_train_json_has_the_comparison(tmp_path):
    out = run_cli("train", "--dataset", SAMPLE, "--mode", "incremental", "--base", "benchmark", "--epochs", "1",
                  "--no-augment", "--name", "cli-inc", "--json", root=tmp_path / "root")
    assert out.returncode == 0, out.stderr
    cmp = json.loads(out.stdout.strip().splitlines()[-1])["vs_base"]
    assert {"before", "after"} <= set(cmp["old_classes"]) and {"before", "after"} <= set(cmp["new_classes"])
    assert isinstance(cmp["regressions"], list) and cmp["split"] == "test"
    assert "compared with the base model" not in out.stderr  # --json: the JSON alone
    again = run_cli("train", "--dataset", SAMPLE, "--mode", "incremental", "--base", "benchmark", "--epochs", "1",
                    "--no-augment", "--name", "cli-inc-2", "--quiet", root=tmp_path / "root")
    assert f"old classes (43): {100 * cmp['old_classes']['before']:.1f} %" in again.stderr


# -- checks before a run is registered ------------------------------------------------------------------------------

@pytest.mark.parametrize("run, message", [
    (TrainRun(_small_incremental(), dataset=SAMPLE, name="benchmark", base="benchmark"), "exists already"),
    (TrainRun(training.TrainConfig(mode="resume"), dataset=SAMPLE, name="r", base="benchmark"),
     r"classes \[43, 44, 45, 46, 47\] the model does not know; use incremental"),
    (TrainRun(_small_incremental(), dataset=SAMPLE, name="i", base="incremental48"), "no classes beyond"),
    (TrainRun(_small_incremental(teachers=("incremental48",)), dataset=SAMPLE, name="t", base="benchmark"), None),
    (TrainRun(training.TrainConfig(mode="scratch", teachers=("benchmark", "published43")), dataset=SAMPLE, name="t"),
     None),
    (TrainRun(training.TrainConfig(mode="resume", teachers=("incremental48",)), dataset=SAMPLE, name="t",
              base="incremental48"), None),
    (TrainRun(training.TrainConfig(mode="transfer_freeze", teachers=("scratch48",)), dataset=SAMPLE, name="t",
              base="benchmark"), None),
    (TrainRun(training.TrainConfig(mode="incremental", teachers=("scratch48",)), dataset=SAMPLE, name="t",
              base="nope"), "no model named 'nope'"),
])
def test_impossible_trainings_are_refused_before_they_are_registered(run, message):
    if message is None:
        run.check()  # teachers sharing the model's classes (all or its first ones) pass
        return
    with pytest.raises(ValueError, match=message):
        runs.start("train", run)
    assert runs.list_runs("train") == []


def test_a_teacher_of_other_classes_is_refused_before_the_run():
    cfg = training.TrainConfig(mode="incremental", teachers=("scratch48",))
    # benchmark + Sample48: classes 0-47; scratch48 predicts GTSRB_48's 0-47 too, so it fits; a 43-class teacher
    # fits as "the first ones"; a teacher of 48 classes for a 43-class model does not.
    TrainRun(cfg, dataset=SAMPLE, name="ok", base="benchmark").check()
    bad = training.TrainConfig(mode="resume", teachers=("scratch48",))
    sub = _only_old_classes_workspace()
    with pytest.raises(ValueError, match="teacher 'scratch48' predicts 48 classes, the model 43"):
        runs.start("train", TrainRun(bad, dataset=sub, name="t", base="benchmark"))
    assert runs.list_runs("train") == []


def _only_old_classes_workspace() -> str:
    """A workspace of Sample48 without its five classes beyond GTSRB's 43 (their images deleted)."""
    from core.data import workspace_changes
    workspaces.derive(SAMPLE, "Old43")
    info = datasets.get_dataset("Old43")
    extra = [r["file"] for r in datasets.read_index(info) if r["class_id"] >= 43]
    workspace_changes.delete_images("Old43", extra)
    return "Old43"


def test_a_name_promised_to_a_training_in_progress_is_refused():
    release = threading.Event()
    blocker = runs.submit("train", {"name": "taken", "out": None}, lambda ctx, cfg: release.wait(60) and {},
                          title="train taken")
    try:
        wait_until(lambda: runs.get(blocker)["status"] in runs.ACTIVE, what="the blocking run registered")
        with pytest.raises(ValueError, match=f"training run {blocker}, still .*'taken'; choose another name"):
            runs.start("train", TrainRun(_small_incremental(), dataset=SAMPLE, name="taken", base="benchmark"))
        assert [r["id"] for r in runs.list_runs("train")] == [blocker]
    finally:
        release.set()
        finished(blocker)


# -- keeping what the base knew -------------------------------------------------------------------------------------

def test_old_layers_learn_at_their_share_of_the_rate():
    model = models.build_model("published", 48)
    (p1, p2) = training.plan_phases(_small_incremental(epochs=3, old_layers_lr=0.1), phase1_images=100)
    assert p1.old_layers_lr == 1.0 and p2.old_layers_lr == 0.1
    for p in model.parameters():
        p.requires_grad_(True)
    old, head = param_groups(model, p2)
    assert old["lr"] == pytest.approx(0.1 * p2.lr) and head["lr"] == p2.lr
    assert {id(p) for p in head["params"]} == {id(p) for p in model.classifier.parameters()}
    assert len(old["params"]) + len(head["params"]) == len(list(model.parameters()))
    (only,) = param_groups(model, p1)
    assert only["lr"] == p1.lr
    with pytest.raises(ValueError, match="old_layers_lr is a share of finetune_lr"):
        training.TrainConfig(old_layers_lr=1.5).validate()


def test_weight_aligning_gives_new_rows_the_old_rows_length():
    torch.manual_seed(0)
    model = models.build_model("published", 48)
    with torch.no_grad():
        model.classifier.weight[43:] *= 5.0
    gamma = align_new_rows(model, 43)
    norms = model.classifier.weight.detach().norm(dim=1)
    assert gamma < 1 and float(norms[43:].mean()) == pytest.approx(float(norms[:43].mean()), rel=1e-5)
    assert align_new_rows(model, 48) == 1.0  # nothing new to align


def test_calibration_lowers_new_rows_just_enough_to_give_old_images_back():
    torch.manual_seed(0)
    model = models.expand_classifier(models.build_model("published", 3), 1)
    images = np.random.default_rng(0).integers(0, 255, (12, 48, 48, 3), dtype=np.uint8)
    with torch.no_grad():  # the new row 3 takes every image, by a margin of 2.1 (logits) over row 0
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([1.0, -5.0, -5.0, 3.1]))
    targets = np.array([0] * 9 + [3] * 3)
    offset = calibrate_new_rows(model, images, targets, 3)
    assert offset == 2.25  # the smallest offset of the grid past the margin: the old images come back
    assert float(model.classifier.bias[3]) == pytest.approx(0.85)
    assert calibrate_new_rows(model, images[:0], targets[:0], 3) == 0.0


def test_an_incremental_training_calibrates_its_new_rows_by_default_and_records_the_offset(monkeypatch):
    seen = []
    real = calibrate_new_rows

    def spy(model, images, targets, n_old):
        seen.append((len(images), n_old))
        return real(model, images, targets, n_old)
    monkeypatch.setattr(training, "calibrate_new_rows", spy)
    assert training.TrainConfig().calibrate_new_classes
    res = training.train(_small_incremental(epochs=1, max_train_images=64), datasets.get_dataset(SAMPLE),
                         parent=_benchmark(), parent_name="benchmark")
    assert seen == [(144, 43)]  # on the val images, new rows from the base's 43 on
    offset = res.checkpoint["metrics"]["new_class_offset"]
    assert offset in NEW_ROW_OFFSETS
    parent_bias = _benchmark()["weights"]["classifier.bias"]
    assert torch.equal(res.checkpoint["weights"]["classifier.bias"][:43], parent_bias)  # old rows untouched
    off = training.train(_small_incremental(epochs=1, max_train_images=64, calibrate_new_classes=False),
                         datasets.get_dataset(SAMPLE), parent=_benchmark(), parent_name="benchmark")
    assert "new_class_offset" not in off.checkpoint["metrics"] and len(seen) == 1
    assert torch.allclose(res.checkpoint["weights"]["classifier.bias"][43:],
                          off.checkpoint["weights"]["classifier.bias"][43:] - offset)


# -- the Improve page -----------------------------------------------------------------------------------------------


def improve_page() -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=PAGE_S)
    at.run()
    at.switch_page("pages/improve.py")
    at.run()
    assert not at.exception, at.exception
    return at


def right_column(at: AppTest):
    """The page's top right column (the form's)."""
    row = next(c for c in at.main.children.values() if c.type == "flex_container"
               and [getattr(x, "type", None) for x in c.children.values()] == ["column", "column"])
    return list(row.children.values())[1]


def _forms(node) -> list:
    found = [node] if getattr(node, "type", None) == "form" else []
    for child in getattr(node, "children", {}).values():
        found += _forms(child)
    return found


def test_enter_in_the_improve_form_does_not_start_a_training():
    at = improve_page()
    (form,) = _forms(at._tree)
    assert form.proto.form.enter_to_submit is False  # Enter in a field confirms it; only the button submits
    at.text_input(key="improve_name").input("typed-and-enter").run()
    assert not at.exception and runs.list_runs("train") == []


def test_the_mode_picker_shows_plain_names_and_keeps_the_values():
    at = improve_page()
    radio = at.radio(key="improve_mode")
    assert "Transfer (frozen features)" in radio.options and "transfer_freeze" not in radio.options
    radio.set_value("transfer_freeze").run()
    assert at.radio(key="improve_mode").value == "transfer_freeze"
    text = " ".join(c.value for c in at.caption)
    assert "new_class" not in text and "transfer_freeze" not in text


def test_a_duplicate_name_is_refused_at_once_with_one_message():
    release = threading.Event()
    blocker = runs.submit("train", {"name": "my-model", "out": None}, lambda ctx, cfg: release.wait(60) and {},
                          title="train my-model")
    try:
        at = improve_page()
        at.radio(key="improve_mode").set_value("scratch").run()
        at.selectbox(key="improve_dataset").set_value(SAMPLE).run()
        at.button[[b.label for b in at.button].index("Start training")].click().run()
        assert not at.exception, at.exception
        (error,) = [e.value for e in at.error]
        assert error.startswith(f"training run {blocker}") and "choose another name" in error
        assert "failed" not in error and [r["id"] for r in runs.list_runs("train")] == [blocker]
    finally:
        release.set()
        finished(blocker)


def test_a_started_training_shows_near_the_top_and_ends_with_the_comparison():
    at = improve_page()
    at.radio(key="improve_mode").set_value("incremental").run()
    at.selectbox(key="improve_base").set_value("benchmark").run()
    at.selectbox(key="improve_dataset").set_value(SAMPLE).run()
    at.text_input(key="improve_name").input("page-inc")
    at.number_input(key="improve_epochs").set_value(2)
    at.checkbox(key="improve_augment").uncheck()
    at.button[[b.label for b in at.button].index("Start training")].click().run()
    assert not at.exception, at.exception
    job = finished(at.session_state["improve_job"])
    assert job["status"] == "done", job.get("error")
    # the form's "Learning rate" is the fine-tuning rate when adding classes; the page's defaults are TrainConfig's
    defaults = training.TrainConfig()
    assert (job["config"]["train"]["finetune_lr"], job["config"]["train"]["lr"]) == (defaults.finetune_lr, defaults.lr)
    assert job["config"]["train"]["calibrate_new_classes"] is True
    at.run()
    assert not at.exception, at.exception
    right = right_column(at)  # the form's column: the run shows under the form, not below the fold
    assert any("page-inc" in p.proto.text for p in right.get("progress"))
    saved = [s.value for s in right.success if "saved" in s.value]
    assert saved and "best validation accuracy" in saved[0] and " %" in saved[0]
    (table, *_) = right.table
    frame = table.value
    assert list(frame.columns) == ["images", "before", "after"]
    assert frame.index[0] == "Old classes (the base model's, 43)" and frame.iloc[0]["images"] == 258
    cmp = job["result"]["vs_base"]
    assert frame.iloc[0]["before"] == f"{100 * cmp['old_classes']['before']:.1f} %"
    assert any("Compared with benchmark" in m.value for m in right.markdown)
    for chart in at.get("plotly_chart"):
        assert json.loads(chart.proto.config)["displayModeBar"] is False


def test_the_regressed_classes_and_images_are_named():
    base = _benchmark()
    cmp = vs_base.compare_models(base, _confusing_child(base), datasets.get_dataset(SAMPLE))
    result = {"model": "confused", "seconds": 1.0, "best_val_acc": 0.5, "best_epoch": 1, "vs_base": cmp}
    job = runs.submit("train", {"name": "confused", "base": "benchmark"}, lambda ctx, cfg: result,
                      title="train confused")
    finished(job)
    at = AppTest.from_file(HOME, default_timeout=PAGE_S)
    at.session_state["improve_job"] = job  # the run this session started
    at.run()
    at.switch_page("pages/improve.py")
    at.run()
    assert not at.exception, at.exception
    right = right_column(at)
    assert any("lost accuracy" in w.value for w in right.warning)
    regressed = right.table[1].value
    assert regressed.index[0] == "17: No entry" and regressed.iloc[0]["after"] == "0.0 %"
    assert regressed.iloc[0]["change"].endswith(" pt") and regressed.iloc[0]["change"].startswith("-")
    captions = " ".join(c.value for c in right.caption)
    assert "after: 46: Speed limit (5km/h)" in captions
    assert len(right.get("image")) == min(len(cmp["regressed_images"]), 8)


def test_the_dataset_picker_starts_at_the_base_model_s_own_data():
    torch.manual_seed(0)
    ckpt = models.make_checkpoint(models.build_model("published", 48), architecture="published",
                                  class_ids=list(range(48)), class_names=[str(i) for i in range(48)], dataset=SAMPLE,
                                  dataset_fingerprint="x", parent=None, mode="scratch", epochs=1, history=[],
                                  metrics={}, config={})
    registry.register("sample-model", ckpt)
    workspaces.derive(SAMPLE, "Mine")
    at = AppTest.from_file(HOME, default_timeout=PAGE_S)
    at.session_state["improve_base"] = "sample-model"  # as if chosen before the dataset picker had a value
    at.run()
    at.switch_page("pages/improve.py")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="improve_dataset").value == "Mine"  # derived from the base model's dataset


def test_progress_messages_use_plain_words_and_percentages():
    messages = []
    training.train(_small_incremental(epochs=2, max_train_images=64), datasets.get_dataset(SAMPLE),
                   parent=_benchmark(), parent_name="benchmark", progress=lambda f, m="", e=None: messages.append(m))
    text = " ".join(messages)
    assert "(new classes only)" in text and "(all layers)" in text and "new_rows" not in text
    done = [m for m in messages if " done: " in m]
    assert done and all(m.rstrip().endswith(" %") and "val accuracy" in m for m in done)
    assert training_config.MODE_LABELS["transfer_freeze"] == "Transfer (frozen features)"
    assert "\u00b7 add classes (incremental)" in TrainRun(_small_incremental(), dataset=SAMPLE, name="n").title()
