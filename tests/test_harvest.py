"""Harvesting detections into a workspace: provenance, the Extra bucket, nothing twice, built datasets refused."""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, replace

import numpy as np
import pytest

from conftest import smooth_images
from core.curation import added as curation_added
from core.data import datasets, workspace_changes, workspaces
from core.data.export import provenance_text
from core.data.images import load_image
from core.detection.harvest import HarvestItem, best_of_tracks, harvest, harvest_key
from core.detection.results import Detection, FileResult

SAMPLE = "Sample48"
VERSIONS = dict(detector="detector", detector_version="det-v1", model="benchmark", model_version="mdl-v1")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _det(k: int, *, frame: int | None = None, track: int | None = None, score: float = 0.9,
         novel: bool = False) -> Detection:
    """A hand-built detection with a sign-like crop; ``k`` moves its box and changes its pixels."""
    return Detection(box=(10.0 + 40 * k, 20.0, 42.4 + 40 * k, 52.6), score=score, class_id=14, class_name="Stop",
                     confidence=0.8, novel=novel, frame=frame, time_s=None if frame is None else frame / 2,
                     track=track, crop=smooth_images(1, 40, seed=k)[0])


def _photo(n: int = 2, name: str = "street.jpg") -> FileResult:
    return FileResult(file=name, width=640, height=480, sha256=_sha(name), detections=[_det(k) for k in range(n)])


def _items(result: FileResult) -> list[HarvestItem]:
    return [HarvestItem.from_detection(result, d) for d in result.detections]


@pytest.fixture
def ws():
    return workspaces.derive(SAMPLE, "ws1")


def test_harvest_adds_crops_to_a_class_with_their_provenance(ws):
    result = FileResult(file="dashcam.mp4", kind="video", sha256=_sha("video"),
                        detections=[_det(0, frame=12, track=3), _det(1, frame=14, track=3, novel=True)])
    items = _items(result)
    done = harvest("ws1", items, class_id=14, **VERSIONS)
    assert done.workspace == "ws1" and len(done.added) == 2 and done.skipped == 0
    assert done.message == "added 2 images to class 14: Stop in ws1"
    info = datasets.get_dataset("ws1")
    assert info.counts["train"][14] == ws.counts["train"][14] + 2
    recs = {r["id"]: r for r in workspaces.current_added(info)}
    first, second = recs[done.added[0]], recs[done.added[1]]
    assert first["split"] == "train" and first["class_id"] == 14
    assert first["origin"] == "detection" and first["source_file"] == "dashcam.mp4"
    assert first["source_sha256"] == _sha("video") and first["frame"] == 12 and first["time_s"] == 6.0
    assert first["box"] == [10.0, 20.0, 42.4, 52.6] and first["score"] == 0.9
    assert first["predicted_class_id"] == 14 and second["predicted_class_id"] is None  # novel: unknown sign
    assert first["detection_track"] == 3 and first["track"] == second["track"] == f"{_sha('video')[:12]}:t3"
    assert (first["detector"], first["detector_version"], first["model"], first["model_version"]) == \
           ("detector", "det-v1", "benchmark", "mdl-v1")
    assert first["harvest_key"] == harvest_key(items[0]) != harvest_key(items[1])
    assert first["batch"] == second["batch"] and first["batch"].startswith("detect-")
    assert first["source"] == "detection in dashcam.mp4, frame 12 (6.00 s)"
    # the crop is stored as given (training reads it at the base's size)
    assert np.array_equal(load_image(info.image_path(first["file"])), items[0].crop)
    # one change: one undo takes the whole batch back
    assert workspace_changes.undo("ws1") == "add 2 images"
    assert workspaces.current_added(datasets.get_dataset("ws1")) == []


def test_a_photo_harvest_records_no_frame_and_no_track(ws):
    done = harvest("ws1", _items(_photo(1)), class_id=14, split="val", **VERSIONS)
    (rec,) = workspaces.current_added(datasets.get_dataset("ws1"))
    assert rec["id"] == done.added[0] and rec["split"] == "val"
    assert rec["frame"] is None and rec["time_s"] is None and rec["detection_track"] is None and rec["track"] == ""
    assert rec["source"] == "detection in street.jpg"


@pytest.mark.parametrize("class_id", [None, workspaces.EXTRA_CLASS])
def test_no_class_sends_the_crops_to_the_extra_bucket(ws, class_id):
    done = harvest("ws1", _items(_photo(2)), class_id=class_id, **VERSIONS)
    assert done.message == "added 2 images to the Extra bucket of ws1"
    recs = workspaces.current_added(datasets.get_dataset("ws1"))
    assert [(r["split"], r["class_id"]) for r in recs] == [(workspaces.EXTRA, workspaces.EXTRA_CLASS)] * 2
    assert datasets.get_dataset("ws1").split_size("train") == ws.split_size("train")  # no split reads Extra


def test_nothing_is_harvested_twice(ws):
    items = _items(_photo(2))
    first = harvest("ws1", items, class_id=14, **VERSIONS)
    version = datasets.get_dataset("ws1").fingerprint
    again = harvest("ws1", items, class_id=14, **VERSIONS)
    assert len(first.added) == 2 and again.added == [] and again.skipped == 2
    assert again.message == "nothing added to class 14: Stop in ws1: 2 images already harvested, skipped"
    assert datasets.get_dataset("ws1").fingerprint == version  # nothing written at all
    assert workspace_changes.undo_list("ws1") == ["add 2 images"]
    # the same box up to rounding is the same crop; a new one in the batch is added, the repeat skipped
    nudged = replace(items[0], box=tuple(v + 0.05 for v in items[0].box))
    new = _items(_photo(3))[2]
    mixed = harvest("ws1", [nudged, new, new], class_id=None, **VERSIONS)
    assert len(mixed.added) == 1 and mixed.skipped == 2
    assert mixed.message == "added 1 image to the Extra bucket of ws1 (2 images already harvested, skipped)"
    assert len(workspaces.current_added(datasets.get_dataset("ws1"))) == 3


def test_two_harvests_of_the_same_detections_at_once_add_them_once(ws):
    items = _items(_photo(3))
    start = threading.Barrier(2)
    done: list = []

    def work() -> None:
        start.wait(timeout=60)
        done.append(harvest("ws1", items, class_id=14, **VERSIONS))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(len(d.added) for d in done) == [0, 3] and sorted(d.skipped for d in done) == [0, 3]
    assert len(workspaces.current_added(datasets.get_dataset("ws1"))) == 3


def test_the_key_depends_on_the_source_the_frame_and_the_box():
    item = _items(_photo(1))[0]
    assert harvest_key(item) == harvest_key(replace(item, score=0.1, crop=item.crop[::-1]))
    for other in (replace(item, source_sha256=_sha("other")), replace(item, frame=3),
                  replace(item, box=(11.0, *item.box[1:]))):
        assert harvest_key(other) != harvest_key(item)


def test_an_edited_or_deleted_harvest(ws):
    items = _items(_photo(2))
    done = harvest("ws1", items, class_id=14, **VERSIONS)
    curation_added.edit_image("ws1", done.added[0], rotate=90)  # the edit replaces it: still harvested
    workspace_changes.delete_images("ws1", [done.added[1]])     # in the trash: no longer in the workspace
    again = harvest("ws1", items, class_id=14, **VERSIONS)
    assert again.skipped == 1 and len(again.added) == 1


def test_a_built_dataset_is_refused_and_nothing_written(data_root):
    base = datasets.get_dataset(SAMPLE)
    before = sorted(p for p in data_root.rglob("*")) if data_root.exists() else []
    with pytest.raises(ValueError, match=r"built dataset.*derive a workspace from it first \(python -m core "
                                         r"datasets derive --from Sample48"):
        harvest(SAMPLE, _items(_photo(1)), class_id=14, **VERSIONS)
    assert datasets.get_dataset(SAMPLE).fingerprint == base.fingerprint
    assert (sorted(p for p in data_root.rglob("*")) if data_root.exists() else []) == before


def test_bad_requests_are_refused_with_the_fix(ws):
    items = _items(_photo(1))
    with pytest.raises(ValueError, match="no detections to harvest"):
        harvest("ws1", [], class_id=14, **VERSIONS)
    with pytest.raises(ValueError, match=r"workspace 'ws1' has no class 99; give one of its classes.*classes list"):
        harvest("ws1", items, class_id=99, **VERSIONS)
    with pytest.raises(ValueError, match="unknown split 'extra'; valid splits: train, val, test"):
        harvest("ws1", items, class_id=14, split="extra", **VERSIONS)
    with pytest.raises(ValueError, match="no dataset named 'nope'"):
        harvest("nope", items, class_id=14, **VERSIONS)
    with pytest.raises(ValueError, match=r"must be an \(H, W, 3\) uint8 RGB image, got ndarray float64"):
        harvest("ws1", [replace(items[0], crop=np.zeros((8, 8, 3)))], class_id=14, **VERSIONS)
    with pytest.raises(ValueError, match="source_sha256 must be the file's hex SHA-256"):
        harvest("ws1", [replace(items[0], source_sha256="")], class_id=14, **VERSIONS)
    with pytest.raises(ValueError, match=r"street.jpg: the detection at \(10, 20, 42, 53\) has no crop"):
        HarvestItem.from_detection(_photo(1), replace(_photo(1).detections[0], crop=None))
    assert workspaces.current_added(datasets.get_dataset("ws1")) == []
    assert not (ws.path / workspaces.ADDED_DIR).exists()  # no image file was written either


def test_a_harvested_image_is_listed_on_added_images_with_its_source(ws):
    harvest("ws1", _items(_photo(2, name="high street.jpg")), class_id=14, **VERSIONS)
    page = curation_added.list_added(workspaces.current_added(datasets.get_dataset("ws1")), class_id=14)
    assert page.total == 2
    rec = page.records[0]
    assert rec["source_file"] == "high street.jpg"
    assert provenance_text(rec).startswith("detected in high street.jpg, by ")
    assert provenance_text(rec).endswith(f", classified by {VERSIONS['model']} as class 14")
    batch = rec["batch"]
    assert curation_added.list_added(workspaces.current_added(datasets.get_dataset("ws1")), batch=batch).total == 2


@dataclass
class _Track:
    best: Detection


def test_best_of_tracks_gives_each_tracks_best_detection():
    a, b = _det(0, frame=1, track=1), _det(1, frame=4, track=2)
    video = FileResult(file="v.mp4", kind="video", sha256=_sha("v"), detections=[a, b], tracks=[_Track(a), _Track(b)])
    assert best_of_tracks(video) == [a, b]
    assert best_of_tracks(_photo(2)) == []
