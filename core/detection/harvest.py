"""Harvesting: detections -> workspace images with provenance, the loop's front door from street footage to
training data.

A harvested crop is an added image of a workspace (:func:`core.data.workspace_changes.add_images`), in one class
(split ``train`` by default) or the Extra bucket, and its record says where it came from:

- ``origin``: ``"detection"``; ``source``: ``"detection in dashcam.mp4, frame 12 (6.00 s)"`` (what Added images
  and exports show as the image's provenance);
- ``source_file``, ``source_sha256`` (the input file's bytes), ``frame`` and ``time_s`` (video; None for a photo),
  ``box`` (x0, y0, x1, y1 in the input's upright pixels), ``score`` (detector), ``predicted_class_id`` (the
  classifier's verdict; None: an unknown sign), ``detection_track`` (the video track; None for a photo);
- ``track``: the index's physical-sign id (the column GTSRB's tracks use): ``"<sha256[:12]>:t<track>"`` for a
  video track, so every crop of one sign shares it; ``""`` for a photo;
- ``detector``, ``detector_version``, ``model``, ``model_version``; ``batch`` (one per harvest, Added images'
  batch filter); ``harvest_key`` (:func:`harvest_key`).

Nothing is harvested twice: an item whose key is in the workspace already (a current image, or one it was edited
from) or earlier in the same batch is skipped and counted.
"""
from __future__ import annotations

import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.base.files import file_lock
from core.base.text import plural
from core.data import built as ds
from core.data import workspace_changes, workspaces
from core.detection.results import Detection, FileResult

#: Record ``origin`` of a harvested image.
ORIGIN = "detection"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class HarvestItem:
    """One crop to harvest and where it came from."""
    #: (H, W, 3) uint8 RGB: the detection's crop (the box plus a margin)
    crop: np.ndarray
    #: the input file's display name
    source_file: str
    #: hex SHA-256 of the input file's bytes
    source_sha256: str
    #: video: frame index in the file and its time in seconds; None for a photo
    frame: int | None
    time_s: float | None
    #: x0, y0, x1, y1 in the input's upright pixel coordinates
    box: tuple[float, float, float, float]
    #: detector score, 0-1
    score: float
    #: the classifier's verdict; None for an unknown sign (novel)
    predicted_class_id: int | None
    #: video: the detection's track; None for a photo
    track: int | None

    @classmethod
    def from_detection(cls, result: FileResult, det: Detection) -> HarvestItem:
        """The item of detection ``det`` of file ``result`` (its crop, ``det.crop``, must be set)."""
        if det.crop is None:
            raise ValueError(f"{result.file}: the detection at {_box_text(det.box)} has no crop; harvest "
                             "detections as the pipeline or a detect run returns them (crops included)")
        return cls(crop=det.crop, source_file=result.file, source_sha256=result.sha256, frame=det.frame,
                   time_s=det.time_s, box=tuple(float(v) for v in det.box), score=float(det.score),
                   predicted_class_id=None if det.novel else det.class_id, track=det.track)


@dataclass(frozen=True)
class Harvested:
    """What :func:`harvest` did."""
    workspace: str
    #: ids of the images added, in the order of the items
    added: list[str]
    #: items not added because they were harvested already (or given twice)
    skipped: int
    message: str


def harvest_key(item: HarvestItem) -> str:
    """The identity of a harvested crop: hex SHA-256 of the source file's hash, the frame and the box rounded to
    whole pixels. The same detection of the same file harvested again has the same key."""
    box = ",".join(str(int(round(float(v)))) for v in item.box)
    frame = "" if item.frame is None else int(item.frame)
    return hashlib.sha256(f"{item.source_sha256}|{frame}|{box}".encode()).hexdigest()


def best_of_tracks(result: FileResult) -> list[Detection]:
    """Each track's best detection (:attr:`core.detection.tracking.Track.best`), in track order: what "harvest each
    track's best crop" sends. A photo (no tracks) gives an empty list."""
    return [t.best for t in result.tracks]


def harvest(workspace: str, items: Sequence[HarvestItem], *, class_id: int | None, detector_version: str,
            model_version: str, detector: str, model: str, split: str = "train") -> Harvested:
    """Add the crops of ``items`` to workspace ``workspace`` with their provenance, as one change (one undo step).

    Parameters
    ----------
    workspace : str
        A workspace (a built dataset is refused: derive a workspace from it first).
    items : sequence of HarvestItem
        The crops, e.g. ``[HarvestItem.from_detection(result, d) for d in best_of_tracks(result)]``.
    class_id : int or None
        A class of the workspace; None (or ``EXTRA_CLASS``) sends them to the Extra bucket (``split`` unused).
    detector_version, model_version, detector, model : str
        The detector and classifier that found and classified the crops (names and file versions), recorded.
    split : str
        ``train``, ``val`` or ``test`` for a class.

    Returns
    -------
    Harvested
        The ids added and how many items were skipped as already harvested (their key is in the workspace, or
        earlier in ``items``). When every item is skipped nothing is written.
    """
    extra = class_id is None or class_id == workspaces.EXTRA_CLASS
    if not extra and split not in ds.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(ds.SPLITS)}")
    items = list(items)
    if not items:
        raise ValueError("no detections to harvest: choose at least one (or each track's best crop)")
    for item in items:
        _check_item(item)
    where = check_target(workspace, None if extra else int(class_id))
    provenance = {"origin": ORIGIN, "detector": str(detector), "detector_version": str(detector_version),
                  "model": str(model), "model_version": str(model_version),
                  "batch": "detect-" + time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]}
    # under the workspace's lock (re-entrant: add_images takes it again), so two harvests of the same detections
    # at once cannot both find them new
    with file_lock(workspaces.workspace_dir(workspace) / ".lock"):
        seen = _harvested_keys(workspace)
        todo = []
        for item in items:
            key = harvest_key(item)
            if key not in seen:
                seen.add(key)
                todo.append((item, key))
        skipped = len(items) - len(todo)
        ids = workspace_changes.add_images(
            workspace, [np.ascontiguousarray(it.crop) for it, _ in todo],
            split=workspaces.EXTRA if extra else split,
            class_id=workspaces.EXTRA_CLASS if extra else int(class_id),
            sources=[_source_text(it) for it, _ in todo],
            records=[{**provenance, **_record(it, key)} for it, key in todo]) if todo else []
    note = f" ({plural(skipped)} already harvested, skipped)" if skipped else ""
    message = (f"added {plural(len(ids))} to {where}{note}" if ids else
               f"nothing added to {where}: {plural(skipped)} already harvested, skipped")
    return Harvested(workspace, ids, skipped, message)


def check_target(workspace: str, class_id: int | None) -> str:
    """Check that crops can be harvested into ``class_id`` (None: the Extra bucket) of ``workspace``, changing
    nothing (the CLI checks before it detects); returns the target in words: "class 14: Stop in ws1", "the Extra
    bucket of ws1". ValueError: a built dataset (derive a workspace first), an unknown name or class."""
    workspaces.require_writable(workspace)
    info = workspaces.read_info(workspaces.workspace_dir(workspace))
    if class_id is None or class_id == workspaces.EXTRA_CLASS:
        return f"the Extra bucket of {workspace}"
    if class_id not in info.classes:
        some = ", ".join(f"{c}: {n}" for c, n in sorted(info.classes.items())[:8])
        raise ValueError(f"workspace {workspace!r} has no class {class_id}; give one of its classes, e.g. {some}"
                         f"{' ...' if len(info.classes) > 8 else ''} (python -m core classes list --dataset "
                         f"{workspace}), or 'extra' for the Extra bucket")
    return f"class {class_id}: {info.classes[class_id]} in {workspace}"


# -- internals -----------------------------------------------------------------------------------------------------

def _check_item(item: HarvestItem) -> None:
    crop = item.crop
    if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3 \
            or min(crop.shape[:2]) < 1:
        shape = getattr(crop, "shape", None)
        raise ValueError(f"{item.source_file}: the crop at {_box_text(item.box)} must be an (H, W, 3) uint8 RGB "
                         f"image, got {type(crop).__name__} {getattr(crop, 'dtype', '')} {shape}")
    if not _SHA256.fullmatch(str(item.source_sha256)):
        raise ValueError(f"{item.source_file}: source_sha256 must be the file's hex SHA-256 (64 characters), got "
                         f"{item.source_sha256!r}; take it from the FileResult (HarvestItem.from_detection)")


def _harvested_keys(workspace: str) -> set[str]:
    """Harvest keys of the workspace's current images, each with the keys of the images it was made from
    (``parent`` chain: an edited crop still counts as harvested)."""
    info = workspaces.read_info(workspaces.workspace_dir(workspace))
    records = {r["id"]: r for r in workspaces.added_records(info.path)}
    keys = set()
    for rec in workspaces.current_added(info):
        seen = set()
        while rec is not None and rec["id"] not in seen:
            seen.add(rec["id"])
            if rec.get("harvest_key"):
                keys.add(rec["harvest_key"])
            rec = records.get(rec.get("parent"))
    return keys


def _record(item: HarvestItem, key: str) -> dict:
    return {"source_file": item.source_file, "source_sha256": item.source_sha256,
            "frame": None if item.frame is None else int(item.frame),
            "time_s": None if item.time_s is None else round(float(item.time_s), 3),
            "box": [round(float(v), 1) for v in item.box], "score": round(float(item.score), 4),
            "predicted_class_id": None if item.predicted_class_id is None else int(item.predicted_class_id),
            "detection_track": None if item.track is None else int(item.track),
            "track": "" if item.track is None else f"{item.source_sha256[:12]}:t{int(item.track)}",
            "harvest_key": key}


def _source_text(item: HarvestItem) -> str:
    """The image's source in words: "detection in dashcam.mp4, frame 12 (6.00 s)", "detection in street.jpg"."""
    where = "" if item.frame is None else f", frame {int(item.frame)}" + (
        "" if item.time_s is None else f" ({float(item.time_s):.2f} s)")
    return f"detection in {item.source_file}{where}"


def _box_text(box) -> str:
    return "(" + ", ".join(f"{float(v):.0f}" for v in box) + ")"
