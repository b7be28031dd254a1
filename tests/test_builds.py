"""Dataset recipes on a tiny synthetic copy of the shared source layout, imports, and ``datasets list``."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import random_images
from core.base import config
from core.data import builds, built, datasets
from core.data.builds import (NEW_TSRD_CLASSES, NUM_NEW_CLASSES, TSRD_TO_GTSRB, choose_new_tsrd_classes,
                               order_new_classes, tsrd_not_in_gtsrb)
from core.data.importers import SourceError

PROJECT = Path(__file__).resolve().parent.parent

# TSRD train: class -> unique images. Mapped classes 2 (-> 1), 52 (-> 14 stop), 56 (-> 13 yield);
# unmapped 0, 1, 3, 8, 9, 10, 11: the top five by count are 0, 1, 3, 8, 9 (8, 9, 10 tie: lower ids win).
TSRD_TRAIN_COUNTS = {2: 4, 52: 5, 56: 3, 0: 6, 1: 5, 3: 5, 8: 4, 9: 4, 10: 4, 11: 2}
EXPECTED_NEW = [0, 1, 3, 8, 9]
N_TESTING_EXTRA = 10


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def write_shared_source(root: Path, *, tracks: int = 2, frames: int = 2) -> dict:
    """gtsrb/ and tsrd/ folders as in the shared data layout, tiny. Returns facts the tests check against."""
    g, t = root / "gtsrb", root / "tsrd"
    g.mkdir(parents=True)
    t.mkdir(parents=True)
    spec = [(c, k, f) for c in range(43) for k in range(tracks) for f in range(frames)]
    n = len(spec)
    np.savez(g / "gtsrb_train_32.npz", images=random_images(n, 32, seed=1),
             labels=np.asarray([c for c, _, _ in spec], np.int64),
             orig_size_wh=np.full((n, 2), 40, np.int32), roi_x1y1x2y2=np.tile([4, 4, 36, 36], (n, 1)).astype(np.int32),
             paths=np.asarray([f"Train/{c}/{c:05d}_{k:05d}_{f:05d}.png" for c, k, f in spec]))
    np.savez(g / "gtsrb_test_32.npz", images=random_images(43, 32, seed=2), labels=np.arange(43, dtype=np.int64),
             orig_size_wh=np.full((43, 2), 44, np.int32), roi_x1y1x2y2=np.tile([4, 4, 36, 36], (43, 1)).astype(np.int32),
             paths=np.asarray([f"Test/{i:05d}.png" for i in range(43)]))
    (g / "signnames.csv").write_text("ClassId,SignName\n" + "".join(
        f"{i},{'Stop' if i == 14 else f'GTSRB sign {i}'}\n" for i in range(43)))
    with zipfile.ZipFile(g / "gtsrb_meta.zip", "w") as z:
        for i in range(43):
            z.writestr(f"Meta/{i}.png", _png((i * 5, 100, 200)))

    # TSRD train: unique images per TSRD_TRAIN_COUNTS plus later copies (first_copy False) that must be dropped
    tr_labels = [c for c, k in TSRD_TRAIN_COUNTS.items() for _ in range(k)]
    tr_images = list(random_images(len(tr_labels), 32, seed=3))
    first = [True] * len(tr_labels)
    for i in (0, 7, 20):
        tr_labels.append(tr_labels[i])
        tr_images.append(tr_images[i].copy())
        first.append(False)
    ntr = len(tr_labels)
    np.savez(t / "tsrd_train_32.npz", images=np.stack(tr_images), labels=np.asarray(tr_labels, np.int64),
             orig_size_wh=np.full((ntr, 2), 60, np.int32), filenames=np.asarray([f"tr_{i:03d}.png" for i in range(ntr)]),
             first_copy=np.asarray(first))
    # TSRD test: fresh images for mapped, new and unused classes; a flagged copy of a train image; an unflagged one
    te_labels = [2, 52, 56, 0, 1, 3, 8, 9, 10, 11, 40]
    te_images = list(random_images(len(te_labels), 32, seed=4))
    identical = [False] * len(te_labels)
    te_first = [True] * len(te_labels)
    te_labels.append(tr_labels[5]); te_images.append(tr_images[5].copy()); identical.append(True); te_first.append(True)
    te_labels.append(tr_labels[9]); te_images.append(tr_images[9].copy()); identical.append(False); te_first.append(True)
    te_labels.append(52); te_images.append(te_images[1].copy()); identical.append(False); te_first.append(False)
    nte = len(te_labels)
    np.savez(t / "tsrd_test_32.npz", images=np.stack(te_images), labels=np.asarray(te_labels, np.int64),
             orig_size_wh=np.full((nte, 2), 70, np.int32), filenames=np.asarray([f"te_{i:03d}.png" for i in range(nte)]),
             first_copy=np.asarray(te_first), pixel_identical_in_train=np.asarray(identical))
    (t / "signnames_tsrd.csv").write_text("ClassId,SignName\n" + "".join(f"{i},TSRD sign {i}\n" for i in range(58)))
    return {"gtsrb_train": n, "gtsrb_test": 43, "tsrd_train_images": tr_images}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("shared") / "data"
    facts = write_shared_source(root)
    return root, facts


@pytest.fixture(scope="module")
def assembled(source) -> dict:
    with pytest.MonkeyPatch.context() as m:
        m.setattr(builds, "TESTING_EXTRA", N_TESTING_EXTRA)
        return builds.assemble(source[0], seed=0)


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _h(im: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(im).tobytes()).digest()


# ---------------------------------------------------------------- choose_new_tsrd_classes

def test_choose_new_tsrd_classes_top_k_unmapped_ties_to_lower_id():
    labels = np.asarray([52] * 50 + [2] * 40 + [7] * 30 + [12] * 9 + [11] * 9 + [30] * 9 + [13] * 3 + [40] * 12
                        + [41] * 1)
    # 52, 2 and 7 are mapped to GTSRB classes, however many images they have
    assert {52, 2, 7} <= set(TSRD_TO_GTSRB)
    assert choose_new_tsrd_classes(labels, k=3) == [40, 11, 12]
    assert choose_new_tsrd_classes(labels, k=4) == [40, 11, 12, 30]
    assert choose_new_tsrd_classes(labels, k=10) == [40, 11, 12, 30, 13, 41]
    assert choose_new_tsrd_classes(np.asarray([2, 4, 52], np.int64)) == []


def test_tsrd_not_in_gtsrb_leaves_out_mapped_classes_and_the_same_signs_under_other_names():
    # 55 "Direction prohibited" is GTSRB's "No entry", 53 "Entry prohibited" its "No vehicles": a GTSRB model knows
    # them, so they map to GTSRB ids and the novelty protocols must not count them
    assert TSRD_TO_GTSRB[55] == 17 and TSRD_TO_GTSRB[53] == 15
    labels = np.asarray([55, 53, 2, 3, 29, 55, 0])
    assert tsrd_not_in_gtsrb(labels).tolist() == [False, False, False, True, True, False, True]
    assert tsrd_not_in_gtsrb(np.asarray([], np.int64)).shape == (0,)


def test_the_new_classes_are_pinned_unmapped_tsrd_classes_and_the_sample_names_them():
    assert len(NEW_TSRD_CLASSES) == NUM_NEW_CLASSES and not set(NEW_TSRD_CLASSES) & set(TSRD_TO_GTSRB)
    classes = datasets.get_dataset("Sample48").classes
    assert classes[17] == "No entry" and classes[15] == "No vehicles"
    assert [classes[43 + i] for i in range(5)] == ["Speed limit (40km/h)", "Parking and stopping prohibited",
                                                   "Mandatory lane for cars", "Speed limit (5km/h)",
                                                   "Using the horn prohibited"]
    assert "Direction prohibited" not in classes.values()


def test_the_pinned_new_classes_keep_their_ids_whatever_order_the_counts_give():
    assert order_new_classes([17, 0, 28, 54, 3]) == [3, 54, 28, 0, 17]  # class 46 stays TSRD 0
    assert order_new_classes([9, 8, 10]) == [9, 8, 10]  # another source: the rule's order
    assert order_new_classes([3, 54, 28, 0, 55]) == [3, 54, 28, 0, 55]


def test_choose_new_tsrd_classes_is_order_independent():
    labels = np.asarray([9, 8, 10] * 4 + [0] * 6 + [1] * 5 + [3] * 5)
    rng = np.random.default_rng(0)
    assert choose_new_tsrd_classes(labels) == EXPECTED_NEW
    assert choose_new_tsrd_classes(rng.permutation(labels)) == EXPECTED_NEW


# ---------------------------------------------------------------- assemble

def test_gtsrb_recipe(assembled, source):
    facts = source[1]
    gt, classes, _, recipe = assembled["GTSRB"]
    assert sorted(classes) == list(range(43)) and classes[14] == "Stop"
    assert len(gt["train"].labels) + len(gt["val"].labels) == facts["gtsrb_train"]
    assert len(gt["test"].labels) == facts["gtsrb_test"]
    assert not set(gt["train"].tracks) & set(gt["val"].tracks)  # split by track
    assert set(gt["val"].labels.tolist()) == set(range(43))    # every class (2 tracks each) has a val track
    assert set(gt["train"].labels.tolist()) == set(range(43))
    assert "track" in recipe


def test_gtsrb_48_recipe(assembled):
    assert assembled["_new_classes"] == EXPECTED_NEW
    g48, classes, _, recipe = assembled["GTSRB_48"]
    assert sorted(classes) == list(range(48)) and len(classes) == 48
    assert [classes[43 + i] for i in range(5)] == [f"TSRD sign {c}" for c in EXPECTED_NEW]
    assert "TSRD 0 'TSRD sign 0' -> 43" in recipe
    gt = assembled["GTSRB"][0]
    for split in ("train", "val", "test"):
        labels = g48[split].labels
        assert labels.min() >= 0 and labels.max() <= 47
        tsrd = [i for i, s in enumerate(g48[split].sources) if s.startswith("TSRD")]
        assert len(labels) == len(gt[split].labels) + len(tsrd)
    # TSRD train: 38 unique images in used classes (10 and 11 are not among the five new ones)
    n_tsrd_trainval = sum(sum(s.startswith("TSRD") for s in g48[sp].sources) for sp in ("train", "val"))
    assert n_tsrd_trainval == sum(v for c, v in TSRD_TRAIN_COUNTS.items() if c not in (10, 11))
    tr_labels = np.concatenate([g48[sp].labels[[s.startswith("TSRD") for s in g48[sp].sources]]
                                for sp in ("train", "val")])
    assert set(tr_labels.tolist()) == {1, 14, 13, 43, 44, 45, 46, 47}  # mapped ids and the new ones
    # stop (TSRD 52) lands on GTSRB's stop id
    assert (tr_labels == 14).sum() == TSRD_TRAIN_COUNTS[52]
    assert (tr_labels == 43).sum() == TSRD_TRAIN_COUNTS[0]  # later copies (first_copy False) dropped
    # TSRD val: at least one image of each TSRD class with >= 4 images
    tsrd_val = g48["val"].labels[[s.startswith("TSRD") for s in g48["val"].sources]]
    assert {43, 44, 45, 46, 47, 1, 14} <= set(tsrd_val.tolist())


def test_no_tsrd_test_image_equals_a_tsrd_train_image(assembled, source):
    g48 = assembled["GTSRB_48"][0]
    train_hashes = {_h(im) for sp in ("train", "val") for im, s in zip(g48[sp].images, g48[sp].sources)
                    if s.startswith("TSRD")}
    train_hashes |= {_h(im) for im in source[1]["tsrd_train_images"]}
    tsrd_test = [im for im, s in zip(g48["test"].images, g48["test"].sources) if s.startswith("TSRD")]
    assert tsrd_test and not any(_h(im) in train_hashes for im in tsrd_test)
    # kept: fresh images of classes 2, 52, 56, 0, 1, 3, 8, 9 (10, 11 and 40 are not used; copies dropped)
    assert len(tsrd_test) == 8
    assert len({_h(im) for im in tsrd_test}) == len(tsrd_test)


def test_difficult_and_testing_recipes(assembled):
    g48 = assembled["GTSRB_48"][0]
    diff, classes, _, _ = assembled["Difficult"]
    testing, classes_t, _, _ = assembled["Testing"]
    assert len(classes) == len(classes_t) == 48
    for split in ("train", "val", "test"):
        assert np.array_equal(diff[split].labels, g48[split].labels)
        assert all(im.shape == (32, 32, 3) and im.dtype == np.uint8 for im in diff[split].images)
        changed = sum(not np.array_equal(a, b) for a, b in zip(diff[split].images, g48[split].images))
        assert 0 < changed < len(g48[split].labels)  # each group at p=0.15: most images but not all are touched
    assert testing["train"] is diff["train"] and testing["val"] is diff["val"]
    assert len(testing["test"].labels) == len(diff["test"].labels) + N_TESTING_EXTRA
    assert sum(n.startswith("extra_") for n in testing["test"].names) == N_TESTING_EXTRA
    assert all("transformed" in s for s in testing["test"].sources)


def test_assemble_is_deterministic(assembled, source, monkeypatch):
    monkeypatch.setattr(builds, "TESTING_EXTRA", N_TESTING_EXTRA)
    again = builds.assemble(source[0], seed=0)
    for name in ("GTSRB", "GTSRB_48", "Difficult", "Testing"):
        for split in ("train", "val", "test"):
            a, b = assembled[name][0][split], again[name][0][split]
            assert a.names == b.names and np.array_equal(a.labels, b.labels)
            assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images))


def test_assemble_rejects_a_source_without_43_gtsrb_classes(tmp_path):
    write_shared_source(tmp_path, tracks=1, frames=1)
    p = tmp_path / "gtsrb" / "signnames.csv"
    p.write_text("ClassId,SignName\n0,a\n1,b\n")
    with pytest.raises(SourceError) as ei:
        builds.assemble(tmp_path)
    assert str(p) in str(ei.value)


def test_assemble_with_a_missing_file_names_it(tmp_path):
    write_shared_source(tmp_path, tracks=1, frames=1)
    (tmp_path / "tsrd" / "tsrd_test_32.npz").unlink()
    with pytest.raises(SourceError, match="file not found") as ei:
        builds.assemble(tmp_path)
    assert str(tmp_path / "tsrd" / "tsrd_test_32.npz") in str(ei.value)


# ---------------------------------------------------------------- build_standard, build_sample, import

def test_build_standard_is_byte_identical_across_roots(source, tmp_path, monkeypatch):
    monkeypatch.setattr(builds, "TESTING_EXTRA", N_TESTING_EXTRA)
    runs = []
    for sub in ("a", "b"):
        root = tmp_path / sub / "datasets"
        timings = builds.build_standard(source[0], seed=0, root=root)
        assert timings["new_tsrd_classes"] == EXPECTED_NEW
        runs.append(_hashes(tmp_path / sub))
    assert runs[0] == runs[1]
    files = runs[0]
    for name in ("GTSRB", "GTSRB_48", "Difficult", "Testing"):
        assert f"datasets/{name}/meta.json" in files and f"datasets/{name}/index.csv" in files
    assert "pictograms/names.json" in files and "pictograms/14.png" in files
    assert not any(f.startswith("datasets/.") for f in files)

    root = tmp_path / "a" / "datasets"
    metas = {n: json.loads((root / n / "meta.json").read_text()) for n in ("GTSRB", "GTSRB_48", "Testing")}
    assert len(metas["GTSRB"]["classes"]) == 43 and len(metas["GTSRB_48"]["classes"]) == 48
    g_train = sum(metas["GTSRB"]["counts"]["train"].values()) + sum(metas["GTSRB"]["counts"]["val"].values())
    assert g_train == source[1]["gtsrb_train"]
    n_test = {n: sum(metas[n]["counts"]["test"].values()) for n in ("GTSRB_48", "Testing")}
    assert n_test["Testing"] == n_test["GTSRB_48"] + N_TESTING_EXTRA
    # the built datasets are what the rest of the app reads
    monkeypatch.setenv(config.DATA_ROOT_ENV, str(tmp_path / "a"))
    info = datasets.get_dataset("GTSRB_48")
    assert info.embedded is False and info.num_classes == 48
    assert len(datasets.load_split(info, "val")) == info.split_size("val")
    assert built.pictogram_path(14, "Stop") == tmp_path / "a" / "pictograms" / "14.png"


def test_build_sample_writes_sample48(source, tmp_path, monkeypatch):
    monkeypatch.setattr(builds, "TESTING_EXTRA", N_TESTING_EXTRA)  # assemble builds Testing too
    out = tmp_path / "sample"
    path = builds.build_sample(source[0], seed=0, out=out)
    info = built.read_info(path, embedded=True)
    assert info.name == "Sample48" and info.num_classes == 48
    for split, per_class in builds.SAMPLE_PER_CLASS.items():
        assert all(0 < n <= per_class for n in info.counts[split].values())
    assert (out / "pictograms" / "names.json").is_file() and (out / "pictograms" / "0.png").is_file()


def test_import_folder_layout_splits_train_into_train_and_val(tmp_path):
    src = tmp_path / "mine"
    for c in (14, 50):
        for i in range(10):  # 10 % of 10 -> one val image per class
            p = src / str(c) / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(random_images(1, 24, seed=c * 10 + i)[0]).save(p)
    path = builds.import_dataset("folder", src, name="Mine", seed=0)
    info = datasets.get_dataset("Mine")
    assert info.path == path and info.classes == {14: "Stop", 50: "class 50"}
    assert info.counts["train"] == {14: 9, 50: 9} and info.counts["val"] == {14: 1, 50: 1}
    val_files = set(datasets.list_files(info, "val"))
    assert not val_files & set(datasets.list_files(info, "train"))
    with pytest.raises(ValueError, match="unknown layout 'zip'"):
        builds.import_dataset("zip", src, name="Mine2")
    assert [d.name for d in datasets.list_datasets()].count("Mine2") == 0


def test_import_with_a_broken_image_writes_nothing(tmp_path):
    src = tmp_path / "mine"
    (src / "1").mkdir(parents=True)
    Image.fromarray(random_images(1, 24)[0]).save(src / "1" / "a.png")
    (src / "1" / "b.png").write_bytes(b"nope")
    with pytest.raises(SourceError, match=re.escape(str(src / "1" / "b.png"))):
        builds.import_dataset("folder", src, name="Broken")
    assert not (config.datasets_dir() / "Broken").exists()


# ---------------------------------------------------------------- CLI

def test_cli_datasets_list_json(data_root):
    n = 3
    split = built.SplitToWrite(list(random_images(n, 16)), np.asarray([0, 1, 1]), ["a", "b", "c"], ["s"] * n,
                                  [""] * n, np.full((n, 2), 16, np.int32))
    built.write_dataset("CliSet", {"train": split, "test": split}, classes={0: "x", 1: "y"}, source="s",
                           recipe="r")
    from cli_support import run_cli
    out = run_cli("datasets", "list", "--json", root=data_root)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert isinstance(listed, list)
    for entry in listed:
        assert set(entry) >= {"name", "num_classes", "splits"}
        assert set(entry["splits"]) == {"train", "val", "test"}
    by_name = {e["name"]: e for e in listed}
    info = datasets.get_dataset("CliSet")
    assert by_name["CliSet"] == {"name": "CliSet", "num_classes": 2, "splits": {"train": 3, "val": 0, "test": 3},
                                 "kind": "built", "base": None, "version": info.fingerprint}
    sample = by_name["Sample48"]
    assert sample["num_classes"] == 48 and all(v > 0 for v in sample["splits"].values())
    assert not (PROJECT / "data" / "datasets" / "CliSet").exists()
