"""Novelty scores: the measures, calibration, storage beside the model, prediction results and the CLI."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.analysis import novelty, prediction
from core.base import config
from core.base.registries import set_version
from core.data import datasets
from core.learning import models, registry
from core.data.images import encode_png
from core.learning.inference import predict_proba

PROJECT = Path(__file__).resolve().parent.parent
BENCHMARK = config.ARTIFACTS_DIR / "benchmark.pt"


@pytest.fixture(scope="module")
def shipped():
    ckpt = models.load_checkpoint(BENCHMARK)
    return ckpt, models.model_from_checkpoint(ckpt)


def noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48, 3), dtype=np.uint8)


def test_auroc_and_fpr95_by_hand():
    known = np.arange(100, dtype=float)
    assert novelty.auroc_fpr95(known, known + 1000) == {"auroc": 1.0, "fpr95": 0.0}
    assert novelty.auroc_fpr95(known, known + 1000 * 0 - 1000) == {"auroc": 0.0, "fpr95": 1.0}
    # novel scores spread over the known range: 95 % of known accepted below 94.05 -> 95 of 100 novel accepted
    res = novelty.auroc_fpr95(known, known.copy())
    assert res["auroc"] == pytest.approx(0.5) and res["fpr95"] == 0.95
    with pytest.raises(ValueError, match="need known and novel"):
        novelty.auroc_fpr95(known, np.zeros(0))


@pytest.mark.parametrize("name", ["benchmark", "benchmark_oe"])
def test_the_shipped_benchmarks_ship_their_detectors_for_exactly_these_model_files(name):
    path = config.ARTIFACTS_DIR / f"{name}.pt"
    det = novelty.Detector.load(novelty.detector_path(path))
    assert det.model_version == registry.file_version(path)
    assert det.methods_version == novelty.methods_version()  # fitted by today's method set: used as shipped
    assert det.accept == novelty.THRESHOLD_ACCEPT  # and at today's share of accepted validation images
    assert set(det.discovery_thresholds) == set(novelty.list_methods())
    assert set(det.thresholds) == set(novelty.list_methods())
    assert det.class_means.shape == (43, 300) and det.bank_fc1.shape[1] == 300


def test_outlier_exposure_sharpens_the_shipped_benchmark_on_unseen_sample_classes(shipped):
    # Sample48's classes 43-47 are TSRD classes the 43-class benchmarks never saw.
    sample = datasets.load_split("Sample48", "test")
    known, unseen = sample.images[sample.labels < 43], sample.images[sample.labels >= 43]
    auroc = {}
    for name in ("benchmark", "benchmark_oe"):
        model = models.model_from_checkpoint(models.load_checkpoint(config.ARTIFACTS_DIR / f"{name}.pt"))
        msp = [-predict_proba(model, x).max(1) for x in (known, unseen)]  # the baseline score: higher = novel
        auroc[name] = novelty.auroc_fpr95(*msp)["auroc"]
    assert auroc["benchmark_oe"] > auroc["benchmark"]


def test_known_images_pass_and_noise_is_flagged_by_every_method(shipped):
    ckpt, model = shipped
    det = novelty.load_or_fit(BENCHMARK, model, ckpt)
    sample = datasets.load_split("Sample48", "test")
    gtsrb = sample.images[np.flatnonzero(sample.labels < 43)[:60]]
    known = det.scores(model, gtsrb)
    odd = det.scores(model, noise(16))
    for m in novelty.list_methods():
        assert known[m].shape == (60,) and odd[m].shape == (16,)
        assert det.novel(odd, m).mean() >= 0.9, m
        assert det.novel(known, m).mean() <= 0.3, m
    with pytest.raises(ValueError, match="unknown novelty methods"):
        det.scores(model, gtsrb[:2], ("vibes",))


def test_fit_calibrates_thresholds_on_validation_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = models.build_model("published", 48).eval()
    train, val = datasets.load_split("Sample48", "train"), datasets.load_split("Sample48", "val")
    det = novelty.fit(model, train.images, train.labels, val.images, model_version="v1", seed=0)
    scores = det.scores(model, val.images)
    for m in novelty.list_methods():
        if m != "odin":  # ODIN is calibrated on the first 1,000 val images: all of them here too
            assert (scores[m] <= det.thresholds[m]).mean() >= novelty.THRESHOLD_ACCEPT
    det.save(tmp_path / "d.npz")
    back = novelty.Detector.load(tmp_path / "d.npz")
    assert det.accept == back.accept == novelty.THRESHOLD_ACCEPT
    assert back.discovery_thresholds == pytest.approx(det.discovery_thresholds)
    for m in ("msp", "fused"):  # the discovery point is the more sensitive one: it accepts 95 %, flags more
        assert det.discovery_thresholds[m] <= det.thresholds[m]
        assert (scores[m] <= det.discovery_thresholds[m]).mean() >= novelty.DISCOVERY_ACCEPT
        assert det.novel(scores, m, discovery=True).sum() >= det.novel(scores, m).sum()
    again = back.scores(model, val.images[:10], ("msp", "mahalanobis", "fused"))
    assert back.model_version == "v1" and back.thresholds == pytest.approx(det.thresholds)
    np.testing.assert_allclose(again["msp"], scores["msp"][:10], rtol=1e-5)
    np.testing.assert_allclose(again["fused"], scores["fused"][:10], rtol=1e-2, atol=1e-2)  # float16 bank
    with pytest.raises(ValueError, match="at least"):
        novelty.fit(model, train.images[:3], train.labels[:3], val.images, model_version="v")


def test_load_or_fit_caches_per_model_version_and_says_when_it_cannot(tmp_path):
    path, m, ck = _toy_model_file(tmp_path)
    det = novelty.load_or_fit(path, m, ck)
    cached = config.cache_dir() / "novelty" / f"{registry.file_version(path)}.npz"
    assert cached.is_file() and det.model_version == registry.file_version(path)
    assert novelty.load_or_fit(path, m, ck).thresholds == det.thresholds  # from the cache, not refitted
    # one fitted at another share of accepted validation images (as before issue 25: 95 %) is fitted again
    dataclasses.replace(det, accept=0.95, thresholds={k: v + 1 for k, v in det.thresholds.items()}).save(cached)
    assert novelty.load_or_fit(path, m, ck).thresholds == pytest.approx(det.thresholds)
    assert novelty.Detector.load(cached).accept == novelty.THRESHOLD_ACCEPT
    ck_lost = {**ck, "dataset": "Gone"}
    path2 = models.save_checkpoint(ck_lost, tmp_path / "m2.pt")
    with pytest.raises(ValueError, match="needs the model's training dataset 'Gone'"):
        novelty.load_or_fit(path2, m, ck_lost)


def test_prediction_results_carry_the_novelty_verdict(shipped):
    ckpt, model = shipped
    det = novelty.load_or_fit(BENCHMARK, model, ckpt)
    sample = datasets.load_split("Sample48", "test")
    stop = sample.images[np.flatnonzero(sample.labels == 14)[0]]
    results = prediction.predict_images(ckpt, [("stop.png", encode_png(stop)), ("noise.png", encode_png(noise(1)[0]))],
                                        model=model, detector=det)
    assert results[0].novelty["novel"] is False and results[0].top[0]["class_id"] == 14
    assert results[1].novelty["novel"] is True and results[1].novelty["method"] == novelty.DEFAULT_METHOD
    assert results[1].to_json()["novelty"]["threshold"] == pytest.approx(det.thresholds["fused"], abs=1e-4)


def test_cli_novelty_prints_the_documented_json(tmp_path, data_root):
    sample = datasets.load_split("Sample48", "test")
    np.savez(tmp_path / "known.npz", images=sample.images[sample.labels < 43][:40])
    np.savez(tmp_path / "novel.npz", images=noise(20))
    from cli_support import run_cli
    out = run_cli("novelty", "--model", "benchmark", "--known-npz", tmp_path / "known.npz", "--novel-npz",
                  tmp_path / "novel.npz", "--json", root=data_root)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert set(res["methods"]) == set(novelty.list_methods())
    for m, r in res["methods"].items():
        assert set(r) == {"auroc", "fpr95"} and r["auroc"] > 0.9, (m, r)
    assert res["n_known"] == 40 and res["n_novel"] == 20
    assert res["accept"] == novelty.THRESHOLD_ACCEPT
    for m, f in res["flagged"].items():  # at the shipped thresholds: noise flagged, known signs mostly not
        assert f["novel"] >= 0.9 and f["known"] <= 0.3, (m, f)


def test_every_method_is_one_record_and_unknown_names_list_the_valid_ones():
    for name in novelty.list_methods():
        m = novelty.get_method(name)
        assert m.name == name and m.direction in novelty.DIRECTIONS and m.description and callable(m.score)
    assert novelty.DEFAULT_METHOD in novelty.list_methods()
    with pytest.raises(ValueError, match="unknown novelty method 'vibes'; valid: msp, energy"):
        novelty.get_method("vibes")
    # detectors saved before the stamp were fitted by these six methods, each at version 1
    six = ("msp", "energy", "mahalanobis", "knn", "odin", "fused")
    assert novelty.UNSTAMPED_VERSION == set_version((n, 1) for n in six)


def _toy_model_file(tmp_path):
    torch.manual_seed(0)
    m = models.build_model("published", 48)
    ck = models.make_checkpoint(m, architecture="published", class_ids=list(range(48)),
                                class_names=[str(i) for i in range(48)], dataset="Sample48", dataset_fingerprint="x",
                                parent=None, mode="scratch", epochs=1, history=[], metrics={}, config={})
    return models.save_checkpoint(ck, tmp_path / "m.pt"), m, ck


def test_a_detector_is_fitted_again_when_the_method_set_changes_and_reused_while_it_does_not(tmp_path, monkeypatch):
    path, m, ck = _toy_model_file(tmp_path)
    fits = []
    fit = novelty.fit
    monkeypatch.setattr(novelty, "fit", lambda *a, **k: fits.append(1) or fit(*a, **k))
    first = novelty.load_or_fit(path, m, ck)
    assert novelty.load_or_fit(path, m, ck).methods_version == first.methods_version and len(fits) == 1
    msp = novelty.get_method("msp")
    monkeypatch.setitem(novelty.REGISTRY.table, "msp", dataclasses.replace(msp, version=msp.version + 1))
    bumped = novelty.load_or_fit(path, m, ck)
    assert len(fits) == 2 and bumped.methods_version == novelty.methods_version() != first.methods_version
    assert novelty.load_or_fit(path, m, ck) is not None and len(fits) == 2  # the refitted one is cached
    toy = novelty.Method("toy", lambda inputs: inputs.outputs["logits"].std(1), "lower", "spread of the logits")
    monkeypatch.setitem(novelty.REGISTRY.table, "toy", toy)
    with_toy = novelty.load_or_fit(path, m, ck)
    assert len(fits) == 3 and "toy" in with_toy.thresholds and set(with_toy.thresholds) == set(novelty.list_methods())
    scores = with_toy.scores(m, noise(4), ("toy", "msp"))
    assert scores["toy"].shape == (4,) and scores["toy"].dtype == np.float32


def test_a_detector_saved_without_a_method_set_version_counts_as_the_unstamped_set(tmp_path):
    det = novelty.Detector.load(novelty.detector_path(BENCHMARK))
    meta_less = dataclasses.replace(det, methods_version="drop")
    meta_less.save(tmp_path / "d.npz")
    with np.load(tmp_path / "d.npz") as z:
        arrays = dict(z)
    meta = json.loads(arrays["meta"].tobytes().decode())
    del meta["methods_version"], meta["accept"]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    old = novelty.Detector.load(tmp_path / "old.npz")
    assert old.methods_version == novelty.UNSTAMPED_VERSION and old.accept == novelty.UNSTAMPED_ACCEPT


def test_prediction_refuses_an_unknown_novelty_method(shipped):
    ckpt, model = shipped
    with pytest.raises(ValueError, match="unknown novelty method 'vibes'"):
        prediction.predict_images(ckpt, [], model=model, method="vibes")


def test_the_flagged_known_bench_counts_shares_at_the_shipped_threshold_clean_and_corrupted(shipped):
    sys.path.insert(0, str(PROJECT / "bench"))
    import novelty_flagged
    ckpt, model = shipped
    sample = datasets.load_split("Sample48", "test")
    known = sample.images[np.flatnonzero(sample.labels < 43)[:30]]
    r = novelty_flagged.flagged(BENCHMARK, known, names=("jpeg",))
    det = novelty.load_or_fit(BENCHMARK, model, ckpt)
    scores = det.scores(model, known, ["fused"])
    assert r["n"] == 30 and r["thresholds"]["fused"] == det.thresholds["fused"]
    assert r["clean"]["fused"] == round(float(det.novel(scores, "fused").mean()), 4)
    assert set(r["jpeg"]) == {1, 2, 3, 4, 5} and all(0 <= v["msp"] <= 1 for v in r["jpeg"].values())
    assert r["worst"]["msp"] == max([r["clean"]["msp"]] + [v["msp"] for v in r["jpeg"].values()])
    assert "read" not in r
    # with labels: accuracy, and the flags among the images still read right
    labels = sample.labels[np.flatnonzero(sample.labels < 43)[:30]]
    r = novelty_flagged.flagged(BENCHMARK, known, labels, names=("jpeg",), methods=("fused",))
    right = np.asarray(ckpt["class_ids"])[novelty.layer_outputs(model, known)["logits"].argmax(1)] == labels
    flags = det.novel(scores, "fused")
    assert r["read"]["clean"]["accuracy"] == round(float(right.mean()), 4)
    assert r["read"]["clean"]["fused"] == round(float(flags[right].mean()), 4)
    assert set(r["read"]["jpeg"]) == {1, 2, 3, 4, 5} and r["read"]["jpeg"][5]["accuracy"] <= 1
