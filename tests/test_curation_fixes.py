"""Giving a group of images a class (new or existing, dealt to train/val/test by smart segregation) and saying
plainly what a re-import of duplicates did (issue 22)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import smooth_images
from core.analysis.embedding import extra_bucket as embedding_extra
from core.curation import added, importing
from core.data import datasets, uploads, workspace_changes, workspaces
from core.data.images import encode_png
from core.learning import models

SAMPLE = "Sample48"


@pytest.fixture
def model():
    torch.manual_seed(0)
    return models.build_model("published", 48)


@pytest.fixture
def extra():
    """A workspace with 10 unlabelled images in its Extra bucket; their ids."""
    workspaces.derive(SAMPLE, "Main")
    return workspace_changes.add_images("Main", list(smooth_images(10, 40, seed=1)), split=workspaces.EXTRA,
                                        class_id=workspaces.EXTRA_CLASS, sources=[f"e{k}.png" for k in range(10)])


def ups(images, prefix: str = "up") -> list[uploads.Upload]:
    return [u for k, im in enumerate(images) for u in uploads.read_bytes(f"{prefix}{k}.png", encode_png(im))]


def placed(ids: list[str]) -> dict[str, dict]:
    return {r["id"]: r for r in workspaces.current_added(datasets.get_dataset("Main")) if r["id"] in ids}


@pytest.mark.parametrize("n, val, test", [(10, 0.2, 0.2), (20, 0.25, 0.15), (3, 0.2, 0.2)])
def test_smart_segregation_deals_val_and_test_by_their_shares(n, val, test):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n, 16)).astype(np.float32)
    descs = rng.normal(size=(n, 256)).astype(np.float32)
    descs /= np.linalg.norm(descs, axis=1, keepdims=True)  # distinct images: no near-duplicates
    splits = importing.smart_segregation(features, descs, sizes=[1] * n, val_ratio=val, test_ratio=test, seed=0)
    counts = {s: splits.count(s) for s in ("train", "val", "test")}
    assert sum(counts.values()) == n and counts["train"] >= 1
    assert counts["val"] >= 1 and counts["test"] >= 1  # even three images get one each
    if n >= 10:
        assert abs(counts["val"] - val * n) <= 1.5 and abs(counts["test"] - test * n) <= 1.5
    again = importing.smart_segregation(features, descs, sizes=[1] * n, val_ratio=val, test_ratio=test, seed=0)
    assert again == splits  # seeded


def test_smart_segregation_keeps_near_duplicates_in_one_split_and_checks_its_shares():
    rng = np.random.default_rng(1)
    descs = rng.normal(size=(6, 256)).astype(np.float32)
    descs[1] = descs[0]  # 0 and 1 are the same picture
    descs /= np.linalg.norm(descs, axis=1, keepdims=True)
    for seed in range(5):
        splits = importing.smart_segregation(rng.normal(size=(6, 8)), descs, sizes=[1] * 6, val_ratio=0.3,
                                             test_ratio=0.3, seed=seed)
        assert splits[0] == splits[1]
    with pytest.raises(ValueError, match="leave some for train"):
        importing.smart_segregation(rng.normal(size=(6, 8)), descs, sizes=[1] * 6, val_ratio=0.5, test_ratio=0.5)


def test_split_group_uses_the_model_and_is_seeded(model):
    images = list(smooth_images(10, 40, seed=2))
    splits = added.split_group(images, model=model, seed=3)
    assert {splits.count(s) for s in ("val", "test")} == {2} and splits.count("train") == 6
    assert added.split_group(images, model=model, seed=3) == splits
    with pytest.raises(ValueError, match="group is empty"):
        added.split_group([], model=model)


def test_an_upload_and_its_variants_go_to_one_split(model):
    workspaces.derive(SAMPLE, "Main")
    settings = importing.ImportSettings(dataset="Main", class_id=workspaces.EXTRA_CLASS, to=workspaces.EXTRA,
                                        groups=("shift_rotate", "colour"), variants=3, seed=1)
    ids = importing.import_images(ups(smooth_images(6, 40, seed=11)), settings)["ids"]
    info = datasets.get_dataset("Main")
    fams = added.families(info, ids)
    assert len(set(fams)) == 6 and all(fams[k] == fams[k - k % 4] for k in range(len(ids)))  # upload, 3 variants
    images, found = [], dict(zip(*reversed(embedding_extra(info))))
    images = [found[i] for i in ids]
    splits = added.split_group(images, model=model, families=fams, seed=0)
    by_family = {}
    for f, sp in zip(fams, splits):
        by_family.setdefault(f, set()).add(sp)
    assert all(len(v) == 1 for v in by_family.values()) and {"train", "val", "test"} <= set(splits)
    with pytest.raises(ValueError, match="one family each"):
        added.split_group(images, model=model, families=fams[:-1])


def test_a_group_from_the_extra_bucket_becomes_a_new_class_over_train_val_and_test(extra):
    splits = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    done = added.label_group("Main", splits, class_name="  Purple  star ", refs=extra)
    ws = datasets.get_dataset("Main")
    assert done.created and ws.classes[done.class_id] == "Purple star" == done.class_name
    assert done.by_split == {"train": 6, "val": 2, "test": 2}
    assert [ws.counts[s][done.class_id] for s in ("train", "val", "test")] == [6, 2, 2]
    assert ws.split_size(workspaces.EXTRA) == 0
    assert [placed(extra)[i]["split"] for i in extra] == splits
    assert done.message() == f"Created class {done.class_id}: Purple star: 10 images (6 to train, 2 to val, 2 to test)."
    assert workspace_changes.undo_list("Main")[-2:] == ["add class 'Purple star'", "give 10 images class 48"]
    workspace_changes.undo("Main")
    workspace_changes.undo("Main")  # two steps back: the workspace as it was, the images in the Extra bucket
    ws = datasets.get_dataset("Main")
    assert ws.split_size(workspaces.EXTRA) == 10 and "Purple star" not in ws.classes.values()


def test_a_group_joins_an_existing_class(extra):
    done = added.label_group("Main", ["train", "val", "test"], class_id=14, refs=extra[:3])
    ws = datasets.get_dataset("Main")
    assert not done.created and done.class_name == "Stop" and 48 not in ws.classes
    assert all(r["class_id"] == 14 for r in placed(extra[:3]).values())
    assert ws.split_size(workspaces.EXTRA) == 7
    assert done.message() == "Added to class 14: Stop: 3 images (1 to train, 1 to val, 1 to test)."


def test_uploaded_images_become_a_class_with_their_upload_names():
    workspaces.derive(SAMPLE, "Main")
    images = list(smooth_images(4, 40, seed=5))
    done = added.label_group("Main", ["train", "train", "val", "test"], class_name="China 100", images=images,
                             sources=[f"u{k}.jpg" for k in range(4)])
    recs = [r for r in workspaces.current_added(datasets.get_dataset("Main")) if r["class_id"] == done.class_id]
    assert sorted(r["source"] for r in recs) == ["u0.jpg", "u1.jpg", "u2.jpg", "u3.jpg"]
    assert sorted(r["split"] for r in recs) == ["test", "train", "train", "val"]


def test_bad_requests_change_nothing(extra):
    before = datasets.get_dataset("Main").fingerprint
    cases = [
        (dict(splits=["train"] * 10, class_name="Stop", refs=extra), "has a class named 'Stop' already"),
        (dict(splits=["train"] * 10, class_id=99, refs=extra), "has no class 99"),
        (dict(splits=["train"] * 10, refs=extra), "either an existing class"),
        (dict(splits=["train"] * 10, class_id=14, class_name="x", refs=extra), "either an existing class"),
        (dict(splits=["train"] * 9, class_name="New", refs=extra), "one split each"),
        (dict(splits=["train"] * 9 + ["extra"], class_name="New", refs=extra), "unknown split 'extra'"),
        (dict(splits=["train"], class_name="New", refs=["a999"]), "no longer in workspace"),
        (dict(splits=["train"], class_name="New"), "either the ids"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            added.label_group("Main", kwargs.pop("splits"), **kwargs)
        ws = datasets.get_dataset("Main")
        assert ws.fingerprint == before and "New" not in ws.classes.values(), message  # the new class taken back


def test_suggested_names_are_free_and_say_what_the_group_looks_like():
    classes = {14: "Stop", 48: "New sign (like Stop)", 49: "New sign"}
    assert added.suggest_class_name(classes, like="Stop") == "New sign (like Stop) 2"
    assert added.suggest_class_name(classes) == "New sign 2"
    assert added.suggest_class_name({1: "Yield"}, like="Yield") == "New sign (like Yield)"


def test_reimporting_duplicates_says_nothing_was_added_in_class_and_upload_names():
    workspaces.derive(SAMPLE, "Main")
    cid = workspace_changes.add_class("Main", "China 100")
    images = smooth_images(12, 40, seed=7)
    settings = importing.ImportSettings(dataset="Main", class_id=cid, to="test")
    first = importing.import_images(ups(images), settings)
    level, text = importing.describe_import(first)
    assert (level, text) == ("success", "Added 12 images: 12 to test.")
    again = importing.import_images(ups(images, prefix="again"), settings)
    assert again["added"] == 0 and len(again["duplicates"]) == 12
    level, text = importing.describe_import(again)
    assert level == "warning"
    assert text == f"Nothing added: all 12 images are already in the workspace (duplicates of {cid}: China 100)."
    for e in again["errors"]:
        assert "added/" not in e["error"] and ".png: already in the workspace" in e["error"]
    assert f"({cid}: China 100 in test, uploaded as up0.png)" in again["errors"][0]["error"]
    mixed = importing.import_images(ups(list(images[:1]) + list(smooth_images(1, 40, seed=99)), "m"), settings)
    level, text = importing.describe_import(mixed)
    assert (level, text) == ("success", "Added 1 image: 1 to test. 1 upload skipped: already in the workspace.")


def test_a_duplicate_of_a_dataset_image_names_its_class():
    workspaces.derive(SAMPLE, "Main")
    base = datasets.load_split(SAMPLE, "val")
    stops = [im for im, c in zip(base.images, base.labels) if c == 14][:2]
    result = importing.import_images(ups(stops), importing.ImportSettings(dataset="Main", class_id=1, to="test"))
    level, text = importing.describe_import(result)
    assert (level, text) == ("warning", "Nothing added: all 2 images are already in the workspace (duplicates of "
                                        "14: Stop).")
