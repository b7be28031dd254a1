"""Importers for the four source layouts, on tiny fixtures built in tmp_path."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import random_images
from core.data.importers import (SourceError, import_folder, import_gtsrb_npz, import_gtsrb_official, import_kaggle,
                            import_tsrd_npz, read_signnames, track_from_kaggle_path)


def _save(path: Path, arr: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


# ---------------------------------------------------------------- npz (shared layout)

def write_gtsrb_npz(folder: Path, train_spec: list[tuple[int, int, int]], n_test: int, *, seed: int = 0,
                    size: int = 32) -> tuple[dict, dict]:
    """train_spec: (class, track, frame) per image. Returns the dicts written to the two npz files."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(train_spec)
    train = {
        "images": random_images(n, size, seed),
        "labels": np.asarray([c for c, _, _ in train_spec], np.int64),
        "orig_size_wh": np.asarray([[30 + i, 40 + i] for i in range(n)], np.int32),
        "roi_x1y1x2y2": np.tile(np.asarray([5, 5, 25, 25], np.int32), (n, 1)),
        "paths": np.asarray([f"Train/{c}/{c:05d}_{t:05d}_{f:05d}.png" for c, t, f in train_spec]),
    }
    test = {
        "images": random_images(n_test, size, seed + 1),
        "labels": np.arange(n_test, dtype=np.int64) % max(1, len({c for c, _, _ in train_spec})),
        "orig_size_wh": np.full((n_test, 2), 50, np.int32),
        "roi_x1y1x2y2": np.tile(np.asarray([5, 5, 25, 25], np.int32), (n_test, 1)),
        "paths": np.asarray([f"Test/{i:05d}.png" for i in range(n_test)]),
    }
    np.savez(folder / "gtsrb_train_32.npz", **train)
    np.savez(folder / "gtsrb_test_32.npz", **test)
    return train, test


def write_tsrd_npz(folder: Path, train_labels, test_labels, *, train_first_copy=None, test_first_copy=None,
                   test_identical=None, seed: int = 10, size: int = 32) -> tuple[dict, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    ntr, nte = len(train_labels), len(test_labels)
    train = {
        "images": random_images(ntr, size, seed),
        "labels": np.asarray(train_labels, np.int64),
        "orig_size_wh": np.asarray([[60 + i, 70 + i] for i in range(ntr)], np.int32),
        "filenames": np.asarray([f"{c:03d}_{i:04d}.png" for i, c in enumerate(train_labels)]),
        "first_copy": np.ones(ntr, bool) if train_first_copy is None else np.asarray(train_first_copy, bool),
    }
    test = {
        "images": random_images(nte, size, seed + 1),
        "labels": np.asarray(test_labels, np.int64),
        "orig_size_wh": np.asarray([[80 + i, 90 + i] for i in range(nte)], np.int32),
        "filenames": np.asarray([f"{c:03d}_1_{i:04d}.png" for i, c in enumerate(test_labels)]),
        "first_copy": np.ones(nte, bool) if test_first_copy is None else np.asarray(test_first_copy, bool),
        "pixel_identical_in_train": (np.zeros(nte, bool) if test_identical is None
                                     else np.asarray(test_identical, bool)),
    }
    np.savez(folder / "tsrd_train_32.npz", **train)
    np.savez(folder / "tsrd_test_32.npz", **test)
    return train, test


def test_gtsrb_npz_import_names_tracks_and_sizes(tmp_path):
    spec = [(3, 1, 2), (3, 1, 3), (3, 7, 0), (12, 1, 0), (12, 4, 29)]
    train, test = write_gtsrb_npz(tmp_path, spec, n_test=3)
    src = import_gtsrb_npz(tmp_path / "gtsrb_train_32.npz", tmp_path / "gtsrb_test_32.npz")
    tr, te = src.splits["train"], src.splits["test"]
    assert len(tr) == 5 and len(te) == 3
    assert tr.names[0] == "Train_3_00003_00001_00002.png"
    assert tr.tracks == ["3_00001", "3_00001", "3_00007", "12_00001", "12_00004"]
    assert te.tracks == ["", "", ""] and te.names[0] == "Test_00000.png"
    assert tr.labels.dtype == np.int64 and list(tr.labels) == [3, 3, 3, 12, 12]
    assert tr.sizes.dtype == np.int32 and tr.sizes.tolist()[1] == [31, 41]
    assert all(np.array_equal(a, b) for a, b in zip(tr.images, train["images"]))
    assert all(np.array_equal(a, b) for a, b in zip(te.images, test["images"]))
    assert "gtsrb_train_32.npz" in tr.source and "test" in te.source
    sub = tr.subset([4, 0])
    assert sub.names == [tr.names[4], tr.names[0]] and list(sub.labels) == [12, 3]
    assert sub.tracks == ["12_00004", "3_00001"] and np.array_equal(sub.images[0], tr.images[4])


@pytest.mark.parametrize("path,track", [("Train/20/00020_00007_00029.png", "20_00007"),
                                        ("Train/0/00000_00000_00000.png", "0_00000"),
                                        ("00042_00010_00001.ppm", "42_00010")])
def test_track_from_kaggle_path(path, track):
    assert track_from_kaggle_path(path) == track


def test_track_from_a_bad_train_name_is_a_source_error():
    with pytest.raises(SourceError, match="Train/1/odd.png"):
        track_from_kaggle_path("Train/1/odd.png")


def test_tsrd_npz_import_drops_duplicates(tmp_path):
    train, test = write_tsrd_npz(
        tmp_path, train_labels=[0, 0, 1, 2, 2], test_labels=[0, 1, 1, 2],
        train_first_copy=[1, 0, 1, 1, 0], test_first_copy=[1, 1, 0, 1], test_identical=[0, 1, 0, 0])
    src = import_tsrd_npz(tmp_path / "tsrd_train_32.npz", tmp_path / "tsrd_test_32.npz")
    tr, te = src.splits["train"], src.splits["test"]
    assert tr.names == [str(train["filenames"][i]) for i in (0, 2, 3)]
    assert list(tr.labels) == [0, 1, 2]
    assert np.array_equal(tr.images[1], train["images"][2])
    assert tr.sizes.tolist() == train["orig_size_wh"][[0, 2, 3]].tolist()
    # test row 1 is pixel-identical to train, row 2 is a later copy: both dropped
    assert te.names == [str(test["filenames"][i]) for i in (0, 3)]
    assert list(te.labels) == [0, 2] and np.array_equal(te.images[1], test["images"][3])
    assert tr.tracks == ["", "", ""] and te.tracks == ["", ""]


def test_npz_with_wrong_keys_names_the_file(tmp_path):
    write_gtsrb_npz(tmp_path, [(0, 0, 0)], n_test=1)
    bad = tmp_path / "gtsrb_train_32.npz"
    np.savez(bad, pictures=random_images(1), labels=np.zeros(1, np.int64))
    with pytest.raises(SourceError) as ei:
        import_gtsrb_npz(bad, tmp_path / "gtsrb_test_32.npz")
    assert str(bad) in str(ei.value) and "images" in str(ei.value) and "paths" in str(ei.value)


def test_tsrd_test_npz_without_the_identity_flag_names_the_file(tmp_path):
    write_tsrd_npz(tmp_path, [0], [0])
    bad = tmp_path / "tsrd_test_32.npz"
    np.savez(bad, images=random_images(1), labels=np.zeros(1, np.int64), filenames=np.asarray(["a.png"]),
             first_copy=np.ones(1, bool))
    with pytest.raises(SourceError, match="pixel_identical_in_train") as ei:
        import_tsrd_npz(tmp_path / "tsrd_train_32.npz", bad)
    assert str(bad) in str(ei.value)


@pytest.mark.parametrize("problem", ["missing", "not_npz", "bad_shape", "label_count"])
def test_bad_npz_files_name_the_file(problem, tmp_path):
    write_gtsrb_npz(tmp_path, [(0, 0, 0), (0, 0, 1)], n_test=1)
    bad = tmp_path / "gtsrb_train_32.npz"
    if problem == "missing":
        bad.unlink()
    elif problem == "not_npz":
        bad.write_bytes(b"definitely not a zip archive")
    elif problem == "bad_shape":
        np.savez(bad, images=np.zeros((2, 32, 32), np.uint8), labels=np.zeros(2, np.int64),
                 paths=np.asarray(["Train/0/00000_00000_00000.png"] * 2))
    else:
        np.savez(bad, images=random_images(2), labels=np.zeros(3, np.int64),
                 paths=np.asarray(["Train/0/00000_00000_00000.png"] * 2))
    with pytest.raises(SourceError) as ei:
        import_gtsrb_npz(bad, tmp_path / "gtsrb_test_32.npz")
    assert str(bad) in str(ei.value)


def test_read_signnames(tmp_path):
    p = tmp_path / "signnames.csv"
    p.write_text("ClassId,SignName\n0,Speed limit (20km/h)\n14,Stop\n", encoding="utf-8")
    assert read_signnames(p) == {0: "Speed limit (20km/h)", 14: "Stop"}
    p.write_text("Id,Name\n0,x\n", encoding="utf-8")
    with pytest.raises(SourceError, match="ClassId") as ei:
        read_signnames(p)
    assert str(p) in str(ei.value)


# ---------------------------------------------------------------- official GTSRB layout

def write_official(root: Path, classes=(0, 1), tracks=2, frames=2, n_test=3, seed=0) -> dict:
    """Final_Training/Images/000NN/TTTTT_FFFFF.ppm + GT-000NN.csv, Final_Test/Images/NNNNN.ppm + GT-final_test.csv."""
    rng = np.random.default_rng(seed)
    written = {}
    for c in classes:
        d = root / "Final_Training" / "Images" / f"{c:05d}"
        lines = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for t in range(tracks):
            for f in range(frames):
                h, w = rng.integers(20, 40, 2)
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                name = f"{t:05d}_{f:05d}.ppm"
                _save(d / name, arr)
                written[f"{c:05d}_{name}"] = arr
                lines.append(f"{name};{w};{h};1;1;{w - 2};{h - 2};{c}")
        (d / f"GT-{c:05d}.csv").write_text("\n".join(lines) + "\n")
    td = root / "Final_Test" / "Images"
    lines = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i in range(n_test):
        arr = rng.integers(0, 256, (25, 30, 3), dtype=np.uint8)
        _save(td / f"{i:05d}.ppm", arr)
        written[f"test/{i:05d}.ppm"] = arr
        lines.append(f"{i:05d}.ppm;30;25;1;1;28;23;{classes[i % len(classes)]}")
    if n_test:
        (td / "GT-final_test.csv").write_text("\n".join(lines) + "\n")
    return written


def test_official_layout(tmp_path):
    written = write_official(tmp_path, classes=(0, 7), tracks=2, frames=2, n_test=3)
    src = import_gtsrb_official(tmp_path)
    tr, te = src.splits["train"], src.splits["test"]
    assert len(tr) == 8 and len(te) == 3
    assert list(tr.labels) == [0] * 4 + [7] * 4
    assert tr.tracks == ["0_00000", "0_00000", "0_00001", "0_00001", "7_00000", "7_00000", "7_00001", "7_00001"]
    assert tr.names[5] == "00007_00000_00001.ppm" and len(set(tr.names)) == 8
    for name, im, (w, h) in zip(tr.names, tr.images, tr.sizes):
        assert np.array_equal(im, written[name]) and (im.shape[1], im.shape[0]) == (w, h)
    assert list(te.labels) == [0, 7, 0]
    assert np.array_equal(te.images[2], written["test/00002.ppm"])
    assert te.tracks == ["", "", ""]


def test_official_layout_without_test_folder(tmp_path):
    write_official(tmp_path, classes=(3,), n_test=0)
    src = import_gtsrb_official(tmp_path)
    assert set(src.splits) == {"train"} and list(src.splits["train"].labels) == [3] * 4


def test_official_missing_training_folder_names_it(tmp_path):
    with pytest.raises(SourceError) as ei:
        import_gtsrb_official(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "Final_Training" / "Images") in str(ei.value)


def test_official_csv_without_class_column_names_the_csv(tmp_path):
    write_official(tmp_path, classes=(0,), n_test=0)
    gt = tmp_path / "Final_Training" / "Images" / "00000" / "GT-00000.csv"
    gt.write_text("Filename;Width;Height\n00000_00000.ppm;30;30\n")
    with pytest.raises(SourceError, match="ClassId") as ei:
        import_gtsrb_official(tmp_path)
    assert str(gt) in str(ei.value)


def test_official_unreadable_image_names_the_file(tmp_path):
    write_official(tmp_path, classes=(0,), n_test=2)
    bad = tmp_path / "Final_Test" / "Images" / "00001.ppm"
    bad.write_bytes(b"P6\n30 25\n255\n" + b"\x00" * 10)  # truncated pixel data
    with pytest.raises(SourceError) as ei:
        import_gtsrb_official(tmp_path)
    assert str(bad) in str(ei.value)


def test_official_csv_listing_a_missing_image_names_it(tmp_path):
    write_official(tmp_path, classes=(0,), n_test=0)
    missing = tmp_path / "Final_Training" / "Images" / "00000" / "00001_00001.ppm"
    missing.unlink()
    with pytest.raises(SourceError, match="no such file") as ei:
        import_gtsrb_official(tmp_path)
    assert str(missing) in str(ei.value)


# ---------------------------------------------------------------- Kaggle layout

def write_kaggle(root: Path, classes=(0, 2), tracks=2, frames=2, n_test=3, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    header = "Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path"
    written, train_rows, test_rows = {}, [header], [header]
    for c in classes:
        for t in range(tracks):
            for f in range(frames):
                rel = f"Train/{c}/{c:05d}_{t:05d}_{f:05d}.png"
                arr = rng.integers(0, 256, (30, 31, 3), dtype=np.uint8)
                _save(root / rel, arr)
                written[rel] = arr
                train_rows.append(f"31,30,1,1,29,28,{c},{rel}")
    for i in range(n_test):
        rel = f"Test/{i:05d}.png"
        arr = rng.integers(0, 256, (33, 28, 3), dtype=np.uint8)
        _save(root / rel, arr)
        written[rel] = arr
        test_rows.append(f"28,33,1,1,26,31,{classes[i % len(classes)]},{rel}")
    (root / "Train.csv").write_text("\n".join(train_rows) + "\n")
    if n_test:
        (root / "Test.csv").write_text("\n".join(test_rows) + "\n")
    return written


def test_kaggle_layout(tmp_path):
    written = write_kaggle(tmp_path, classes=(0, 2), n_test=3)
    src = import_kaggle(tmp_path)
    tr, te = src.splits["train"], src.splits["test"]
    assert len(tr) == 8 and len(te) == 3
    assert tr.tracks[:4] == ["0_00000", "0_00000", "0_00001", "0_00001"] and tr.tracks[4] == "2_00000"
    assert tr.names[0] == "Train_0_00000_00000_00000.png" and te.names[1] == "Test_00001.png"
    assert np.array_equal(tr.images[6], written["Train/2/00002_00001_00000.png"])
    assert list(te.labels) == [0, 2, 0] and te.sizes.tolist()[0] == [28, 33]
    assert np.array_equal(te.images[0], written["Test/00000.png"])


def test_kaggle_without_test_csv_has_only_train(tmp_path):
    write_kaggle(tmp_path, classes=(1,), n_test=0)
    assert set(import_kaggle(tmp_path).splits) == {"train"}


def test_kaggle_csv_without_path_column_names_the_csv(tmp_path):
    write_kaggle(tmp_path, n_test=2)
    (tmp_path / "Test.csv").write_text("Width,Height,ClassId\n28,33,0\n")
    with pytest.raises(SourceError, match="Path") as ei:
        import_kaggle(tmp_path)
    assert str(tmp_path / "Test.csv") in str(ei.value)


def test_kaggle_missing_train_csv_names_it(tmp_path):
    with pytest.raises(SourceError, match="file not found") as ei:
        import_kaggle(tmp_path)
    assert str(tmp_path / "Train.csv") in str(ei.value)


def test_kaggle_unreadable_image_names_the_file(tmp_path):
    write_kaggle(tmp_path, n_test=2)
    bad = tmp_path / "Train" / "2" / "00002_00000_00001.png"
    bad.write_text("not a png")
    with pytest.raises(SourceError) as ei:
        import_kaggle(tmp_path)
    assert str(bad) in str(ei.value)


# ---------------------------------------------------------------- plain class folders

def test_folder_layout_without_splits(tmp_path):
    arrs = {}
    for c, n in ((0, 2), (5, 3)):
        for i in range(n):
            arr = random_images(1, (20 + i, 24), seed=10 * c + i)[0]
            _save(tmp_path / str(c) / f"img{i}.png", arr)
            arrs[(c, i)] = arr
    _save(tmp_path / "5" / "photo.jpg", random_images(1, 16)[0])
    (tmp_path / "5" / "notes.txt").write_text("ignored")
    src = import_folder(tmp_path)
    assert set(src.splits) == {"train"}
    tr = src.splits["train"]
    assert list(tr.labels) == [0, 0, 5, 5, 5, 5]
    assert tr.names == ["0_img0.png", "0_img1.png", "5_img0.png", "5_img1.png", "5_img2.png", "5_photo.jpg"]
    assert np.array_equal(tr.images[3], arrs[(5, 1)]) and tr.sizes.tolist()[3] == [24, 21]
    assert tr.tracks == [""] * 6


def test_folder_layout_with_split_folders(tmp_path):
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        for c in (1, 2):
            for i in range(n):
                _save(tmp_path / split / str(c) / f"{split}{i}.png", random_images(1, 16, seed=i)[0])
    src = import_folder(tmp_path)
    assert set(src.splits) == {"train", "val", "test"}
    assert [len(src.splits[s]) for s in ("train", "val", "test")] == [6, 2, 4]
    assert list(src.splits["val"].labels) == [1, 2]


def test_folder_layout_with_only_train_and_test(tmp_path):
    for split in ("train", "test"):
        _save(tmp_path / split / "4" / "a.png", random_images(1, 16)[0])
    assert set(import_folder(tmp_path).splits) == {"train", "test"}


@pytest.mark.parametrize("problem", ["missing", "non_integer_class", "no_images", "unreadable"])
def test_folder_layout_errors_name_the_offender(problem, tmp_path):
    root = tmp_path / "src"
    _save(root / "0" / "ok.png", random_images(1, 16)[0])
    if problem == "missing":
        root = tmp_path / "absent"
        offender = root
    elif problem == "non_integer_class":
        offender = root / "stop"
        _save(offender / "a.png", random_images(1, 16)[0])
    elif problem == "no_images":
        (root / "0" / "ok.png").unlink()
        (root / "0" / "readme.txt").write_text("x")
        offender = root
    else:
        offender = root / "0" / "broken.png"
        offender.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(SourceError) as ei:
        import_folder(root)
    assert str(offender) in str(ei.value)
