"""The ``detect`` run kind: find, classify and track signs in uploaded photos and videos, keep what was found, and
harvest it into a workspace.

The app stages its uploads under the data root (:func:`stage_inputs`; :func:`start_detection` does both steps);
the run reads them with :func:`core.detection.pipeline.detect_files` and saves, in its run folder:

- ``detections.json``: per input file its :meth:`FileResult.to_json` entry plus the kind (photo or video), frames,
  notes and SHA-256; per detection also the classifier's top-5, the novelty score, the time in the video, the track
  and the crop's file; per video the tracks and their timeline rows; the detector's and the model's versions;
- ``crops/``: each detection's crop as a PNG (what the classifier saw, and what harvesting adds to a workspace);
- ``inputs/``: a copy of each photo (the page draws its boxes on it).

So the page and harvesting read results back with :func:`load_results` and never detect again. Staged uploads are
removed when the run ends, done or not.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np

from core import runs
from core.base import config, demo
from core.base.files import atomic_write_bytes, atomic_write_json
from core.base.progress import sub_range
from core.base.text import plural
from core.data import datasets, quotas, staging, uploads, workspaces
from core.data.images import encode_png, load_image
from core.detection import harvest, pipeline, tracking
from core.detection.results import Detection, FileResult
from core.detection.video import MAX_VIDEO_FRAMES, looks_like_video
from core.learning import registry

#: The file of a run's results in its run folder; its ``format`` rises when the layout changes.
RESULTS_FILE = "detections.json"
RESULTS_FORMAT = 1
#: Highest video sampling rate offered (frames analysed per second of video); dashcams film at 25-60.
MAX_FPS = 30.0
#: Where the app keeps uploads until their run has read them (under :func:`core.base.config.runs_dir`).
STAGING = "detect-inputs"
#: Staged uploads older than this (seconds) belong to no run that will still read them.
STALE_STAGING_S = 24 * 3600


@dataclass(frozen=True)
class DetectRun:
    """Detect signs in ``files`` (paths, shown as ``names``) with ``detector`` and classify them with ``model``."""
    #: the input files: photos and videos (by suffix, :func:`core.detection.video.looks_like_video`)
    files: tuple[str, ...]
    #: what each file is called in results and messages (the upload's name)
    names: tuple[str, ...]
    #: registry name or checkpoint path of the classifier
    model: str = "benchmark"
    #: one of :func:`core.detection.pipeline.list_detectors`
    detector: str = pipeline.DEFAULT_DETECTOR
    #: video frames analysed per second of video
    fps: float = 2.0
    #: detections scoring below this are dropped; None: the detector's shipped operating threshold
    min_score: float | None = None
    #: at most this many sampled frames per video (a note says where a longer video was cut)
    max_frames: int = MAX_VIDEO_FRAMES

    def check(self) -> dict:
        if not self.files:
            raise ValueError("nothing to detect in: give at least one photo or video")
        if len(self.names) != len(self.files):
            raise ValueError(f"{len(self.files)} files need as many names, got {len(self.names)}")
        if not (isinstance(self.fps, (int, float)) and 0 < self.fps <= MAX_FPS):
            raise ValueError(f"fps must be above 0 and at most {MAX_FPS:g} frames per second, got {self.fps!r}")
        if not (isinstance(self.max_frames, int) and self.max_frames >= 1):
            raise ValueError(f"max_frames must be a whole number of at least 1, got {self.max_frames!r}")
        if self.min_score is not None and not 0.0 <= float(self.min_score) <= 1.0:
            raise ValueError(f"min_score must be between 0 and 1 (a detector score), got {self.min_score!r}; "
                             "leave it unset for the detector's operating threshold")
        if self.detector not in pipeline.list_detectors():
            raise ValueError(f"unknown detector {self.detector!r}; valid: {', '.join(pipeline.list_detectors())}")
        missing = [n for n, f in zip(self.names, self.files) if not Path(f).is_file()]
        if missing:
            raise ValueError(f"{', '.join(missing[:5])}: no such file; upload {'it' if len(missing) == 1 else 'them'}"
                             " again")
        return {"model": registry.model_input(self.model),
                "detector": {"name": self.detector, "version": pipeline.load_detector(self.detector).version}}

    def title(self) -> str:
        return f"detect signs in {plural(len(self.files), 'file')} with {registry.model_label(self.model)}"


def stage_inputs(items: Sequence[tuple[str, bytes]]) -> list[str]:
    """Keep the app's uploads ``(name, bytes)`` under the data root for a detect run, which removes them when it
    ends; returns their paths. In demo mode they count against the session's upload quota first."""
    quotas.charge_uploads(items)
    _sweep_staging()
    return staging.stage(items, _staging())


def start_detection(items: Sequence[tuple[str, bytes]], **settings) -> str:
    """Stage the uploads ``(name, bytes)`` and start a detect run on them (``settings``: the other
    :class:`DetectRun` fields); returns the run id. A refused request (ValueError) leaves nothing staged."""
    paths = stage_inputs(items)
    try:
        return runs.start("detect", DetectRun(files=tuple(paths), names=tuple(uploads.safe_name(n) for n, _ in items),
                                              **settings))
    except Exception:
        _unstage(paths)
        raise


def _staging() -> Path:
    return config.runs_dir() / STAGING


def _sweep_staging(*, now: float | None = None) -> None:
    """Remove staged uploads older than :data:`STALE_STAGING_S`: those of a run cancelled while it waited in the
    queue (its runner, which removes them, never ran)."""
    now = time.time() if now is None else now
    for folder in _staging().glob("*") if _staging().is_dir() else ():
        try:
            if now - folder.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # removed meanwhile by its run
            pass


def _unstage(paths: Sequence[str]) -> None:
    """Remove the staged upload folders of ``paths`` (paths outside the staging area are the caller's)."""
    for folder in {Path(p).parent.parent for p in paths if _staging() in Path(p).parents}:
        shutil.rmtree(folder, ignore_errors=True)


def run_detect(ctx: runs.RunContext, cfg: DetectRun) -> dict:
    """Detect in the run's files, save what was found in its folder (:func:`save_results`), return the counts."""
    try:
        ctx.progress(0.01, "loading the detector and the model")
        detector = pipeline.load_detector(cfg.detector)
        classifier = pipeline.load_classifier(cfg.model)
        ctx.check()
        results = pipeline.detect_files(list(zip(cfg.names, map(Path, cfg.files))), detector=detector,
                                        classifier=classifier, min_score=cfg.min_score, fps=cfg.fps,
                                        max_frames=cfg.max_frames, progress=sub_range(ctx.progress, 0.03, 0.92),
                                        should_stop=ctx.should_stop)
        ctx.check()
        ctx.progress(0.93, "saving crops")
        meta = {"model": cfg.model, "model_version": classifier.version, "detector": detector.name,
                "detector_version": detector.version,
                "min_score": float(detector.min_score if cfg.min_score is None else cfg.min_score),
                "fps": float(cfg.fps), "max_frames": int(cfg.max_frames)}
        save_results(ctx.run_id, results, inputs=cfg.files, meta=meta)
    finally:
        _unstage(cfg.files)
    n = sum(len(r.detections) for r in results)
    return {"results": RESULTS_FILE, "files": len(results), "detections": n,
            "tracks": sum(len(r.tracks) for r in results), "errors": sum(r.error is not None for r in results),
            "model_version": classifier.version, "detector_version": detector.version}


# --- saving and reading back ------------------------------------------------------------------------------------

def _plain(value):
    """A JSON-able copy of a detection field (numpy numbers and arrays become Python ones)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _detection_entry(det: Detection, crop: str | None) -> dict:
    """The CLI's entry of a detection plus every other field of it (top-5, novelty score, time) and its crop."""
    entry = det.to_json()
    entry.update({f.name: _plain(getattr(det, f.name)) for f in fields(Detection) if f.name != "crop"})
    entry["crop"] = crop
    return entry


def _track_entry(track, detections: list[Detection]) -> dict:
    """A track's own fields, its detections as indices into the file's detections."""
    ids = {id(d): k for k, d in enumerate(detections)}
    entry = {f.name: _plain(getattr(track, f.name)) for f in fields(track) if f.name != "detections"}
    entry["detections"] = [ids[id(d)] for d in track.detections if id(d) in ids]
    return entry


def save_results(run_id: str, results: Sequence[FileResult], *, inputs: Sequence[str], meta: dict) -> Path:
    """Write ``results`` (one per input, in order) to the run's folder: crops as PNGs, a copy of each photo read,
    and :data:`RESULTS_FILE`; returns that file's path."""
    folder = runs.run_dir(run_id)
    entries = []
    for k, (result, source) in enumerate(zip(results, inputs)):
        entry = {**result.to_json(), "kind": result.kind, "frames": result.frames, "sample_fps": result.sample_fps,
                 "video_fps": result.video_fps, "duration_s": result.duration_s, "notes": list(result.notes),
                 "sha256": result.sha256, "input": None}
        if result.error is None and result.kind == "image":
            kept = Path("inputs") / f"{k:05d}" / uploads.safe_name(result.file)
            (folder / kept).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, folder / kept)
            entry["input"] = kept.as_posix()
        dets = []
        for j, det in enumerate(result.detections):
            crop = None
            if det.crop is not None:
                crop = f"crops/{k:05d}_{j:05d}.png"
                atomic_write_bytes(folder / crop, encode_png(np.ascontiguousarray(det.crop)))
            dets.append(_detection_entry(det, crop))
        entry["detections"] = dets
        entry["tracks"] = [_track_entry(t, result.detections) for t in result.tracks]
        entry["timeline"] = _plain(tracking.timeline_rows(result.tracks)) if result.tracks else []
        entries.append(entry)
    path = folder / RESULTS_FILE
    atomic_write_json(path, {"format": RESULTS_FORMAT, "run": run_id, **meta, "files": entries})
    return path


def list_finished() -> list[dict]:
    """The records of the finished (done) detect runs this session may see, newest first: in the public demo a
    session's uploads are its own (:func:`core.base.demo.visible`)."""
    return [r for r in runs.list_runs("detect", statuses=("done",)) if demo.visible(r.get(demo.SESSION_FIELD))]


def read_summary(run_id: str) -> dict:
    """The saved results of a finished detect run as JSON (:data:`RESULTS_FILE`); ValueError when there are none,
    or when they belong to another session of the public demo."""
    rec = runs.get(run_id)
    if rec is not None and not demo.visible(rec.get(demo.SESSION_FIELD)):
        raise demo.DemoRefused(f"detect run {run_id} belongs to another session of this public demo; detect in "
                               "your own uploads")
    path = runs.run_dir(run_id) / RESULTS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"detect run {run_id} has no saved results (it did not finish, or its folder was "
                         "removed); run the detection again") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"detect run {run_id}: its results cannot be read ({e}); run the detection again") from None
    if data.get("format") != RESULTS_FORMAT:
        raise ValueError(f"detect run {run_id} was saved in an older format ({data.get('format')}); run the "
                         "detection again")
    return data


def _detection(entry: dict, folder: Path) -> Detection:
    names = {f.name for f in fields(Detection)} - {"crop"}
    det = Detection(**{k: v for k, v in entry.items() if k in names})
    det.box = tuple(float(v) for v in det.box)
    if entry.get("crop") and (folder / entry["crop"]).is_file():
        det.crop = load_image(folder / entry["crop"])
    return det


def _file_result(entry: dict, folder: Path) -> FileResult:
    dets = [_detection(d, folder) for d in entry.get("detections", [])]
    names = {f.name for f in fields(FileResult)} - {"detections", "image", "tracks"}
    result = FileResult(**{k: v for k, v in entry.items() if k in names}, detections=dets)
    if entry.get("input"):
        try:
            result.image = load_image(folder / entry["input"], name=result.file, max_pixels=pipeline.MAX_PHOTO_PIXELS)
        except ValueError as e:
            result.notes.append(f"the photo cannot be shown again: {e}")
    track_fields = {f.name for f in fields(tracking.Track)}
    for t in entry.get("tracks", []):
        kept = {k: (tuple(v) if isinstance(v, list) else v) for k, v in t.items() if k in track_fields}
        result.tracks.append(tracking.Track(**{**kept, "detections": [dets[i] for i in t["detections"]]}))
    return result


def load_results(run_id: str) -> list[FileResult]:
    """The FileResults of a finished detect run, in input order, rebuilt from its folder: detections with their
    crops, each photo's upright image re-read from the saved copy, each video's tracks."""
    data = read_summary(run_id)
    folder = runs.run_dir(run_id)
    return [_file_result(e, folder) for e in data["files"]]


# --- harvesting ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HarvestOutcome:
    """What :func:`harvest_run` did: the workspace it added to (derived for this harvest when ``derived``)."""
    workspace: str
    derived: bool
    harvested: harvest.Harvested

    @property
    def message(self) -> str:
        text = self.harvested.message
        text = text[:1].upper() + text[1:]
        return text + (f" ({self.workspace} is a new workspace, derived for this harvest)" if self.derived else "")


def harvest_items(run_id: str, picks: Sequence[tuple[int, int]] | None = None, *,
                  best_of_tracks: bool = False) -> list[harvest.HarvestItem]:
    """The harvest items of a detect run: the detections ``picks`` ``(file index, detection index)``, and with
    ``best_of_tracks`` each video track's best crop as well. ValueError for a pick the run does not have."""
    results = load_results(run_id)
    chosen: list[tuple[FileResult, Detection]] = []
    for k, j in picks or ():
        if not (0 <= k < len(results) and 0 <= j < len(results[k].detections)):
            raise ValueError(f"detect run {run_id} has no detection {j} in file {k}; pick again from its table")
        chosen.append((results[k], results[k].detections[j]))
    if best_of_tracks:
        chosen += [(r, d) for r in results for d in harvest.best_of_tracks(r)]
    missing = [r.file for r, d in chosen if d.crop is None]
    if missing:
        raise ValueError(f"{plural(len(missing), 'detection')} of {missing[0]} kept no crop; run the detection again")
    return [harvest.HarvestItem.from_detection(r, d) for r, d in chosen]


def harvest_run(run_id: str, picks: Sequence[tuple[int, int]] | None = None, *, dataset: str,
                class_id: int | None, best_of_tracks: bool = False, workspace: str = "",
                split: str = "train") -> HarvestOutcome:
    """Add crops of a detect run to ``dataset`` as ``class_id`` (None: the Extra bucket), with provenance.

    ``dataset`` built: a workspace named ``workspace`` is derived from it first, once every check has passed (a
    bad request creates nothing). Repeats are skipped by :func:`core.detection.harvest.harvest` (nothing is
    harvested twice); its message says how many.
    """
    info = datasets.get_dataset(dataset)
    if class_id is not None and int(class_id) not in info.classes:
        raise ValueError(f"{dataset} has no class {class_id}; choose one of its classes or the Extra bucket")
    items = harvest_items(run_id, picks, best_of_tracks=best_of_tracks)
    if not items:
        raise ValueError("nothing to harvest: pick detections in the table (or harvest each track's best crop)")
    name, derived = workspaces.change_target(info, workspace, doing="harvest")
    meta = read_summary(run_id)
    done = harvest.harvest(name, items, class_id=None if class_id is None else int(class_id),
                           detector_version=str(meta["detector_version"]), model_version=str(meta["model_version"]),
                           detector=str(meta["detector"]), model=str(meta["model"]), split=split)
    return HarvestOutcome(name, derived, done)


runs.register_kind("detect", DetectRun, run_detect)
