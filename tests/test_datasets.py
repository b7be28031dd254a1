"""Datasets on disk: atomic, deterministic writes; listing, indexes, cached split loading; track splits."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import random_images
from core.base import config
from core.data import built, datasets
from core.data.built import SplitToWrite, pictogram_path, safe_file_stem, split_by_track, write_dataset
from core.data.datasets import get_dataset, list_datasets, list_files, load_split, read_index

CLASSES = {0: "zero", 3: "three", 7: "seven"}


def make_split(labels, *, size=16, seed=0, names=None, tracks=None) -> SplitToWrite:
    n = len(labels)
    return SplitToWrite(images=list(random_images(n, size, seed)), labels=np.asarray(labels, np.int64),
                        names=names or [f"img_{seed}_{i}.png" for i in range(n)], sources=["synthetic"] * n,
                        tracks=tracks or [f"t{i // 2}" for i in range(n)],
                        sizes=np.asarray([[size + i, size] for i in range(n)], np.int32))


def make_splits() -> dict[str, SplitToWrite]:
    return {"train": make_split([0, 0, 3, 7, 7, 3], seed=1), "val": make_split([0, 3, 7], seed=2),
            "test": make_split([7, 3, 0, 0], seed=3)}


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_write_then_list_get_index_files_and_load_round_trip(data_root):
    splits = make_splits()
    path = write_dataset("Tiny", splits, classes=CLASSES, source="unit test", recipe="by hand")
    assert path == config.datasets_dir() / "Tiny" and path.parent.parent == data_root.resolve()

    infos = {i.name: i for i in list_datasets()}
    assert "Tiny" in infos and infos["Tiny"].embedded is False
    info = get_dataset("Tiny")
    assert info.classes == CLASSES and info.num_classes == 3
    assert info.source == "unit test" and info.recipe == "by hand" and len(info.fingerprint) == 16
    assert info.counts["train"] == {0: 2, 3: 2, 7: 2} and info.counts["test"] == {0: 2, 3: 1, 7: 1}
    assert info.summary() == {"name": "Tiny", "num_classes": 3, "splits": {"train": 6, "val": 3, "test": 4},
                              "kind": "built", "base": None, "version": info.fingerprint}

    rows = read_index(info)
    assert len(rows) == 13 and set(rows[0]) == set(built.INDEX_COLUMNS)
    assert [r["class_id"] for r in read_index(info, "train")] == [0, 0, 3, 7, 7, 3]
    assert read_index(info, "val")[1]["orig_w"] == "17" and read_index(info, "train")[2]["track"] == "t1"
    assert list_files(info, "train", 7) == ["train/7/img_1_3.png", "train/7/img_1_4.png"]
    assert len(list_files(info, "test")) == 4 and list_files(info, "val", 99) == []
    assert all((path / f).is_file() for f in list_files(info, "train"))

    for split, s in splits.items():
        arr = load_split("Tiny", split)
        assert arr.images.shape == (len(s.labels), 16, 16, 3) and arr.images.dtype == np.uint8
        assert np.array_equal(arr.labels, s.labels)
        assert np.array_equal(arr.images, np.stack(s.images))
        assert arr.files == list_files(info, split)

    some = load_split(info, "train", classes=[3])
    assert list(some.labels) == [3, 3] and np.array_equal(some.images[1], splits["train"].images[5])


def test_load_split_reuses_its_cache(monkeypatch, data_root):
    write_dataset("Tiny", make_splits(), classes=CLASSES, source="s", recipe="r")
    info = get_dataset("Tiny")
    first = load_split(info, "train")
    cache = data_root / "cache" / f"Tiny-{info.fingerprint}" / "train.npz"
    assert cache.is_file()
    mtime = cache.stat().st_mtime_ns

    def no_decoding(*a, **k):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(built, "_decode_split", no_decoding)
    monkeypatch.setattr(built, "load_image", no_decoding)
    second = load_split(info, "train")
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)
    assert first.files == second.files and cache.stat().st_mtime_ns == mtime


def test_load_split_resizes_mixed_sizes_and_rejects_unknown_split():
    s = make_split([0, 3], size=16)
    s.images[1] = random_images(1, (30, 20))[0]
    write_dataset("Mixed", {"train": s}, classes=CLASSES, source="s", recipe="r")
    assert load_split("Mixed", "train").images.shape == (2, 48, 48, 3)
    assert len(load_split("Mixed", "val")) == 0
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_split("Mixed", "dev")
    with pytest.raises(ValueError, match="no dataset named 'Nope'"):
        get_dataset("Nope")


def test_identical_input_gives_byte_identical_files(tmp_path):
    a = write_dataset("Same", make_splits(), classes=CLASSES, source="s", recipe="r", root=tmp_path / "a")
    b = write_dataset("Same", make_splits(), classes=CLASSES, source="s", recipe="r", root=tmp_path / "b")
    ha, hb = tree_hashes(a), tree_hashes(b)
    assert ha == hb and "meta.json" in ha and "index.csv" in ha and len(ha) == 13 + 2
    c = make_splits()
    c["test"].images[0] = c["test"].images[0] ^ 1
    other = write_dataset("Same", c, classes=CLASSES, source="s", recipe="r", root=tmp_path / "c")
    assert json.loads((other / "meta.json").read_text())["fingerprint"] != \
        json.loads((a / "meta.json").read_text())["fingerprint"]


def test_duplicate_names_within_a_class_get_distinct_files():
    s = make_split([0, 0, 0, 3], names=["a.png", "a.png", "a.ppm", "a.png"])
    path = write_dataset("Dups", {"train": s}, classes=CLASSES, source="s", recipe="r")
    files = list_files(get_dataset("Dups"), "train")
    assert files == ["train/0/a.png", "train/0/a_2.png", "train/0/a_3.png", "train/3/a.png"]
    assert all((path / f).is_file() for f in files)


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_failed_write_leaves_nothing_behind():
    splits = make_splits()
    splits["test"].labels[2] = 5  # not among the classes; train and val are already written by then
    with pytest.raises(ValueError, match=r"Broken/test: labels \[5\]"):
        write_dataset("Broken", splits, classes=CLASSES, source="s", recipe="r")
    root = config.datasets_dir()
    assert not (root / "Broken").exists()
    assert _leftovers(root) == []
    assert "Broken" not in [i.name for i in list_datasets()]


def test_failed_overwrite_keeps_the_existing_dataset(monkeypatch):
    good = write_dataset("Keep", make_splits(), classes=CLASSES, source="s", recipe="r")
    before = tree_hashes(good)
    bad = make_splits()
    bad["val"].labels[0] = 42
    with pytest.raises(ValueError, match="42"):
        write_dataset("Keep", bad, classes=CLASSES, source="s2", recipe="r2")
    assert tree_hashes(good) == before and _leftovers(good.parent) == []

    # an error while encoding (e.g. disk full) is handled the same way
    calls = {"n": 0}
    real = built.encode_png

    def flaky(im):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full (simulated)")
        return real(im)

    monkeypatch.setattr(built, "encode_png", flaky)
    with pytest.raises(OSError, match="simulated"):
        write_dataset("Keep", make_splits(), classes=CLASSES, source="s3", recipe="r3")
    assert tree_hashes(good) == before and _leftovers(good.parent) == []
    assert get_dataset("Keep").source == "s"


def test_successful_overwrite_replaces_and_cleans_up():
    write_dataset("Over", make_splits(), classes=CLASSES, source="old", recipe="r")
    path = write_dataset("Over", {"train": make_split([3, 3], seed=9)}, classes=CLASSES, source="new", recipe="r")
    info = get_dataset("Over")
    assert info.source == "new" and info.summary()["splits"] == {"train": 2, "val": 0, "test": 0}
    assert not (path / "val").exists() and _leftovers(path.parent) == []


@pytest.mark.parametrize("name", ["", "../evil", "a b", ".hidden", "-dash", "a/b", "x.y", "semi;colon"])
def test_invalid_dataset_names_are_rejected(name):
    with pytest.raises(ValueError, match="must be letters, digits"):
        write_dataset(name, make_splits(), classes=CLASSES, source="s", recipe="r")
    assert not config.datasets_dir().exists() or list(config.datasets_dir().iterdir()) == []


@pytest.mark.parametrize("name", ["GTSRB_48", "my-set", "A1"])
def test_valid_dataset_names_are_accepted(name):
    write_dataset(name, {"train": make_split([0])}, classes=CLASSES, source="s", recipe="r")
    assert get_dataset(name).name == name


@pytest.mark.parametrize("name,expected", [
    ("../x y?.png", "x_y_"),
    ("Train_3_00003_00001_00002.png", "Train_3_00003_00001_00002"),
    ("straße-ü.ppm", "straße-ü"),
    ("a.b.c.jpg", "a_b_c"),
    ("noext", "noext"),
    ("", "image"),
    ("?.png", "_"),
    ("dir/sub\\file name.png", "sub_file_name"),
])
def test_safe_file_stem(name, expected):
    assert safe_file_stem(name) == expected


@pytest.mark.parametrize("name", ["../x y?.png", "a" * 500 + ".png", "日本語 標識.png", "..", ".png", "a\x00b",
                                  "con:name|*<>.png", "x" * 300])
def test_safe_file_stem_is_always_a_safe_short_name(name):
    stem = safe_file_stem(name)
    assert 0 < len(stem) <= 120
    assert all(c.isalnum() or c in "-_" for c in stem)


def test_odd_names_are_written_and_read_back():
    names = ["../x y?.png", "日本語 標識.png", "a" * 500 + ".png"]
    s = make_split([0, 0, 0], names=names)
    path = write_dataset("Odd", {"train": s}, classes=CLASSES, source="s", recipe="r")
    files = list_files(get_dataset("Odd"), "train")
    assert all((path / f).resolve().parent == (path / "train" / "0").resolve() for f in files)
    assert np.array_equal(load_split("Odd", "train").images, np.stack(s.images))


# ---------------------------------------------------------------- split_by_track

def _track_data(seed=0):
    rng = np.random.default_rng(seed)
    labels, tracks = [], []
    for c, n_tracks in ((0, 10), (1, 2), (2, 1), (3, 25)):
        for t in range(n_tracks):
            for _ in range(rng.integers(1, 5)):
                labels.append(c)
                tracks.append(f"{c}_{t:05d}")
    order = rng.permutation(len(labels))  # interleave
    return np.asarray(labels)[order], [tracks[i] for i in order]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_by_track_keeps_tracks_whole_and_covers_classes(seed):
    labels, tracks = _track_data()
    tr, val = split_by_track(labels, tracks, val_fraction=0.1, seed=seed)
    assert sorted(np.concatenate([tr, val]).tolist()) == list(range(len(labels)))
    tr_tracks = {tracks[i] for i in tr}
    val_tracks = {tracks[i] for i in val}
    assert not tr_tracks & val_tracks
    val_per_class = {c: {tracks[i] for i in val if labels[i] == c} for c in range(4)}
    assert len(val_per_class[0]) == 1      # round(0.1 * 10)
    assert len(val_per_class[1]) == 1      # >= 2 tracks: at least one val track
    assert len(val_per_class[2]) == 0      # a single track stays in train
    assert len(val_per_class[3]) == 2      # round(0.1 * 25)
    assert {labels[i] for i in tr} == {0, 1, 2, 3}


def test_split_by_track_is_deterministic_per_seed():
    labels, tracks = _track_data()
    a = split_by_track(labels, tracks, seed=5)
    b = split_by_track(labels, tracks, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    vals = {tuple(split_by_track(labels, tracks, seed=s)[1]) for s in range(8)}
    assert len(vals) > 1


def test_split_by_track_treats_empty_track_ids_as_single_images():
    labels = np.asarray([0] * 10 + [1])
    tr, val = split_by_track(labels, [""] * 11, val_fraction=0.2, seed=0)
    assert len(val) == 2 and set(labels[val]) == {0} and 10 in tr


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_split_by_track_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_track(np.zeros(4), ["a", "b", "c", "d"], val_fraction=fraction)


# ---------------------------------------------------------------- embedded sample and pictograms

def test_embedded_sample_is_listed():
    infos = {i.name: i for i in list_datasets()}
    s = infos["Sample48"]
    assert s.embedded is True and s.path == config.SAMPLE_DIR / "datasets" / "Sample48"
    assert s.num_classes == 48 and sorted(s.classes) == list(range(48))
    assert all(s.split_size(split) > 0 for split in ("train", "val", "test"))
    assert all(len(s.counts[split]) == 48 for split in ("train", "val", "test"))
    assert len(list_files(s, "test")) == s.split_size("test")


def test_embedded_sample_loads_with_its_cache_under_the_data_root(data_root):
    s = get_dataset("Sample48")
    arr = load_split(s, "val", classes=[14, 45])
    h, w, ch = arr.images.shape[1:]
    assert h == w and ch == 3 and arr.images.dtype == np.uint8 and set(arr.labels.tolist()) == {14, 45}
    assert len(arr) == s.counts["val"][14] + s.counts["val"][45]
    # embedded datasets are read-only: the cache lives under the data root, not in data/sample
    assert (data_root / "cache" / f"Sample48-{s.fingerprint}" / "val.npz").is_file()
    assert not list(config.SAMPLE_DIR.rglob("*.npz"))


def test_a_built_dataset_hides_the_embedded_one_of_the_same_name():
    write_dataset("Sample48", {"train": make_split([0])}, classes=CLASSES, source="mine", recipe="r")
    matches = [i for i in list_datasets() if i.name == "Sample48"]
    assert len(matches) == 1 and matches[0].embedded is False and matches[0].source == "mine"


def test_pictograms():
    sample = get_dataset("Sample48")
    stop = pictogram_path(14, "Stop")
    assert stop is not None and stop.is_file() and stop.name == "14.png"
    assert sample.classes[14] == "Stop"
    assert pictogram_path(45, sample.classes[45]) is None  # a TSRD class: no GTSRB pictogram
    assert pictogram_path(14, "Not the stop sign") is None
    assert pictogram_path(999, "Stop") is None


def test_pictograms_under_the_data_root_take_precedence(data_root):
    pict = data_root / "pictograms"
    pict.mkdir(parents=True)
    (pict / "names.json").write_text(json.dumps({"14": "Stop"}))
    (pict / "14.png").write_bytes(b"png")
    assert pictogram_path(14, "Stop") == pict / "14.png"
    assert pictogram_path(13, "Yield") is not None  # falls back to the embedded set


def test_dataset_folder_gets_ordinary_permissions():
    path = write_dataset("Perm", {"train": make_split([0])}, classes=CLASSES, source="s", recipe="r")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o777 & ~umask
