"""Data issues: a planted mislabelled image, a planted train/test leak and a planted outlier are found first."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core import runs
from core.analysis import data_issues, novelty
from core.analysis.issues_run import IssuesRun, issues_status, latest_issues
from core.base import config, store
from core.base.registries import set_version
from core.data import datasets
from core.learning import models
from core.data.built import SplitToWrite, write_dataset
from tests.run_support import finished

BENCHMARK = config.ARTIFACTS_DIR / "benchmark.pt"


def planted() -> datasets.DatasetInfo:
    """Sample images of 4 classes; one Stop (14) labelled 1 in test, one test image copied from train, one noise."""
    sample = {s: datasets.load_split("Sample48", s) for s in datasets.SPLITS}

    def pick(split, classes, n):
        a = sample[split]
        idx = np.concatenate([np.flatnonzero(a.labels == c)[:n] for c in classes])
        return list(a.images[idx]), list(a.labels[idx])

    tr_im, tr_y = pick("train", (1, 14, 17, 38), 8)
    te_im, te_y = pick("test", (1, 14, 17, 38), 4)
    te_im[4], te_y[4] = te_im[4], 1                          # a Stop sign labelled "30 km/h"
    te_im.append(tr_im[20].copy())                            # a train image again in test (leakage)
    te_y.append(tr_y[20])
    te_im.append(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8))  # noise: an outlier
    te_y.append(38)

    def split(images, labels, tag):
        n = len(images)
        return SplitToWrite(images, np.asarray(labels), [f"{tag}{i:03d}" for i in range(n)], ["s"] * n, [""] * n,
                            np.full((n, 2), 48))

    write_dataset("Planted", {"train": split(tr_im, tr_y, "tr"), "test": split(te_im, te_y, "te")},
                  classes={1: "Speed limit (30km/h)", 14: "Stop", 17: "No entry", 38: "Keep right"},
                  source="test", recipe="planted issues")
    return datasets.get_dataset("Planted")


@pytest.fixture(scope="module")
def shipped():
    ckpt = models.load_checkpoint(BENCHMARK)
    model = models.model_from_checkpoint(ckpt)
    return ckpt, model, novelty.load_or_fit(BENCHMARK, model, ckpt)


def test_planted_issues_are_ranked_first_with_their_reasons(shipped):
    ckpt, model, det = shipped
    info = planted()
    found = data_issues.find_issues(model, ckpt, info, split="test", detector=det)
    first = found.mislabelled[0]
    assert first["file"] == "test/1/te004.png" and (first["class_id"], first["suggested"]) == (1, 14)
    assert "labelled 1: Speed limit (30km/h)" in first["reason"] and "suggests 14: Stop" in first["reason"]
    assert [r["score"] for r in found.mislabelled] == sorted(r["score"] for r in found.mislabelled)
    assert len(found.mislabelled) < 5  # what the method finds, not a fixed number: the other labels hold
    leak = found.leaks[0]
    assert leak["file"].endswith("te016.png") and leak["near"].endswith("tr020.png") and leak["score"] >= 0.99
    assert (leak["pair"], leak["near_split"]) == ("train-test", "train") and "looks like train image" in leak["reason"]
    assert found.outliers[0]["file"] == "test/38/te017.png" and "novelty" in found.outliers[0]["reason"]
    without = data_issues.find_issues(model, ckpt, info, split="test", detector=None)
    assert without.outliers == [] and without.mislabelled == found.mislabelled


def test_leakage_is_per_split_pair_and_shows_the_matching_image_of_the_other_split(shipped):
    ckpt, model, _ = shipped
    info = planted()
    from_train = data_issues.leaks(info, split="train")
    first = from_train[0]
    assert (first["file"], first["near"], first["pair"]) == ("train/17/tr020.png", "test/17/te016.png", "train-test")
    assert all(r["split"] == "train" and r["near_split"] == "test" for r in from_train)
    assert data_issues.leaks(info, split="val") == []  # Planted has no val split: no pair involving it has images


def test_a_model_whose_training_dataset_is_missing_still_gets_outliers():
    path = config.ARTIFACTS_DIR / "incremental48.pt"
    ckpt = models.load_checkpoint(path)
    model = models.model_from_checkpoint(ckpt)
    assert ckpt["dataset"] not in {d.name for d in datasets.list_datasets()}  # GTSRB_48 is not built here
    info = datasets.get_dataset("Sample48")
    det, note = data_issues.outlier_detector(path, model, ckpt, info)
    assert det is not None and "calibrated on Sample48" in note
    known = datasets.load_split(info, "test").images[:40]
    noise = np.random.default_rng(1).integers(0, 256, (4, *known.shape[1:]), dtype=np.uint8)
    s = det.scores(model, np.concatenate([known, noise]), (novelty.DEFAULT_METHOD,))[novelty.DEFAULT_METHOD]
    assert s[-4:].min() > det.thresholds[novelty.DEFAULT_METHOD] > np.median(s[:40])  # noise is out, signs in
    found = data_issues.find_issues(model, ckpt, info, split="test", detector=det)
    assert 0 < len(found.outliers) < len(datasets.load_split(info, "test"))


def test_a_training_split_is_judged_on_out_of_sample_probabilities(shipped):
    """Relabel 6 train images of the planted set: the model's own probabilities would back a label it learnt;
    cross-validated ones find the flips, and never an image whose label the model predicts confidently."""
    ckpt, model, _ = shipped
    info = planted()
    arrays = datasets.load_split(info, "train")
    outputs = novelty.layer_outputs(model, arrays.images)
    labels = arrays.labels.copy()
    flipped = [0, 9, 17, 25]  # one of each class, given the next class's label
    order = [1, 14, 17, 38]
    for i in flipped:
        labels[i] = order[(order.index(labels[i]) + 1) % 4]
    rows = data_issues.mislabelled(datasets.SplitArrays(arrays.images, labels, arrays.files), outputs, ckpt, info,
                                   split="train")
    found = {r["file"]: r for r in rows}
    assert {arrays.files[i] for i in flipped} <= set(found) and len(found) <= len(flipped) + 1  # 32 images, 5 folds
    assert all(found[arrays.files[i]]["suggested"] == arrays.labels[i] for i in flipped)  # the true labels


def test_bad_requests_are_refused(shipped):
    ckpt, model, det = shipped
    info = planted()
    with pytest.raises(ValueError, match="unknown split"):
        data_issues.find_issues(model, ckpt, info, split="dev")
    with pytest.raises(ValueError, match="Planted/val is empty"):
        data_issues.find_issues(model, ckpt, info, split="val")


def test_an_issues_run_is_reused_while_its_method_sets_stay_and_not_once_they_change(monkeypatch):
    planted()
    run = finished(runs.start("issues", IssuesRun(model="benchmark", dataset="Planted", split="test")))
    assert run["status"] == "done", run.get("error")
    assert run["inputs"]["issues_version"] == data_issues.issues_version()
    assert latest_issues("benchmark", "Planted", "test")["id"] == run["id"]
    msp = novelty.get_method("msp")
    monkeypatch.setitem(novelty.REGISTRY.table, "msp", dataclasses.replace(msp, version=msp.version + 1))
    assert data_issues.issues_version() != run["inputs"]["issues_version"]
    assert latest_issues("benchmark", "Planted", "test") is None  # its outliers came from another method set
    monkeypatch.setitem(novelty.REGISTRY.table, "msp", msp)
    monkeypatch.setattr(data_issues, "FINDERS_VERSION", data_issues.FINDERS_VERSION + 1)
    assert latest_issues("benchmark", "Planted", "test") is None


def test_an_issues_run_recorded_before_the_version_is_found_again():
    assert data_issues.UNSTAMPED_VERSION == set_version([  # the first finders' settings
        ("finders", 1), ("near_duplicate", 0.97), ("limit", 48), ("outlier_method", "fused"),
        ("novelty", novelty.UNSTAMPED_VERSION)])
    planted()
    run = finished(runs.start("issues", IssuesRun(model="benchmark", dataset="Planted", split="test")))

    def unstamp(doc: dict) -> dict:
        doc["inputs"].pop("issues_version")
        return doc
    store.modify("runs", unstamp, key="id", value=run["id"])
    assert latest_issues("benchmark", "Planted", "test") is None  # found by the first finders: found anew


def test_issues_status_gives_the_valid_result_the_active_run_and_a_newer_failure():
    version = datasets.get_dataset("Sample48").fingerprint
    config = {"model": "benchmark", "dataset": "Sample48", "split": "test"}

    def record(run_id: str, status: str, created: float, **config_changes) -> None:
        store.insert("runs", {"id": run_id, "kind": "issues", "config": {**config, **config_changes},
                              "inputs": {"dataset": {"version": version},
                                         "issues_version": data_issues.issues_version()},
                              "status": status, "error": f"{run_id} broke", "created": created, "updated": created})

    empty = issues_status("benchmark", "Sample48", "test")
    assert (empty.latest_done, empty.active, empty.failed) == (None, None, None)
    record("failed-old", "failed", 1.0)
    record("done", "done", 2.0)
    record("other-split", "queued", 3.0, split="val")
    now = issues_status("benchmark", "Sample48", "test")
    assert (now.latest_done["id"], now.active, now.failed) == ("done", None, None)  # the failure is old news
    record("failed-new", "failed", 4.0)
    record("queued", "queued", 5.0)
    now = issues_status("benchmark", "Sample48", "test")
    assert (now.latest_done["id"], now.active["id"], now.failed["id"]) == ("done", "queued", "failed-new")
    assert issues_status("benchmark", "Sample48", "val").active["id"] == "other-split"
