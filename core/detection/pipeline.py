"""Detection end to end: proposals -> crops -> the classifier with novelty rejection, for photos and videos.

``detect_image`` is the one path every caller takes (the Detect signs page through the ``detect`` run, the CLI,
the benchmark). A photo larger than :data:`MAX_PROCESS_SIDE` is searched downscaled and its boxes are mapped back;
crops are always cut from the full-resolution upright image, with the margin GTSRB crops have around their sign.
A crop the novelty check rejects is kept and boxed as "unknown sign" rather than forced into a class.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from core.analysis import novelty
from core.analysis.evaluation import TOP_K
from core.base import config
from core.data.images import ImageError, load_image
from core.detection import tracking, video
from core.detection.boxes import expand, scale_boxes
from core.detection.classical import ColourDetector
from core.detection.detector import load_detector_file
from core.detection.results import Detection, FileResult
from core.learning import registry
from core.learning.inference import predict_proba
from core.learning.models import load_checkpoint, model_from_checkpoint

#: The shipped learned detector (``artifacts/detector.pt``) and the classical one it was compared with.
DEFAULT_DETECTOR = "detector"
DETECTORS = {"detector": "learned centre-heatmap network on an image pyramid (shipped)",
             "colour": "colour segmentation in HSV + sign-shaped regions (the classical baseline)"}
DEFAULT_MODEL = "benchmark"
#: Photos are searched with their long side at most this many pixels (boxes are mapped back to full size).
MAX_PROCESS_SIDE = 2048
#: Photos up to this many pixels are accepted (a 40-megapixel camera photo included).
MAX_PHOTO_PIXELS = 64_000_000
#: Around a detected sign, the crop keeps this fraction of its size on every side (GTSRB crops keep about 10 %).
CROP_MARGIN = 0.1
#: Crops kept for display and harvesting are at most this many pixels a side.
MAX_CROP_SIDE = 256
#: Most detections classified per image (the best-scoring ones), a bound on the cost of a cluttered frame.
MAX_DETECTIONS = 50

ProgressFn = Callable[[float, str], None]
StopFn = Callable[[], bool]


class Proposer(Protocol):
    name: str
    version: str
    min_score: float

    def propose(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Classifier:
    """A classifier and its novelty check, loaded once for many images."""
    name: str
    ckpt: dict
    model: object
    #: None: the model has no novelty check (no calibration data here); every crop gets a class
    novelty: novelty.Detector | None
    version: str
    method: str = novelty.DEFAULT_METHOD


def list_detectors() -> tuple[str, ...]:
    return tuple(DETECTORS)


def load_detector(name: str | None = None) -> Proposer:
    """``"detector"`` (the shipped learned one), ``"colour"`` (classical), or a detector ``.pt`` file."""
    name = name or DEFAULT_DETECTOR
    if name == "colour":
        return ColourDetector()
    if name == "detector":
        return load_detector_file(config.ARTIFACTS_DIR / "detector.pt", name="detector")
    if name.endswith(".pt"):
        return load_detector_file(Path(name))
    raise ValueError(f"unknown detector {name!r}; valid: {', '.join(DETECTORS)} or a detector .pt file")


def load_classifier(model: str | None = None) -> Classifier:
    """The classifier (registry name or ``.pt`` path; default the shipped benchmark) with its novelty check."""
    ref = model or DEFAULT_MODEL
    path = registry.model_path(ref)
    ckpt = load_checkpoint(path)
    net = model_from_checkpoint(ckpt)
    try:
        check = novelty.load_or_fit(path, net, ckpt)
    except ValueError:
        check = None  # a model whose training data is not here: classify without the novelty check
    return Classifier(ref, ckpt, net, check, registry.file_version(path))


def detect_image(image: np.ndarray, *, detector: Proposer, classifier: Classifier,
                 min_score: float | None = None) -> list[Detection]:
    """Signs in one upright RGB image (H, W, 3) uint8, best score first, boxes in its pixels."""
    threshold = detector.min_score if min_score is None else float(min_score)
    h, w = image.shape[:2]
    scale = min(1.0, MAX_PROCESS_SIDE / max(h, w))
    small = image if scale == 1.0 else cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                  interpolation=cv2.INTER_AREA)
    boxes, scores = detector.propose(small)
    keep = scores >= threshold
    boxes, scores = boxes[keep][:MAX_DETECTIONS], scores[keep][:MAX_DETECTIONS]
    if scale != 1.0:
        boxes = scale_boxes(boxes, from_size=(small.shape[1], small.shape[0]), to_size=(w, h))
    if len(boxes) == 0:
        return []
    crops = [_crop(image, b) for b in expand(boxes, margin=CROP_MARGIN, size=(w, h))]
    return _classify(crops, boxes, scores, classifier)


def _crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = np.round(box).astype(int)
    crop = image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
    side = max(crop.shape[:2])
    if side > MAX_CROP_SIDE:
        f = MAX_CROP_SIDE / side
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))),
                          interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop)


def _classify(crops: list[np.ndarray], boxes: np.ndarray, scores: np.ndarray,
              classifier: Classifier) -> list[Detection]:
    ckpt = classifier.ckpt
    proba = predict_proba(classifier.model, crops)
    novel_scores = novel = None
    if classifier.novelty is not None:
        novel_scores = classifier.novelty.scores(classifier.model, crops, (classifier.method,))[classifier.method]
        novel = novel_scores > classifier.novelty.thresholds[classifier.method]
    out = []
    for k, (p, box, score, crop) in enumerate(zip(proba, boxes, scores, crops)):
        order = np.argsort(-p)[:TOP_K]
        top = [{"class_id": int(ckpt["class_ids"][i]), "name": ckpt["class_names"][i], "p": round(float(p[i]), 6)}
               for i in order]
        is_novel = bool(novel[k]) if novel is not None else False
        out.append(Detection(box=tuple(float(v) for v in box), score=float(score),
                             class_id=None if is_novel else top[0]["class_id"],
                             class_name=None if is_novel else top[0]["name"], confidence=float(top[0]["p"]),
                             novel=is_novel, top=top,
                             novelty_score=None if novel_scores is None else float(novel_scores[k]), crop=crop))
    return out


def detect_files(items: list[tuple[str, bytes | str | os.PathLike]], *, detector: Proposer, classifier: Classifier,
                 min_score: float | None = None, fps: float = 2.0, max_frames: int = video.MAX_VIDEO_FRAMES,
                 progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> list[FileResult]:
    """Detect in each (name, bytes-or-path): photos by image content, videos by suffix. One result per input, in
    order; a bad file gets its ``error`` and the rest proceed. ``progress(fraction, message)``; ``should_stop()``
    ends the batch early (the files not reached get an error saying so)."""
    if fps <= 0:
        raise ValueError(f"fps must be above 0 (frames sampled per second of video), got {fps}")
    results = []
    for k, (name, src) in enumerate(items):
        if should_stop and should_stop():
            results.append(FileResult(name, error=f"{name}: not processed, the detection was cancelled"))
            continue

        def sub(f: float, msg: str = "", _k=k) -> None:
            if progress:
                progress((_k + min(1.0, f)) / len(items), msg)

        sub(0.0, f"file {k + 1}/{len(items)}: {name}")
        if video.looks_like_video(name):
            results.append(_detect_video(name, src, detector=detector, classifier=classifier, min_score=min_score,
                                         fps=fps, max_frames=max_frames, progress=sub, should_stop=should_stop))
        else:
            results.append(_detect_photo(name, src, detector=detector, classifier=classifier, min_score=min_score))
    if progress:
        progress(1.0, f"{len(items)} file(s) done")
    return results


def _sha256(src) -> str:
    if isinstance(src, bytes):
        return hashlib.sha256(src).hexdigest()
    with open(src, "rb") as f:  # in chunks: a dashcam video may be a gigabyte
        return hashlib.file_digest(f, "sha256").hexdigest()


def _detect_photo(name: str, src, *, detector: Proposer, classifier: Classifier,
                  min_score: float | None) -> FileResult:
    try:
        image = load_image(src, name=name, max_pixels=MAX_PHOTO_PIXELS)
    except ImageError as e:
        return FileResult(name, error=str(e))
    h, w = image.shape[:2]
    result = FileResult(name, width=w, height=h, sha256=_sha256(src), image=image)
    if max(h, w) > MAX_PROCESS_SIDE:
        result.notes.append(f"{name} is {w}\u00d7{h}: searched at {MAX_PROCESS_SIDE} px on its long side, boxes "
                            "mapped back to full size")
    result.detections = detect_image(image, detector=detector, classifier=classifier, min_score=min_score)
    return result


def _detect_video(name: str, src, *, detector: Proposer, classifier: Classifier, min_score: float | None,
                  fps: float, max_frames: int, progress: ProgressFn, should_stop: StopFn | None) -> FileResult:
    try:
        info = video.probe(src, name=name)
    except video.VideoError as e:
        return FileResult(name, kind="video", error=str(e))
    planned, note = video.planned_frames(info, fps=fps, max_frames=max_frames)
    result = FileResult(name, width=info.width, height=info.height, kind="video", sample_fps=fps,
                        video_fps=info.fps, duration_s=info.duration_s, sha256=_sha256(src))
    if note:
        result.notes.append(note)
    per_frame: list[list[Detection]] = []
    try:
        for frame in video.sample_frames(src, name=name, fps=fps, max_frames=max_frames):
            if should_stop and should_stop():
                result.notes.append(f"cancelled after {len(per_frame)} frames")
                break
            found = detect_image(frame.image, detector=detector, classifier=classifier, min_score=min_score)
            for d in found:
                d.frame, d.time_s = frame.index, round(frame.time_s, 3)
            per_frame.append(found)
            progress(len(per_frame) / max(1, planned), f"{name}: frame {len(per_frame)}/{planned}")
    except video.VideoError as e:
        # Decoding can fail part-way (a truncated file): keep what the readable part showed, and say so.
        if not per_frame:
            result.error = str(e)
            return result
        result.notes.append(f"{e} (the detections of the {len(per_frame)} frames read are kept)")
    result.frames = len(per_frame)
    result.tracks = tracking.assign_tracks(per_frame)
    result.detections = [d for frame in per_frame for d in frame]
    return result
