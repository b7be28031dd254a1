"""Model diff (core/analysis/model_diff.py) and ``python -m core compare``: counts, McNemar's exact test,
per-class deltas, shared classes, and the refusals."""
from __future__ import annotations

import contextlib
import io
import json
from math import comb

import numpy as np
import pytest

from core.analysis import model_diff, reports
from core.analysis.evaluation import Predictions
from core.data import datasets
from core.cli.main import main
from core.learning import models, registry


def _report(rid: str, y_true, y_pred, files, *, model: str, classes, dataset: str = "D", split: str = "test",
            version: str = "v1", model_version: str | None = None) -> reports.Report:
    """A report in memory: what :func:`model_diff.diff_reports` reads."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = len(y_true)
    preds = Predictions(y_true, y_pred, np.ones(n), y_pred[:, None], np.ones((n, 1)), list(files))
    summary = {"model": model, "model_version": model_version or f"{model}-v", "dataset": dataset, "split": split,
               "dataset_version": version, "labels": sorted(set(classes)), "model_classes": list(classes),
               "class_names": {str(c): f"name {c}" for c in range(10)}}
    return reports.Report(rid, summary, preds)


def _exact(x: int, y: int) -> float:
    n, k = x + y, min(x, y)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n)


@pytest.mark.parametrize("x,y", [(0, 5), (3, 4), (1, 9), (12, 2), (7, 7)])
def test_mcnemar_exact_is_the_two_sided_binomial_on_the_discordant_pairs(x, y):
    assert model_diff.mcnemar_exact(x, y) == pytest.approx(_exact(x, y))
    assert model_diff.mcnemar_exact(x, y) == pytest.approx(model_diff.mcnemar_exact(y, x))


def test_mcnemar_without_disagreement_is_one_and_negative_counts_are_refused():
    assert model_diff.mcnemar_exact(0, 0) == 1.0
    with pytest.raises(ValueError, match=">= 0"):
        model_diff.mcnemar_exact(-1, 3)


def test_diff_lines_images_up_by_file_and_counts_each_cell():
    files = [f"f{i}.png" for i in range(8)]
    #            f0 f1 f2 f3 f4 f5 f6 f7
    truth = [0, 0, 0, 1, 1, 1, 2, 2]
    a_pred = [0, 0, 1, 1, 0, 1, 2, 0]     # right: f0 f1 f3 f5 f6
    b_pred = [0, 1, 0, 1, 1, 0, 2, 2]     # right: f0 f2 f3 f4 f6 f7
    a = _report("ra", truth, a_pred, files, model="A", classes=[0, 1, 2])
    order = [7, 3, 0, 5, 1, 6, 2, 4]      # B lists the same images in another order, plus one A never saw
    b = _report("rb", [truth[i] for i in order] + [0], [b_pred[i] for i in order] + [0],
                [files[i] for i in order] + ["extra.png"], model="B", classes=[0, 1, 2])
    d = model_diff.diff_reports(a, b)
    assert d.n == 8 and d.both_right == 3 and d.both_wrong == 0
    assert sorted(d.a_right_b_wrong.tolist()) == [1, 5]                 # f1, f5
    assert sorted(d.b_right_a_wrong.tolist()) == [2, 4, 7]              # f2, f4, f7
    assert all(b.predictions.files[d.rows_b[i]] == files[i] for i in range(8))
    assert d.mcnemar_p == pytest.approx(_exact(2, 3))
    by_class = {r["class_id"]: r for r in d.per_class}
    assert by_class[1]["accuracy_a"] == pytest.approx(2 / 3) and by_class[1]["accuracy_b"] == pytest.approx(2 / 3)
    assert by_class[2]["delta"] == pytest.approx(0.5) and by_class[2]["b_right_a_wrong"] == 1
    assert by_class[0]["name"] == "name 0" and by_class[0]["a_right_b_wrong"] == 1
    assert d.per_class[0]["class_id"] == 2  # the largest change first
    s = d.summary()
    assert (s["a_right_b_wrong"], s["b_right_a_wrong"], s["shared_classes"]) == (2, 3, [0, 1, 2])
    json.dumps(s)  # the CLI's JSON


def test_models_with_different_classes_are_compared_on_the_shared_ones():
    files = [f"f{i}.png" for i in range(6)]
    truth = [0, 1, 2, 3, 3, 0]
    a = _report("ra", truth, [0, 1, 2, 3, 3, 0], files, model="A", classes=[0, 1, 2, 3])
    b = _report("rb", truth, [0, 0, 2, 4, 4, 0], files, model="B", classes=[0, 1, 2, 4])
    d = model_diff.diff_reports(a, b)
    assert d.shared_classes == [0, 1, 2] and d.only_a == [3] and d.only_b == [4]
    assert d.n == 4  # the class-3 images are left out: B cannot predict them
    assert d.a_right_b_wrong.tolist() == [1] and d.b_right_a_wrong.tolist() == []


@pytest.mark.parametrize("change,message", [
    (dict(rid="ra"), "same report twice"),
    (dict(model="A", model_version="A-v"), "both reports are of model 'A'"),
    (dict(dataset="E"), "different data"),
    (dict(split="val"), "different data"),
    (dict(version="v2"), "changed between the two reports"),
    (dict(classes=[7, 8]), "share no class"),
])
def test_bad_pairs_are_refused_with_what_to_do(change, message):
    files = ["a.png", "b.png"]
    a = _report("ra", [0, 1], [0, 1], files, model="A", classes=[0, 1])
    kw = dict(rid="rb", model="B", classes=[0, 1])
    kw.update(change)
    b = _report(kw.pop("rid"), [0, 1], [1, 1], files, **kw)
    with pytest.raises(ValueError, match=message):
        model_diff.diff_reports(a, b)


def test_a_retrained_model_can_be_compared_with_its_old_self():
    files = ["a.png", "b.png"]
    a = _report("ra", [0, 1], [0, 0], files, model="A", classes=[0, 1], model_version="old")
    b = _report("rb", [0, 1], [0, 1], files, model="A", classes=[0, 1], model_version="new")
    assert model_diff.diff_reports(a, b).b_right_a_wrong.tolist() == [1]


def _register(name: str, n: int, seed: int, first: int = 0) -> None:
    import torch
    torch.manual_seed(seed)
    m = models.build_model("published", n)
    ck = models.make_checkpoint(m, architecture="published", class_ids=list(range(first, first + n)),
                                class_names=[f"class {i}" for i in range(n)], dataset="Sample48",
                                dataset_fingerprint="x", parent=None, mode="scratch", epochs=1, history=[],
                                metrics={}, config={})
    registry.register(name, ck)


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _compare_json(split: str) -> dict:
    """``python -m core compare --json`` of m48 (A) and m43 (B), registered here, on Sample48/``split``."""
    _register("m48", 48, 0)
    _register("m43", 43, 1)
    code, out, err = _cli("compare", "--model", "m48", "--model", "m43", "--dataset", "Sample48", "--split", split,
                          "--json")
    assert code == 0, err
    return json.loads(out)


def test_cli_compare_evaluates_what_is_missing_then_reuses_the_reports():
    result = _compare_json("test")
    assert {"n", "a_right_b_wrong", "b_right_a_wrong", "mcnemar_p", "shared_classes", "per_class"} <= set(result)
    assert result["shared_classes"] == list(range(43)) and result["only_a"] == [43, 44, 45, 46, 47]
    assert result["n"] == 43 * 6  # Sample48's test split: 6 images a class
    made = [r["id"] for r in reports.list_reports()]
    assert len(made) == 2  # one evaluation per model, kept as reports the app lists
    a, b = reports.load_report(result["report_a"]), reports.load_report(result["report_b"])
    d = model_diff.diff_reports(a, b)
    assert (len(d.a_right_b_wrong), len(d.b_right_a_wrong)) == (result["a_right_b_wrong"], result["b_right_a_wrong"])
    assert result["mcnemar_p"] == pytest.approx(model_diff.mcnemar_exact(len(d.a_right_b_wrong),
                                                                         len(d.b_right_a_wrong)))
    assert sum(r["n"] for r in result["per_class"]) == result["n"]
    code, out, _ = _cli("compare", "--model", "m48", "--model", "m43", "--dataset", "Sample48", "--json")
    assert code == 0 and json.loads(out)["report_a"] == result["report_a"]
    assert [r["id"] for r in reports.list_reports()] == made  # nothing evaluated again


@pytest.mark.parametrize("argv,message", [
    (("--model", "m48", "--model", "m48"), "same model twice"),
    (("--model", "m48"), "exactly two models"),
    (("--model", "m48", "--model", "nope"), "no model named 'nope'"),
])
def test_cli_compare_refuses_bad_requests_without_evaluating(argv, message):
    _register("m48", 48, 0)
    code, _, err = _cli("compare", *argv, "--dataset", "Sample48")
    assert code == 2 and message in err
    assert reports.list_reports() == []


def test_models_sharing_no_class_are_refused_before_any_evaluation():
    _register("m48", 48, 0)
    _register("m2", 2, 0, first=100)
    with pytest.raises(ValueError, match="share no class"):
        model_diff.missing_evaluations("m48", "m2", "Sample48", "test")
    assert reports.list_reports() == []


# --- the track-level test -------------------------------------------------------------------------------------

@pytest.mark.parametrize("x,y", [(0, 5), (3, 4), (1, 9), (12, 2), (7, 7), (40, 60)])
def test_sign_flip_with_one_image_per_track_is_mcnemars_exact_test(x, y):
    one_each = np.array([1] * x + [-1] * y + [0] * 3)
    assert model_diff.sign_flip_p(one_each) == pytest.approx(model_diff.mcnemar_exact(x, y), rel=1e-9)


def test_sign_flip_counts_each_track_once():
    # nonzero |d|: 3 1 1 1 7 1 (64 sign patterns), total 12: |sum| >= 12 only with no flip or one 1 flipped, or
    # their mirror images: 10 of 64
    assert model_diff.sign_flip_p(np.array([3, 1, 1, -1, 7, 1, 0])) == pytest.approx(10 / 64)
    assert model_diff.sign_flip_p(np.array([10, -1])) == 1.0  # one lopsided track proves nothing
    assert model_diff.sign_flip_p(np.array([0, 0])) == 1.0 and model_diff.sign_flip_p(np.array([], int)) == 1.0
    with pytest.raises(ValueError, match="1-D integer"):
        model_diff.sign_flip_p(np.array([0.5, 1.0]))


def test_disagreements_inside_one_track_are_not_evidence():
    # 10 frames of track t1 where A is right and B wrong, one frame of t2 the other way, 4 untracked images agree
    files = [f"t1_{i}.png" for i in range(10)] + ["t2_0.png"] + [f"u{i}.png" for i in range(4)]
    truth = [0] * 15
    a = _report("ra", truth, [0] * 10 + [1] + [0] * 4, files, model="A", classes=[0, 1])
    b = _report("rb", truth, [1] * 10 + [0] + [0] * 4, files, model="B", classes=[0, 1])
    tracks = {f: f.split("_")[0] for f in files if f.startswith("t")}
    d = model_diff.diff_reports(a, b, tracks=tracks)
    assert (len(d.a_right_b_wrong), len(d.b_right_a_wrong)) == (10, 1)
    assert d.mcnemar_p == pytest.approx(_exact(10, 1)) and d.mcnemar_p < 0.05
    assert d.tracks == 2 and d.track_p == 1.0
    assert d.summary()["track_p"] == 1.0 and d.summary()["tracks"] == 2
    untracked = model_diff.diff_reports(a, b, tracks={})
    assert untracked.tracks == 0 and untracked.track_p is None  # the dataset "D" has no index either
    assert model_diff.diff_reports(a, b).track_p is None


def test_cli_compare_on_a_split_made_by_track_tests_tracks_too():
    result = _compare_json("val")
    index = {r["file"]: r for r in datasets.read_index(datasets.get_dataset("Sample48"), "val")}
    report_a = reports.load_report(result["report_a"])
    d = model_diff.diff_reports(report_a, reports.load_report(result["report_b"]))
    shared = [f for f in report_a.predictions.files if int(index[f]["class_id"]) < 43]  # m43 lacks 43-47
    assert result["tracks"] == len({index[f]["track"] for f in shared if index[f]["track"]}) > 1
    by_track = {}  # an untracked image is its own track
    for rows, vote in ((d.a_right_b_wrong, 1), (d.b_right_a_wrong, -1)):
        for f in (report_a.predictions.files[i] for i in rows):
            key = index[f]["track"] or f
            by_track[key] = by_track.get(key, 0) + vote
    assert result["track_p"] == pytest.approx(model_diff.sign_flip_p(np.array(list(by_track.values()))))
    code, out, _ = _cli("compare", "--model", "m48", "--model", "m43", "--dataset", "Sample48", "--split", "val")
    assert code == 0 and f"by track ({result['tracks']:,} tracks, each counted once) p = " in out
    code, out, _ = _cli("compare", "--model", "m48", "--model", "m43", "--dataset", "Sample48", "--json")
    assert code == 0 and json.loads(out)["track_p"] is None  # the test split has no tracks
