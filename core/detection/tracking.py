"""One physical sign across video frames -> one track: greedy IoU matching with a centroid fallback, and a majority
vote over the classifier's verdicts.

The tracker sees only the *sampled* frames. At 1-2 frames/s a sign the car approaches can grow and move so much
between samples that its boxes barely overlap, so a detection that overlaps no live track still joins the one whose
last box has its centre close by (within ``centroid_factor`` x the larger box's longer side).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from core.detection.boxes import iou
from core.detection.results import Detection

#: Defaults of :func:`assign_tracks`: IoU that continues a track; sampled frames a track may miss and live on;
#: the centroid fallback's reach in box sizes. 1.5, not less: at 2 frames/s a sign the car approaches moves about
#: one box size between samples (the generated clips: 0.75 split two signs into five tracks, 1.5 gives two).
TRACK_IOU = 0.3
TRACK_MAX_GAP = 2
TRACK_CENTROID_FACTOR = 1.5
#: The vote's label for detections the novelty check rejected (``Detection.label`` of a novel detection).
UNKNOWN = "unknown sign"


@dataclass
class Track:
    """One sign followed across sampled frames.

    Build it with :meth:`from_detections`, which derives the vote and the time span from the detections.
    """
    #: 1-based, in order of first appearance
    id: int
    #: the detections, in time order (one per sampled frame at most)
    detections: list[Detection]
    #: the majority vote over the detections' classes; None when "unknown sign" wins
    class_id: int | None = None
    class_name: str | None = None
    #: votes per label ("14: Stop", "unknown sign"), most votes first
    votes: dict[str, int] = field(default_factory=dict)
    #: first and last frame (file frame numbers) and times (s) the sign was seen; None for hand-built detections
    #: without them
    first_frame: int | None = None
    last_frame: int | None = None
    first_time_s: float | None = None
    last_time_s: float | None = None

    @classmethod
    def from_detections(cls, track_id: int, detections: Sequence[Detection]) -> "Track":
        """The track of ``detections`` (time order) with its vote: most votes wins; a tie goes to the label with
        the higher summed confidence, then to the earlier seen."""
        if not detections:
            raise ValueError(f"track {track_id}: a track needs at least one detection")
        dets = list(detections)
        counts = Counter(d.label for d in dets)
        confidence = Counter()
        for d in dets:
            confidence[d.label] += float(d.confidence)
        first_seen = {}
        for i, d in enumerate(dets):
            first_seen.setdefault(d.label, i)
        order = sorted(counts, key=lambda lab: (-counts[lab], -confidence[lab], first_seen[lab]))
        winner = next(d for d in dets if d.label == order[0])
        known = winner.label != UNKNOWN
        return cls(id=track_id, detections=dets, class_id=winner.class_id if known else None,
                   class_name=winner.class_name if known else None, votes={lab: counts[lab] for lab in order},
                   first_frame=dets[0].frame, last_frame=dets[-1].frame,
                   first_time_s=dets[0].time_s, last_time_s=dets[-1].time_s)

    @property
    def best(self) -> Detection:
        """The detection with the best crop: highest score x confidence; a tie goes to the larger box."""
        return max(self.detections, key=lambda d: (float(d.score) * float(d.confidence), _box_area(d.box)))

    @property
    def label(self) -> str:
        """The vote's winner as a caption: ``"14: Stop"`` or ``"unknown sign"``."""
        return UNKNOWN if self.class_id is None else f"{self.class_id}: {self.class_name}"


def assign_tracks(frames: Sequence[Sequence[Detection]], *, iou_threshold: float = TRACK_IOU,
                  max_gap: int = TRACK_MAX_GAP, centroid_factor: float = TRACK_CENTROID_FACTOR) -> list[Track]:
    """Link detections across sampled frames into tracks and set each detection's ``track``.

    In each frame every detection is matched greedily to a live track: first by the IoU of the detection's box with
    the track's last box (best pair first, at least ``iou_threshold``), then, for the rest, by the distance between
    box centres (closest pair first, at most ``centroid_factor`` x the longer side of the larger of the two boxes).
    A track takes at most one detection per frame. A detection left over starts a new track. A track that goes
    unmatched for more than ``max_gap`` sampled frames in a row ends.

    Parameters
    ----------
    frames : sequence of sequences of Detection
        The detections of each *sampled* frame, in time order (an empty frame counts towards the gap).
    iou_threshold : float
        In (0, 1].
    max_gap : int
        Sampled frames a track may miss and still continue, >= 0.
    centroid_factor : float
        >= 0; 0 turns the centroid fallback off.

    Returns
    -------
    list of Track
        Ids 1, 2, ... in order of first appearance (within a frame, in the frame's detection order).
    """
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1]; got {iou_threshold} (default {TRACK_IOU})")
    if not (isinstance(max_gap, (int, np.integer)) and max_gap >= 0):
        raise ValueError(f"max_gap must be a whole number of sampled frames >= 0; got {max_gap!r} "
                         f"(default {TRACK_MAX_GAP})")
    if not centroid_factor >= 0:
        raise ValueError(f"centroid_factor must be >= 0; got {centroid_factor} (default {TRACK_CENTROID_FACTOR})")
    return _link(frames, iou_threshold, int(max_gap), float(centroid_factor))


def timeline_rows(tracks: Sequence[Track]) -> list[dict]:
    """One row per track for the page's timeline table: track id, label, votes (``"14: Stop x5, unknown sign
    x1"``), first and last time seen (s), sampled frames seen, the best detection's score and frame."""
    rows = []
    for t in tracks:
        best = t.best
        rows.append({"track": t.id, "label": t.label,
                     "votes": ", ".join(f"{lab} x{n}" for lab, n in t.votes.items()),
                     "first_s": t.first_time_s, "last_s": t.last_time_s, "frames": len(t.detections),
                     "best_score": round(float(best.score), 4), "best_frame": best.frame})
    return rows


# -- internals ------------------------------------------------------------------------------------------------------

def _box_area(box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _link(frames, iou_threshold: float, max_gap: int, centroid_factor: float) -> list[Track]:
    members: list[list[Detection]] = []   # per track id - 1
    last_seen: list[int] = []             # sampled-frame position of each track's last detection
    for pos, dets in enumerate(frames):
        dets = list(dets)
        live = [t for t in range(len(members)) if pos - last_seen[t] - 1 <= max_gap]
        matches = _match(dets, [members[t][-1].box for t in live], iou_threshold, centroid_factor)
        for d_i, d in enumerate(dets):
            if d_i in matches:
                t = live[matches[d_i]]
            else:
                members.append([])
                last_seen.append(pos)
                t = len(members) - 1
            members[t].append(d)
            last_seen[t] = pos
            d.track = t + 1
    return [Track.from_detections(t + 1, dets) for t, dets in enumerate(members)]


def _match(dets: list[Detection], track_boxes: list, iou_threshold: float, centroid_factor: float) -> dict[int, int]:
    """Greedy one-to-one matching: {detection index: index into ``track_boxes``}, by IoU, then by centre distance."""
    if not dets or not track_boxes:
        return {}
    a = np.array([d.box for d in dets], dtype=np.float64)
    b = np.array(track_boxes, dtype=np.float64)
    overlap = iou(a, b)
    matches = _greedy(overlap, lambda v: v >= iou_threshold, descending=True, matches={})
    if centroid_factor > 0:
        ca, cb = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
        dist = np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2)
        side_a, side_b = (a[:, 2:] - a[:, :2]).max(axis=1), (b[:, 2:] - b[:, :2]).max(axis=1)
        reach = centroid_factor * np.maximum(side_a[:, None], side_b[None, :])
        ratio = dist / np.maximum(reach, 1e-9)
        matches = _greedy(ratio, lambda v: v <= 1.0, descending=False, matches=matches)
    return matches


def _greedy(cost: np.ndarray, accept, *, descending: bool, matches: dict[int, int]) -> dict[int, int]:
    """Add pairs (row, col) of ``cost`` best first (ties: lower row, then lower col) while ``accept(value)``,
    skipping rows and columns already in ``matches``."""
    matches = dict(matches)
    used = set(matches.values())
    rows, cols = np.unravel_index(np.argsort(-cost if descending else cost, axis=None, kind="stable"), cost.shape)
    for r, c in zip(rows.tolist(), cols.tolist()):
        if not accept(cost[r, c]):
            break
        if r in matches or c in used:
            continue
        matches[r] = c
        used.add(c)
    return matches
