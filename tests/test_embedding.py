"""Embedding maps (openTSNE, cached, new images placed without moving the map) and new-class detection."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import star_sign
from core.analysis import embedding, novelty
from core.base import config
from core.data import datasets, workspace_changes, workspaces
from core.learning import models
from core import runs
from core.analysis.embed_run import EmbedRun
from tests.run_support import finished

BENCHMARK = config.ARTIFACTS_DIR / "benchmark.pt"


@pytest.fixture(scope="module")
def shipped():
    ckpt = models.load_checkpoint(BENCHMARK)
    model = models.model_from_checkpoint(ckpt)
    return ckpt, model, novelty.load_or_fit(BENCHMARK, model, ckpt)


def test_stratified_sample_keeps_every_class_in_proportion():
    labels = np.r_[np.zeros(900), np.ones(90), np.full(10, 2)].astype(int)
    idx = embedding.stratified_sample(labels, 100, seed=0)
    assert len(idx) == 100 and np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx], minlength=3)
    assert counts[0] == 90 and counts[1] == 9 and counts[2] == 1
    assert np.array_equal(embedding.stratified_sample(labels[:50], 100), np.arange(50))
    assert np.array_equal(idx, embedding.stratified_sample(labels, 100, seed=0))


def test_a_map_round_trips_and_new_images_are_placed_without_moving_it(tmp_path):
    torch.manual_seed(0)
    model = models.build_model("published", 48)
    split = datasets.load_split("Sample48", "val")
    key = {"model_version": "m", "dataset": "Sample48", "dataset_version": "v", "split": "val", "size": 144, "seed": 0}
    m = embedding.compute_map(model, list(range(48)), split.images, split.labels, split.files, key=key)
    assert m.coords.shape == (len(split), 2) and np.isfinite(m.coords).all()
    assert m.features.shape == (len(split), 300) and set(m.predicted) <= set(range(48))
    m.save(tmp_path / "map.npz")
    back = embedding.Map.load(tmp_path / "map.npz")
    assert back.key == key and back.files == m.files and np.array_equal(back.coords, m.coords)
    before = back.coords.copy()
    placed = embedding.place(back, back.features[:5])
    assert placed.shape == (5, 2) and np.array_equal(back.coords, before)
    # a new point placed where its twin lies in the map: near it, not across the map
    spread = np.ptp(before, axis=0).max()
    assert np.linalg.norm(placed - before[:5], axis=1).max() < 0.25 * spread
    with pytest.raises(ValueError, match="at least 10 images"):
        embedding.compute_map(model, list(range(48)), split.images[:5], split.labels[:5], split.files[:5], key=key)


def test_grouping_separates_clear_groups_and_a_single_image_is_its_own():
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(0, 0.05, (4, 30))) + np.eye(30)[0] * 3
    b = np.abs(rng.normal(0, 0.05, (3, 30))) + np.eye(30)[7] * 3
    groups = embedding.group_images(np.vstack([a, b]))
    assert sorted(map(sorted, groups)) == [[0, 1, 2, 3], [4, 5, 6]]
    assert embedding.group_images(a[:1]) == [[0]]


def test_stars_the_benchmark_never_saw_form_a_flagged_group_and_stop_signs_do_not(shipped):
    ckpt, model, det = shipped
    split = datasets.load_split("Sample48", "test")
    stops = list(split.images[split.labels == 14][:3])
    stars = [star_sign(k) for k in range(3)]
    groups = embedding.detect_new_classes(model, det, ckpt["class_ids"], stops + stars)
    star_group = next(g for g in groups if set(g.members) & {3, 4, 5})
    assert set(star_group.members) == {3, 4, 5} and star_group.likely_new
    stop_groups = [g for g in groups if set(g.members) & {0, 1, 2}]
    assert all(not g.likely_new and g.predicted == 14 for g in stop_groups)
    assert groups[0].novelty >= groups[-1].novelty
    with pytest.raises(ValueError, match="no images to group"):
        embedding.detect_new_classes(model, det, ckpt["class_ids"], [])


def test_new_images_are_placed_and_grouped_in_one_call(shipped):
    ckpt, model, det = shipped
    split = datasets.load_split("Sample48", "test")
    key = {"model_version": "m", "dataset": "Sample48", "dataset_version": "v", "split": "test", "size": 60, "seed": 0}
    ref = embedding.compute_map(model, ckpt["class_ids"], split.images[:60], split.labels[:60], split.files[:60], key=key)
    placer = embedding.Placer(ref)
    images = list(split.images[split.labels == 14][:3]) + [star_sign(k) for k in range(3)]
    placed = embedding.place_new_images(placer, model, images, class_ids=ckpt["class_ids"], detector=det)
    assert placed.coords.shape == (6, 2) and np.isfinite(placed.coords).all()
    alone = embedding.detect_new_classes(model, det, ckpt["class_ids"], images)
    assert [(g.members, g.likely_new) for g in placed.groups] == [(g.members, g.likely_new) for g in alone]
    unchecked = embedding.place_new_images(placer, model, images, class_ids=ckpt["class_ids"], detector=None)
    assert unchecked.groups == [] and np.allclose(unchecked.coords, placed.coords, atol=1e-3)
    empty = embedding.place_new_images(placer, model, [], class_ids=ckpt["class_ids"], detector=det)
    assert empty.coords.shape == (0, 2) and empty.groups == []
    with pytest.raises(ValueError, match="fused"):
        embedding.place_new_images(placer, model, images, class_ids=ckpt["class_ids"], detector=det, method="nope")


def test_a_map_is_stale_once_its_dataset_changes():
    m = embedding.Map({"dataset_version": "v1"}, *(np.zeros((0, 2)),) * 2, [], *(np.zeros(0),) * 3)
    assert not m.is_stale("v1") and m.is_stale("v2")


def test_the_extra_bucket_gives_its_images_with_their_ids():
    workspaces.derive("Sample48", "Main")
    images = [star_sign(k) for k in range(2)]
    ids = workspace_changes.add_images("Main", images, split=workspaces.EXTRA, class_id=workspaces.EXTRA_CLASS,
                                       sources=["a.png", "b.png"])
    found, found_ids = embedding.extra_bucket(datasets.get_dataset("Main"))
    assert found_ids == ids and all(np.array_equal(a, b) for a, b in zip(found, images))
    assert embedding.extra_bucket(datasets.get_dataset("Sample48")) == ([], [])


def test_an_embed_run_computes_once_and_caches_by_model_and_dataset_version():
    cfg = EmbedRun(model="benchmark", dataset="Sample48", split="val", size=100)
    run = finished(runs.start("embed", cfg))
    assert run["status"] == "done", run.get("error")
    path = Path(run["result"]["file"])
    assert path == embedding.map_path(cfg.key()) and path.is_file()
    assert run["result"]["dataset_version"] == datasets.get_dataset("Sample48").fingerprint
    assert len(embedding.Map.load(path).files) == 100
    stamp = path.stat().st_mtime_ns
    assert finished(runs.start("embed", cfg))["status"] == "done"
    assert path.stat().st_mtime_ns == stamp  # cached: not recomputed
    with pytest.raises(ValueError, match="map size"):
        runs.start("embed", EmbedRun(model="benchmark", dataset="Sample48", size=3))


def test_a_changed_layout_lays_the_map_out_again_and_an_unchanged_one_reuses_it(monkeypatch):
    cfg = EmbedRun(model="benchmark", dataset="Sample48", split="val", size=60)
    first = Path(finished(runs.start("embed", cfg))["result"]["file"])
    stamp = first.stat().st_mtime_ns
    assert Path(finished(runs.start("embed", cfg))["result"]["file"]) == first
    assert first.stat().st_mtime_ns == stamp  # the same layout: reused
    monkeypatch.setitem(embedding.LAYOUT, "version", embedding.LAYOUT["version"] + 1)
    run = finished(runs.start("embed", cfg))
    second = Path(run["result"]["file"])
    assert run["status"] == "done" and second != first and second.is_file()
    assert run["result"]["layout"] == embedding.layout_version() == embedding.Map.load(second).key["layout"]
