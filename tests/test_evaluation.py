import numpy as np
import pytest
import torch

from core.analysis import evaluation, explain, metrics, reports
from core.learning import models, registry
from core import runs
from core.analysis.anchor_run import AnchorRun
from core.analysis.evaluate_run import EvaluateRun
from tests.run_support import finished


def _register(name="m48", n=48, seed=0):
    torch.manual_seed(seed)
    m = models.build_model("published", n)
    ck = models.make_checkpoint(m, architecture="published", class_ids=list(range(n)),
                                class_names=[f"c{i}" for i in range(n)], dataset="Sample48", dataset_fingerprint="x",
                                parent=None, mode="scratch", epochs=1, history=[], metrics={}, config={})
    registry.register(name, ck)
    return ck


def _max_overlap(records):
    events = sorted([(r["started"], 1) for r in records] + [(r["finished"], -1) for r in records])
    now = best = 0
    for _, d in events:
        now += d
        best = max(best, now)
    return best


def test_six_real_evaluations_run_five_at_a_time_and_keep_their_reports():
    _register()
    ids = [runs.start("evaluate", EvaluateRun(model="m48", dataset="Sample48", split="train")) for _ in range(6)]
    done = [finished(i) for i in ids]
    assert [d["status"] for d in done] == ["done"] * 6, [d.get("error") for d in done]
    assert _max_overlap(done) == 5
    listed = {r["id"] for r in reports.list_reports()}
    assert set(ids) <= listed
    rep = reports.load_report(ids[0])
    assert rep.summary["n"] == 576 and len(rep.predictions.y_true) == 576
    assert rep.predictions.top_ids.shape == (576, 5)
    # Reopening gives the same numbers as the job result.
    assert rep.summary["accuracy"] == pytest.approx(done[0]["result"]["accuracy"])


def test_report_helpers_cells_mistakes_and_comparison():
    _register("a", seed=0)
    _register("b", seed=1)
    ra = finished(runs.start("evaluate", EvaluateRun(model="a", dataset="Sample48", split="test")))
    rb = finished(runs.start("evaluate", EvaluateRun(model="b", dataset="Sample48", split="test")))
    a, b = reports.load_report(ra["id"]), reports.load_report(rb["id"])
    p = a.predictions
    t, q = int(p.y_true[0]), int(p.y_pred[0])
    idx = reports.cell_indices(a, t, q)
    assert 0 in idx and all(p.y_true[i] == t and p.y_pred[i] == q for i in idx)
    cm = np.asarray(a.summary["confusion"])
    cells = reports.confusion_cells(a)
    assert cells["count"].sum() == cm.sum() == len(p.y_true)
    first = cells.iloc[0]
    assert first["true_name"] == a.class_name(int(first["true"])) and first["pred_name"] == a.class_name(
        int(first["predicted"]))
    assert reports.wrong_classes(a) == sorted({int(c) for c in p.y_true[p.y_true != p.y_pred]})
    wrong = reports.misclassified(a)
    assert len(wrong) == int((p.y_true != p.y_pred).sum())
    imgs = reports.report_images(a, wrong[:3])
    assert all(im.shape == (32, 32, 3) for im in imgs)
    rows = reports.compare_reports(a, b)
    r14 = next(r for r in rows if r["class_id"] == 14)
    assert r14["f1_delta"] == pytest.approx(b.summary["per_class"]["14"]["f1"] - a.summary["per_class"]["14"]["f1"])
    table = reports.per_class_frame(a)
    assert list(table.columns[:3]) == ["class_id", "name", "support"] and len(table) == 48
    capped = table.assign(plr=[metrics.LR_CAP] + [2.5] * (len(table) - 1))
    shown = reports.readable_per_class(capped)
    assert shown["plr"].iloc[0] == "\u221e" and shown["plr"].iloc[1] == "2.5"
    assert capped["plr"].iloc[0] == metrics.LR_CAP  # the table itself is left as it was


def test_a_43_class_model_on_48_classes_counts_new_classes_as_errors():
    _register("m43", n=43)
    job = finished(runs.start("evaluate", EvaluateRun(model="m43", dataset="Sample48", split="test",
                                                        classes="all")))
    rep = reports.load_report(job["id"])
    assert rep.summary["labels"] == list(range(48)) and rep.summary["classes"] == "all"
    for cid in range(43, 48):
        assert rep.summary["per_class"][str(cid)]["recall"] == 0.0
    # by default only the images of the model's classes are evaluated
    own = reports.load_report(finished(runs.start("evaluate", EvaluateRun(
        model="m43", dataset="Sample48", split="test")))["id"])
    assert own.summary["labels"] == list(range(43)) and own.summary["n"] == rep.summary["n"] - 5 * 6
    assert "one was limited to its model's classes" in reports.comparison_warning(rep, own)


def test_anchor_job_on_a_report_image():
    _register()
    job = finished(runs.start("evaluate", EvaluateRun(model="m48", dataset="Sample48", split="test")))
    aid = runs.start("anchor", AnchorRun(report=job["id"], index=0, threshold=0.9))
    done = finished(aid)
    assert done["status"] == "done", done.get("error")
    r = done["result"]
    assert 0 <= r["coverage"] <= 1 and 0 <= r["precision"] <= 1
    mask, segments = reports.load_anchor(done["result"]["file"])
    assert mask.shape == (48, 48) and mask.dtype == bool and segments.shape == (48, 48)
    shown = explain.anchor_overlay(reports.report_images(reports.load_report(job["id"]), [0])[0], mask)
    assert shown.shape == (48, 48, 3)


def test_anchor_job_refuses_a_report_whose_model_file_changed():
    """Anchors explain a report's image with the model version that made the report, or not at all."""
    _register()
    job = finished(runs.start("evaluate", EvaluateRun(model="m48", dataset="Sample48", split="test")))
    torch.manual_seed(1)
    retrained = {**models.load_checkpoint(registry.model_path("m48")),
                 "weights": models.build_model("published", 48).state_dict()}
    models.save_checkpoint(retrained, registry.model_path("m48"))
    before = len(runs.list_runs("anchor"))
    with pytest.raises(ValueError, match="retrained or replaced"):
        runs.start("anchor", AnchorRun(report=job["id"], index=0, threshold=0.9))
    assert len(runs.list_runs("anchor")) == before  # nothing registered


@pytest.mark.parametrize("kw, msg", [({"model": "nope", "dataset": "Sample48", "split": "test"}, "no model"),
                                     ({"model": "m48", "dataset": "Nope", "split": "test"}, "no dataset"),
                                     ({"model": "m48", "dataset": "Sample48", "split": "dev"}, "unknown split")])
def test_bad_evaluation_requests_are_refused(kw, msg):
    _register()
    with pytest.raises(ValueError, match=msg):
        runs.start("evaluate", EvaluateRun(**kw))


def _fake_report(confusion, labels, **summary):
    import numpy as np
    from core.analysis.evaluation import Predictions
    empty = np.zeros(0, np.int64)
    return reports.Report("r", {"confusion": confusion, "labels": labels, "dataset": "D", "split": "test",
                                "dataset_version": "v", "n": 10, **summary},
                          Predictions(empty, empty, empty, empty.reshape(0, 1), empty.reshape(0, 1), []))


def test_worst_confusion_and_comparison_warnings():
    r = _fake_report([[5, 0, 1], [3, 4, 0], [0, 0, 2]], [0, 7, 9])
    assert reports.worst_confusion(r) == (7, 0)
    assert reports.worst_confusion(_fake_report([[3, 0], [0, 2]], [1, 2])) is None
    same = _fake_report([[1]], [1])
    assert reports.comparison_warning(r, same) is None
    other = _fake_report([[1]], [1], split="val")
    assert "different images" in reports.comparison_warning(r, other)
    changed = _fake_report([[1]], [1], dataset_version="w")
    assert "changed between the two reports" in reports.comparison_warning(r, changed)


def test_worst_first_orders_each_metric_by_its_bad_end():
    import pandas as pd
    from core.analysis import reports
    table = pd.DataFrame({"class_id": [0, 1, 2], "f1": [0.9, 0.5, 0.7], "nlr": [0.1, 0.6, 0.3]})
    assert list(reports.worst_first(table, "f1")["class_id"]) == [1, 2, 0]   # low F1 is bad
    assert list(reports.worst_first(table, "nlr")["class_id"]) == [1, 2, 0]  # high NLR is bad
    with pytest.raises(ValueError, match="unknown metric"):
        reports.worst_first(table, "speed")


def _saved_report(report_id: str) -> dict:
    from core.data import datasets
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 30)
    pred = np.where(rng.random(30) < 0.7, y, (y + 1) % 3)
    preds = evaluation.Predictions(y, pred, np.full(30, 0.9), pred[:, None], np.full((30, 1), 0.9), ["f.png"] * 30)
    summary = evaluation.summarise(preds, class_ids=[0, 1, 2], images_per_s=10.0)
    reports.save_report(report_id, summary, preds, model="m", model_version="v",
                        dataset=datasets.get_dataset("Sample48"), split="test")
    return summary


def test_a_report_of_another_metric_set_is_computed_again_and_one_of_this_set_is_reused(monkeypatch):
    saved = _saved_report("r1")
    calls = []
    monkeypatch.setattr(reports, "summarise", lambda *a, **k: calls.append(1) or evaluation.summarise(*a, **k))
    same = reports.load_report("r1").summary
    assert calls == [] and same["metrics_version"] == metrics.metrics_version()
    assert same["per_class"] == saved["per_class"]
    toy = metrics.Metric("toy", "Toy", lambda c: c.tp.astype(np.float64), True, "number", "true positives")
    monkeypatch.setitem(metrics.REGISTRY.table, "toy", toy)
    again = reports.load_report("r1").summary
    assert calls == [1] and again["metrics_version"] == metrics.metrics_version() != saved["metrics_version"]
    assert "toy" in again["per_class"]["1"] and "macro_toy" in again["metrics"]
    assert again["accuracy"] == saved["accuracy"] and again["n"] == saved["n"] and again["model"] == "m"


def test_a_report_saved_before_the_metric_set_version_still_opens_as_it_was(monkeypatch):
    import json
    _saved_report("old")
    path = reports.report_dir("old") / "report.json"
    old = json.loads(path.read_text())
    del old["metrics_version"]
    path.write_text(json.dumps(old))
    monkeypatch.setattr(reports, "summarise", lambda *a, **k: pytest.fail("an unchanged metric set recomputes"))
    back = reports.load_report("old").summary
    assert back["per_class"] == old["per_class"] and "metrics_version" not in back
