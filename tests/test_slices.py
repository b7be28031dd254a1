"""Underperforming slices (core/analysis/slices.py): image properties, quantile bins, slice accuracies, sources,
and a real report's slices."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from core import runs
from core.analysis import reports, slices
from core.analysis.evaluate_run import EvaluateRun
from core.data import workspace_changes, workspaces
from core.learning import models, registry
from tests.run_support import finished


def test_image_properties_measure_brightness_contrast_and_sharpness():
    grey = np.full((2, 16, 16, 3), 100, np.uint8)
    grey[1] = 200
    p = slices.image_properties(grey)
    assert p["brightness"].tolist() == pytest.approx([100, 200]) and p["contrast"].tolist() == [0, 0]
    assert p["sharpness"].tolist() == [0, 0]
    board = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)
    sharp = np.repeat(board[..., None], 3, axis=2)
    blurred = cv2.GaussianBlur(sharp, (7, 7), 2)
    q = slices.image_properties(np.stack([sharp, blurred]))
    assert q["contrast"][0] == pytest.approx(127.5, abs=0.5)
    assert q["sharpness"][0] > 10 * q["sharpness"][1]  # blur lowers the variance of the Laplacian


def test_image_properties_refuse_grey_arrays():
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        slices.image_properties(np.zeros((2, 8, 8), np.uint8))


def test_quantile_bins_split_evenly_and_leave_unknown_values_out():
    which, edges = slices.quantile_bins(np.array([1, 2, 3, 4, 5, 6, 7, 8, np.nan]), bins=4)
    assert which.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, -1]
    assert edges[0] == 1 and edges[-1] == 8
    same, edges = slices.quantile_bins(np.full(5, 3.0), bins=4)
    assert same.tolist() == [0] * 5 and len(edges) == 2
    none, edges = slices.quantile_bins(np.full(3, np.nan), bins=4)
    assert none.tolist() == [-1, -1, -1] and len(edges) == 0


def test_compute_slices_ranks_the_worst_groups_with_their_gap():
    # 40 images: the darkest quarter is mostly wrong, the TSRD ones all wrong.
    brightness = np.arange(40, dtype=float)
    correct = np.ones(40, bool)
    correct[:8] = False                       # 8 of the 10 darkest wrong
    source = np.array(["GTSRB"] * 36 + ["TSRD"] * 4)
    correct[36:] = False
    size = np.full(40, np.nan)
    size[10:30] = np.arange(20)  # known for 20 images, all right
    res = slices.compute_slices(correct, {"brightness": brightness, "sign_size": size, "source": source}, bins=4,
                                min_images=5)
    assert res.overall == pytest.approx(28 / 40) and res.n == 40
    dark = res.worst[0]
    assert dark.property == "brightness" and dark.rows.tolist() == list(range(10))
    assert dark.accuracy == pytest.approx(0.2) and dark.gap == pytest.approx(0.2 - 0.7)
    assert dark.label.startswith("brightness 0")
    assert all(s.n >= 5 and s.gap < 0 for s in res.worst)
    assert [s.accuracy for s in res.worst] == sorted(s.accuracy for s in res.worst)
    assert "source TSRD" not in [s.label for s in res.worst]  # 4 images: too few to rank
    tsrd = next(s for s in res.slices if s.label == "source TSRD")
    assert tsrd.n == 4 and tsrd.accuracy == 0.0
    assert res.unknown == {"brightness": 0, "sign_size": 20}
    assert sum(s.n for s in res.slices if s.property == "sign_size") == 20


@pytest.mark.parametrize("kw,message", [
    (dict(bins=1), "bins must lie"), (dict(min_images=0), "min_images"),
])
def test_compute_slices_refuses_bad_options(kw, message):
    with pytest.raises(ValueError, match=message):
        slices.compute_slices(np.ones(4, bool), {"brightness": np.arange(4.0)}, **kw)


def test_compute_slices_refuses_mismatched_and_empty_input():
    with pytest.raises(ValueError, match="3 values for 4 images"):
        slices.compute_slices(np.ones(4, bool), {"brightness": np.arange(3.0)})
    with pytest.raises(ValueError, match="empty"):
        slices.compute_slices(np.ones(0, bool), {})


@pytest.mark.parametrize("row,record,expected", [
    ({"source": "GTSRB train (gtsrb_train_32.npz)"}, None, "GTSRB"),
    ({"source": "TSRD test (tsrd_test_32.npz)"}, None, "TSRD"),
    ({"source": "GTSRB train (gtsrb_train_32.npz), transformed (p=0.5)"}, None, "augmented"),
    ({"source": "my folder"}, None, slices.OTHER_SOURCE),
    ({"origin": "added", "source": "stop.png"}, {"upload": "stop.png", "recipe": {}}, "uploaded"),
    ({"origin": "added", "source": "stop.png"}, {"recipe": {"groups": ["blur"], "variant": 2}}, "augmented"),
])
def test_source_of_names_where_an_image_came_from(row, record, expected):
    assert slices.source_of(row, record) == expected


def test_sign_size_is_known_only_where_the_row_records_it():
    assert slices.sign_size({"orig_w": "40", "orig_h": "90"}) == pytest.approx(60.0)
    assert np.isnan(slices.sign_size({"orig_w": 0, "orig_h": 0})) and np.isnan(slices.sign_size({}))


def _model(name: str = "m") -> None:
    import torch
    torch.manual_seed(0)
    ck = models.make_checkpoint(models.build_model("published", 48), architecture="published",
                                class_ids=list(range(48)), class_names=[f"c{i}" for i in range(48)],
                                dataset="Sample48", dataset_fingerprint="x", parent=None, mode="scratch", epochs=1,
                                history=[], metrics={}, config={})
    registry.register(name, ck)


def test_a_reports_slices_cover_every_image_with_sources_from_the_workspace(make_image):
    _model()
    workspaces.derive("Sample48", "Main")
    upload = make_image(40, 30, seed=1, smooth=True)
    workspace_changes.add_images("Main", [upload, upload[::-1]], split="test", class_id=14,
                                 sources=["stop.png", "stop.png"],
                                 records=[{"upload": "stop.png", "recipe": {}},
                                          {"upload": "stop.png", "recipe": {"groups": ["flip"], "variant": 1},
                                           "parent_index": 0}])
    run = finished(runs.start("evaluate", EvaluateRun(model="m", dataset="Main", split="test")))
    assert run["status"] == "done", run.get("error")
    report = reports.load_report(run["id"])
    res = slices.report_slices(report, bins=3, min_images=1)
    assert res.n == 290
    p = report.predictions
    assert res.overall == pytest.approx(float((p.y_true == p.y_pred).mean()))
    by_source = {s.label: s.n for s in res.slices if s.property == "source"}
    assert by_source["source uploaded"] == 1 and by_source["source augmented"] == 1
    assert sum(by_source.values()) == 290
    for prop in slices.NUMERIC:
        assert sum(s.n for s in res.slices if s.property == prop) + res.unknown[prop] == 290
    assert res.unknown["sign_size"] == 0  # every row records its original size (the uploads their own)
    workspace_changes.delete_images("Main", [p.files[0]])
    with pytest.raises(ValueError, match="has changed since"):
        slices.report_slices(reports.load_report(run["id"]))
