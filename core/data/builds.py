"""Recipes for the four standard datasets (GTSRB, GTSRB_48, Difficult, Testing) and the embedded sample.

Recipe (all deterministic for a given seed):

* **GTSRB**: the official train set split into train/val by track (10 % of each class's tracks to val);
  the official 12,630-image test set as test.
* **GTSRB_48**: GTSRB plus TSRD (32 px, deduplicated with the npz flags: first copies only, test rows identical
  to a train image dropped). TSRD classes that mean the same as a GTSRB class are mapped to its id
  (:data:`TSRD_TO_GTSRB`). Of the unmapped TSRD classes, the 5 with the most unique train images become
  classes 43-47. TSRD train is split 85/15 into train/val per class (TSRD has no track ids).
* **Difficult**: GTSRB_48 with each of the seven augmentation groups applied with probability
  :data:`DIFFICULT_P` to every train, val and test image.
* **Testing**: Difficult's train and val; its test set is GTSRB_48's test with each group at
  :data:`TESTING_P`, plus :data:`TESTING_EXTRA` more transformed copies of test images.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from core.base import config
from core.data import importers
from core.data.augment import augment_images
from core.data.built import SplitToWrite, split_by_track, write_dataset
from core.data.images import pixel_hash
from core.data.importers import ImportedSplit, SourceError, import_gtsrb_npz, import_tsrd_npz, read_signnames
from core.base.progress import ProgressFn, StopFn, check, silent

#: TSRD class id -> GTSRB class id, for the classes that mean the same sign.
TSRD_TO_GTSRB = {
    2: 1,    # speed limit 30
    4: 2,    # speed limit 50
    5: 3,    # speed limit 60
    6: 4,    # speed limit 70
    7: 5,    # speed limit 80
    14: 9,   # overtaking prohibited -> no passing
    20: 36,  # straight or right mandatory -> go straight or right
    21: 35,  # straight ahead mandatory -> ahead only
    22: 34,  # turn left mandatory -> turn left ahead
    24: 33,  # turn right mandatory -> turn right ahead
    25: 39,  # pass left mandatory -> keep left
    26: 38,  # pass right mandatory -> keep right
    27: 40,  # roundabout
    33: 26,  # traffic light warning -> traffic signals
    34: 18,  # danger warning -> general caution
    35: 27,  # pedestrian crossing -> pedestrians
    36: 29,  # cyclists -> bicycles crossing
    37: 28,  # children
    38: 20,  # curve right
    39: 19,  # curve left
    46: 21,  # double curve
    48: 25,  # roadworks -> road work
    52: 14,  # stop
    53: 15,  # "entry prohibited": its images show an empty red ring, GTSRB 15 "No vehicles" (checked by eye)
    55: 17,  # "direction prohibited": the red disc with a white bar, GTSRB 17 "No entry" (checked by eye)
    56: 13,  # give way -> yield
}
NUM_NEW_CLASSES = 5
#: The new classes 43-47 of GTSRB_48, in that order: the five TSRD classes GTSRB lacks with the most train images
#: (:func:`choose_new_tsrd_classes`), pinned so that a class keeps its id when the counts order them otherwise.
#: Until 2026-12-04 TSRD 55 (the same sign as GTSRB 17) was class 46; TSRD 0 "Speed limit (5km/h)" took its id.
NEW_TSRD_CLASSES = (3, 54, 28, 0, 17)
GTSRB_CLASSES = 43
DIFFICULT_P = 0.15
TESTING_P = 0.3
TESTING_EXTRA_P = 0.4
TESTING_EXTRA = 4000
VAL_FRACTION = 0.1
TSRD_VAL_FRACTION = 0.15
SAMPLE_PER_CLASS = {"train": 12, "val": 3, "test": 6}
#: The datasets ``python -m core datasets build`` makes, in build order.
STANDARD_DATASETS = ("GTSRB", "GTSRB_48", "Difficult", "Testing")
#: Layouts ``python -m core datasets import`` reads.
IMPORT_LAYOUTS = ("official", "kaggle", "folder", "npz")


def _to_write(s: ImportedSplit, labels: np.ndarray | None = None) -> SplitToWrite:
    return SplitToWrite(s.images, s.labels if labels is None else labels, s.names,
                        [s.source] * len(s), s.tracks, s.sizes)


def _concat(a: SplitToWrite, b: SplitToWrite) -> SplitToWrite:
    return SplitToWrite(a.images + b.images, np.concatenate([a.labels, b.labels]), a.names + b.names,
                        a.sources + b.sources, a.tracks + b.tracks, np.concatenate([a.sizes, b.sizes]))


def _subset(s: SplitToWrite, idx) -> SplitToWrite:
    idx = np.asarray(idx, np.int64)
    return SplitToWrite([s.images[i] for i in idx], s.labels[idx], [s.names[i] for i in idx],
                        [s.sources[i] for i in idx], [s.tracks[i] for i in idx], s.sizes[idx])


def _augmented(s: SplitToWrite, *, p: float, seed: int, tag: str = "") -> SplitToWrite:
    imgs = augment_images(np.stack(s.images), p=p, seed=seed)
    sources = [f"{src}, transformed (p={p})" for src in s.sources]
    names = [f"{tag}{n}" for n in s.names]
    return SplitToWrite(list(imgs), s.labels.copy(), names, sources, list(s.tracks), s.sizes)


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = int(round(fraction * len(idx)))
        if len(idx) >= 3 and n >= 1:
            val += list(rng.choice(idx, size=n, replace=False))
    val_mask = np.zeros(len(labels), bool)
    val_mask[np.asarray(val, np.int64)] = True
    return np.flatnonzero(~val_mask), np.flatnonzero(val_mask)


def tsrd_not_in_gtsrb(tsrd_labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the TSRD labels whose sign GTSRB does not have: the novelty protocols' unseen classes."""
    return ~np.isin(np.asarray(tsrd_labels), list(TSRD_TO_GTSRB))


def choose_new_tsrd_classes(tsrd_train_labels: np.ndarray, k: int = NUM_NEW_CLASSES) -> list[int]:
    """The ``k`` unmapped TSRD classes with the most (unique) train images; ties go to the lower id."""
    ids, counts = np.unique(tsrd_train_labels, return_counts=True)
    cands = [(int(-n), int(c)) for c, n in zip(ids, counts) if int(c) not in TSRD_TO_GTSRB]
    return [c for _, c in sorted(cands)[:k]]


def order_new_classes(chosen: list[int]) -> list[int]:
    """The ids 43-47 go to ``chosen`` in the pinned order :data:`NEW_TSRD_CLASSES` when the rule chose exactly those
    (the shared TSRD data), so a class keeps its id however the counts order them; another source (a test's
    synthetic one) keeps the rule's order."""
    return list(NEW_TSRD_CLASSES) if sorted(chosen) == sorted(NEW_TSRD_CLASSES) else list(chosen)


def assemble(source: Path, *, seed: int = 0) -> dict:
    """Read ``source`` (the shared data folder layout) and assemble the splits of every standard dataset."""
    source = Path(source)
    g = import_gtsrb_npz(source / "gtsrb" / "gtsrb_train_32.npz", source / "gtsrb" / "gtsrb_test_32.npz")
    t = import_tsrd_npz(source / "tsrd" / "tsrd_train_32.npz", source / "tsrd" / "tsrd_test_32.npz")
    g_names = read_signnames(source / "gtsrb" / "signnames.csv")
    t_names = read_signnames(source / "tsrd" / "signnames_tsrd.csv")
    if sorted(g_names) != list(range(GTSRB_CLASSES)):
        raise SourceError(f"{source / 'gtsrb' / 'signnames.csv'}: expected class ids 0-42")

    gtrain = g.splits["train"]
    tr_idx, val_idx = split_by_track(gtrain.labels, gtrain.tracks, val_fraction=VAL_FRACTION, seed=seed)
    gt = {"train": _to_write(gtrain.subset(tr_idx)), "val": _to_write(gtrain.subset(val_idx)),
          "test": _to_write(g.splits["test"])}

    new = order_new_classes(choose_new_tsrd_classes(t.splits["train"].labels))
    mapping = dict(TSRD_TO_GTSRB)
    mapping.update({c: GTSRB_CLASSES + i for i, c in enumerate(new)})
    classes48 = dict(g_names)
    classes48.update({GTSRB_CLASSES + i: t_names[c] for i, c in enumerate(new)})

    def mapped(s: ImportedSplit) -> SplitToWrite:
        keep = np.flatnonzero(np.isin(s.labels, list(mapping)))
        sub = s.subset(keep)
        return _to_write(sub, np.asarray([mapping[int(c)] for c in sub.labels], np.int64))

    ttrain = mapped(t.splits["train"])
    ttest = mapped(t.splits["test"])
    # No TSRD test image may equal a train image (the npz flag covers the whole split; check what we kept).
    train_hashes = {pixel_hash(im) for im in ttrain.images}
    ttest = _subset(ttest, [i for i, im in enumerate(ttest.images) if pixel_hash(im) not in train_hashes])
    t_tr, t_val = _stratified_split(ttrain.labels, TSRD_VAL_FRACTION, seed)
    g48 = {"train": _concat(gt["train"], _subset(ttrain, t_tr)), "val": _concat(gt["val"], _subset(ttrain, t_val)),
           "test": _concat(gt["test"], ttest)}

    diff = {s: _augmented(v, p=DIFFICULT_P, seed=seed + 101 + i) for i, (s, v) in enumerate(g48.items())}
    rng = np.random.default_rng(seed + 7)
    extra_idx = np.sort(rng.choice(len(g48["test"].labels), size=min(TESTING_EXTRA, len(g48["test"].labels)),
                                   replace=False))
    extra = _augmented(_subset(g48["test"], extra_idx), p=TESTING_EXTRA_P, seed=seed + 303, tag="extra_")
    testing = {"train": diff["train"], "val": diff["val"],
               "test": _concat(_augmented(g48["test"], p=TESTING_P, seed=seed + 202), extra)}
    tsrd_note = ", ".join(f"TSRD {c} '{t_names[c]}' -> {GTSRB_CLASSES + i}" for i, c in enumerate(new))
    return {
        "GTSRB": (gt, dict(g_names), "GTSRB official train (split by track) and test",
                  f"official train split by track, {VAL_FRACTION:.0%} of tracks per class to val; official test"),
        "GTSRB_48": (g48, classes48, "GTSRB + TSRD (deduplicated)",
                     f"GTSRB plus TSRD classes mapped to GTSRB ids ({len(TSRD_TO_GTSRB)} classes) and 5 new "
                     f"classes: {tsrd_note}"),
        "Difficult": (diff, classes48, "GTSRB_48, transformed",
                      f"GTSRB_48 with each of the 7 augmentation groups at p={DIFFICULT_P} on train, val and test"),
        "Testing": (testing, classes48, "GTSRB_48, heavily transformed test",
                    f"Difficult's train/val; test = GTSRB_48 test with groups at p={TESTING_P} plus "
                    f"{TESTING_EXTRA} extra copies at p={TESTING_EXTRA_P}"),
        "_new_classes": new,
    }


def sample_splits(g48: dict[str, SplitToWrite], *, seed: int = 0) -> dict[str, SplitToWrite]:
    """A few images per class and split of GTSRB_48 for the embedded sample."""
    rng = np.random.default_rng(seed + 11)
    out = {}
    for split, n in SAMPLE_PER_CLASS.items():
        s = g48[split]
        idx = []
        for c in np.unique(s.labels):
            cidx = np.flatnonzero(s.labels == c)
            idx += list(np.sort(rng.choice(cidx, size=min(n, len(cidx)), replace=False)))
        out[split] = _subset(s, sorted(idx))
    return out


def extract_pictograms(meta_zip: Path, names: dict[int, str], out_dir: Path) -> None:
    """Copy GTSRB ``Meta/<id>.png`` pictograms and their class names into ``out_dir``."""
    meta_zip = Path(meta_zip)
    if not meta_zip.is_file():
        raise SourceError(f"{meta_zip}: file not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(meta_zip) as z:
            for cid in names:
                member = f"Meta/{cid}.png"
                if member in z.namelist():
                    (out_dir / f"{cid}.png").write_bytes(z.read(member))
    except zipfile.BadZipFile as e:
        raise SourceError(f"{meta_zip}: not a zip file ({e})") from None
    (out_dir / "names.json").write_text(json.dumps({str(k): v for k, v in sorted(names.items())}, indent=1) + "\n")


def build_standard(source: Path, *, seed: int = 0, root: Path | None = None,
                   names: tuple[str, ...] = STANDARD_DATASETS, progress: ProgressFn | None = None,
                   should_stop: StopFn | None = None) -> dict:
    """Build the standard datasets from ``source``; returns {name: seconds} plus the new TSRD classes.

    Each dataset appears atomically when written; a cancel between two datasets keeps the ones already built.
    """
    progress = progress or silent
    t0 = time.perf_counter()
    progress(0.0, "reading and assembling sources")
    parts = assemble(source, seed=seed)
    timings = {"assemble_s": round(time.perf_counter() - t0, 1), "new_tsrd_classes": parts["_new_classes"]}
    for k, name in enumerate(names):
        check(should_stop)
        t1 = time.perf_counter()
        progress((k + 1) / (len(names) + 1), f"writing {name}")
        splits, classes, src, recipe = parts[name]
        write_dataset(name, splits, classes=classes, source=src, recipe=recipe, root=root)
        timings[name] = round(time.perf_counter() - t1, 1)
    g_names = read_signnames(Path(source) / "gtsrb" / "signnames.csv")
    extract_pictograms(Path(source) / "gtsrb" / "gtsrb_meta.zip", g_names,
                       (Path(root).parent if root else config.data_root()) / "pictograms")
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    return timings


def build_sample(source: Path, *, seed: int = 0, out: Path = config.SAMPLE_DIR) -> Path:
    """Build the embedded sample (``Sample48``: GTSRB_48, a few images per class and split) and pictograms."""
    parts = assemble(source, seed=seed)
    splits, classes, _, _ = parts["GTSRB_48"]
    path = write_dataset("Sample48", sample_splits(splits, seed=seed), classes=classes,
                         source="GTSRB + TSRD (deduplicated), sampled",
                         recipe=f"GTSRB_48 sampled per class: {SAMPLE_PER_CLASS}, seed {seed}",
                         root=Path(out) / "datasets")
    pict = Path(out) / "pictograms"
    shutil.rmtree(pict, ignore_errors=True)
    extract_pictograms(Path(source) / "gtsrb" / "gtsrb_meta.zip", read_signnames(Path(source) / "gtsrb" / "signnames.csv"), pict)
    return path


def import_dataset(layout: str, path: Path, *, name: str, seed: int = 0, val_fraction: float = VAL_FRACTION,
                   root: Path | None = None) -> Path:
    """Turn a user's own download into a workbench dataset.

    ``layout``: ``official`` (GTSRB ``Final_Training``/``Final_Test``), ``kaggle`` (``Train.csv``/``Test.csv``),
    ``folder`` (class folders, optionally under train/val/test, or a ``labels.csv``; a ``.zip`` of such a folder,
    e.g. a workspace export, is checked and unpacked first) or ``npz`` (a folder with
    ``gtsrb_train_32.npz``/``gtsrb_test_32.npz``). A train split without val is split by track (or per class
    at random where there are no tracks). Class names come from a ``signnames.csv`` in ``path`` if present,
    else from GTSRB's names for ids 0-42, else ``class <id>``.
    """
    path = Path(path)
    if layout == "folder" and path.is_file() and path.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="import-") as tmp:
            return import_dataset(layout, importers.extract_zip(path, Path(tmp)), name=name, seed=seed,
                                  val_fraction=val_fraction, root=root)
    if layout == "official":
        src = importers.import_gtsrb_official(path)
    elif layout == "kaggle":
        src = importers.import_kaggle(path)
    elif layout == "folder":
        src = importers.import_folder(path)
    elif layout == "npz":
        src = import_gtsrb_npz(path / "gtsrb_train_32.npz", path / "gtsrb_test_32.npz")
    else:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(IMPORT_LAYOUTS)}")
    splits = {s: _to_write(v) for s, v in src.splits.items()}
    if "val" not in splits and "train" in splits:
        tr = src.splits["train"]
        if any(tr.tracks):
            a, b = split_by_track(tr.labels, tr.tracks, val_fraction=val_fraction, seed=seed)
        else:
            a, b = _stratified_split(tr.labels, val_fraction, seed)
        splits["train"], splits["val"] = _subset(splits["train"], a), _subset(splits["train"], b)
    ids = sorted({int(c) for s in splits.values() for c in s.labels})
    names = _class_names(path, ids)
    return write_dataset(name, splits, classes=names, source=f"imported {layout} layout from {path}",
                         recipe=f"import --layout {layout}, val by track/stratified at {val_fraction:.0%}, seed {seed}",
                         root=root)


def _class_names(path: Path, ids: list[int]) -> dict[int, str]:
    known: dict[int, str] = {}
    csv_path = path / "signnames.csv"
    if csv_path.is_file():
        known = read_signnames(csv_path)
    else:
        names_json = config.SAMPLE_DIR / "pictograms" / "names.json"
        if names_json.is_file():
            known = {int(k): v for k, v in json.loads(names_json.read_text()).items()}
    return {c: known.get(c, f"class {c}") for c in ids}
