"""The records detection produces: one :class:`Detection` per boxed sign, one :class:`FileResult` per input file.

The page, the CLI (``python -m core detect --json``), the ``detect`` run and harvesting all read these, so they
cannot disagree about what was found. Boxes are in the input's upright pixel coordinates: EXIF orientation applied,
at the file's full resolution even when the image was processed downscaled.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detection:
    """One sign candidate the detector kept (at or above the operating threshold), with the classifier's verdict."""
    #: x0, y0, x1, y1 in the input's upright pixel coordinates (x1, y1 exclusive)
    box: tuple[float, float, float, float]
    #: detector score, 0-1
    score: float
    #: the classifier's top-1 class; None when the crop is probably not one of the model's classes (``novel``)
    class_id: int | None
    class_name: str | None
    #: the classifier's top-1 probability (also for a novel crop: the best guess's probability)
    confidence: float
    #: the novelty check says the crop is not one of the model's classes: shown as "unknown sign"
    novel: bool
    #: the classifier's top-5, best first: [{"class_id", "name", "p"}]
    top: list[dict] = field(default_factory=list)
    #: the novelty score and threshold behind ``novel`` (None: the model has no novelty check)
    novelty_score: float | None = None
    #: video: index of the frame in the file (0-based, decoder order) and its time in seconds; None for a photo
    frame: int | None = None
    time_s: float | None = None
    #: video: the track this detection belongs to (:mod:`core.detection.tracking`); None for a photo
    track: int | None = None
    #: the crop given to the classifier (RGB uint8, the box plus a margin, at most 256 px a side); not in JSON
    crop: np.ndarray | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """What a box is captioned with: the class name, or "unknown sign"."""
        return "unknown sign" if self.novel or self.class_id is None else f"{self.class_id}: {self.class_name}"

    def to_json(self) -> dict:
        """The CLI's ``--json`` entry (schema fixed by issue 23)."""
        return {"box": [round(float(v), 1) for v in self.box], "score": round(float(self.score), 4),
                "class_id": None if self.novel else self.class_id,
                "class_name": None if self.novel else self.class_name,
                "confidence": round(float(self.confidence), 4), "novel": bool(self.novel),
                "frame": self.frame, "track": self.track}


@dataclass
class FileResult:
    """What detection found in one input file (a photo or a video), or why the file was refused."""
    file: str
    #: the upright image's (or video frame's) full-resolution size in pixels; 0 when refused before decoding
    width: int = 0
    height: int = 0
    error: str | None = None
    detections: list[Detection] = field(default_factory=list)
    #: "image" or "video"
    kind: str = "image"
    #: video: frames analysed, the sampling rate used, and the file's own frame rate and duration
    frames: int = 0
    sample_fps: float | None = None
    video_fps: float | None = None
    duration_s: float | None = None
    #: a message that is not an error (e.g. "processed downscaled", "stopped at the frame cap")
    notes: list[str] = field(default_factory=list)
    #: hex SHA-256 of the file's bytes: harvesting keys provenance on it, so nothing is harvested twice
    sha256: str = ""
    #: photo: the upright RGB image (full resolution) for drawing boxes; None for a video or a refused file
    image: np.ndarray | None = field(default=None, repr=False)
    #: video: tracks (:class:`core.detection.tracking.Track`), in order of first appearance
    tracks: list = field(default_factory=list)

    def to_json(self) -> dict:
        """The CLI's ``--json`` entry: ``{"file", "width", "height", "error", "detections": [...]}``."""
        return {"file": self.file, "width": int(self.width), "height": int(self.height), "error": self.error,
                "detections": [d.to_json() for d in self.detections]}
