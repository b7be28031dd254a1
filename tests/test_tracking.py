"""The tracker: one physical sign across sampled frames -> one track, with a majority vote over its verdicts."""
from __future__ import annotations

import pytest

from core.detection.boxes import iou
from core.detection.results import Detection
from core.detection.tracking import Track, assign_tracks, timeline_rows

STOP = (14, "Stop")
YIELD = (13, "Yield")


def det(box, *, cls=STOP, novel=False, score=0.9, confidence=0.8, frame=None, time_s=None) -> Detection:
    """A hand-built detection; ``cls`` is (class_id, name)."""
    return Detection(box=tuple(float(v) for v in box), score=score, class_id=cls[0], class_name=cls[1],
                     confidence=confidence, novel=novel, frame=frame, time_s=time_s)


def moving(n, *, x0=10.0, y0=20.0, size=30.0, dx=6.0, **kw) -> list[Detection]:
    """One sign sliding right by ``dx`` px per sampled frame (frame k at file frame 5k, 0.5 s apart)."""
    return [det((x0 + dx * k, y0, x0 + dx * k + size, y0 + size), frame=5 * k, time_s=0.5 * k, **kw)
            for k in range(n)]


def test_one_sign_moving_is_one_track_with_its_class():
    dets = moving(6)
    tracks = assign_tracks([[d] for d in dets])
    assert len(tracks) == 1
    t = tracks[0]
    assert (t.id, t.class_id, t.class_name, t.label) == (1, 14, "Stop", "14: Stop")
    assert t.votes == {"14: Stop": 6}
    assert t.detections == dets
    assert [d.track for d in dets] == [1] * 6
    assert (t.first_frame, t.last_frame, t.first_time_s, t.last_time_s) == (0, 25, 0.0, 2.5)


def test_two_signs_make_two_tracks():
    left = moving(5, x0=10, cls=STOP)
    right = moving(5, x0=300, cls=YIELD)
    tracks = assign_tracks([[r, l] for l, r in zip(left, right)])
    assert [t.id for t in tracks] == [1, 2]
    # ids follow the order within the first frame: the right sign came first in it
    assert tracks[0].detections == right and tracks[1].detections == left
    assert [t.class_id for t in tracks] == [13, 14]
    assert {d.track for d in right} == {1} and {d.track for d in left} == {2}


@pytest.mark.parametrize("missing, expected_tracks", [(1, 1), (2, 1), (3, 2)])
def test_a_gap_longer_than_max_gap_splits_the_track(missing, expected_tracks):
    dets = moving(2 + missing + 2, dx=2.0)
    frames = [[d] for d in dets]
    for k in range(2, 2 + missing):
        frames[k] = []
    tracks = assign_tracks(frames, max_gap=2)
    assert len(tracks) == expected_tracks
    seen = [d for f in frames for d in f]
    assert sum(len(t.detections) for t in tracks) == len(seen) == 4
    if expected_tracks == 2:
        assert [d.track for d in seen] == [1, 1, 2, 2]


def test_max_gap_zero_ends_a_track_at_its_first_miss():
    a, b, c = moving(3)
    assert len(assign_tracks([[a], [b], [], [c]], max_gap=0)) == 2
    assert len(assign_tracks([[a], [b], [c]], max_gap=0)) == 1


def test_a_fast_growing_sign_is_joined_by_its_centre():
    # a sign the car approaches: 20 px, then 48 px, a little to the right; IoU about 0.17, below the threshold
    small, big = det((100, 100, 120, 120)), det((98, 92, 146, 140))
    assert iou([small.box], [big.box])[0, 0] < 0.3
    assert len(assign_tracks([[small], [big]])) == 1
    # without the centroid rule the same pair is two tracks
    small2, big2 = det((100, 100, 120, 120)), det((98, 92, 146, 140))
    assert len(assign_tracks([[small2], [big2]], centroid_factor=0)) == 2


def test_the_centroid_rule_does_not_reach_a_far_box():
    a, b = det((100, 100, 120, 120)), det((200, 100, 220, 120))
    tracks = assign_tracks([[a], [b]])
    assert [len(t.detections) for t in tracks] == [1, 1]


def test_iou_matching_prefers_the_best_overlap_and_takes_one_detection_per_track():
    # two signs side by side that swap nothing: each detection goes to the track it overlaps most
    a0, b0 = det((0, 0, 40, 40)), det((30, 0, 70, 40), cls=YIELD)
    a1, b1 = det((2, 0, 42, 40)), det((32, 0, 72, 40), cls=YIELD)
    tracks = assign_tracks([[a0, b0], [b1, a1]])
    assert [t.detections for t in tracks] == [[a0, a1], [b0, b1]]


def test_majority_vote_with_a_novel_minority():
    dets = moving(6)
    for d in dets[1:3]:
        d.novel = True
    t = assign_tracks([[d] for d in dets])[0]
    assert t.votes == {"14: Stop": 4, "unknown sign": 2}
    assert (t.class_id, t.label) == (14, "14: Stop")


def test_a_novel_majority_makes_an_unknown_track():
    dets = moving(5)
    for d in dets[:3]:
        d.novel = True
    t = assign_tracks([[d] for d in dets])[0]
    assert (t.class_id, t.class_name, t.label) == (None, None, "unknown sign")
    assert t.votes == {"unknown sign": 3, "14: Stop": 2}


def test_a_tied_vote_goes_to_the_more_confident_label():
    dets = moving(4)
    for d in dets[2:]:
        d.class_id, d.class_name, d.confidence = 13, "Yield", 0.95
    t = assign_tracks([[d] for d in dets])[0]
    assert t.class_id == 13 and t.votes == {"13: Yield": 2, "14: Stop": 2}


def test_ids_follow_first_appearance():
    a = moving(6, x0=10)
    b = moving(6, x0=200)
    c = moving(6, x0=400)
    # c appears first, then a, then b; all three live to the end
    frames = [[c[0]], [c[1], a[1]], [a[2], c[2], b[2]], [b[3], a[3], c[3]]]
    tracks = assign_tracks(frames)
    assert [t.id for t in tracks] == [1, 2, 3]
    assert [t.detections[0] for t in tracks] == [c[0], a[1], b[2]]
    assert [len(t.detections) for t in tracks] == [4, 3, 2]


def test_best_is_highest_score_times_confidence_then_larger_box():
    small = det((0, 0, 10, 10), score=0.9, confidence=0.5)
    large = det((0, 0, 20, 20), score=0.5, confidence=0.9)
    sharp = det((0, 0, 12, 12), score=0.9, confidence=0.9)
    assert Track.from_detections(1, [small, large, sharp]).best is sharp
    assert Track.from_detections(1, [small, large]).best is large   # 0.45 each: the larger box


def test_empty_frames_and_no_detections():
    assert assign_tracks([]) == []
    assert assign_tracks([[], []]) == []
    with pytest.raises(ValueError, match="at least one detection"):
        Track.from_detections(1, [])


@pytest.mark.parametrize("kwargs, match", [({"iou_threshold": 0}, "iou_threshold"),
                                           ({"iou_threshold": 1.5}, "iou_threshold"),
                                           ({"max_gap": -1}, "max_gap"), ({"max_gap": 1.5}, "max_gap"),
                                           ({"centroid_factor": -0.1}, "centroid_factor")])
def test_bad_options_raise_with_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        assign_tracks([[det((0, 0, 10, 10))]], **kwargs)


def test_timeline_rows():
    dets = moving(6)
    dets[4].novel = True
    dets[2].score = 0.99
    tracks = assign_tracks([[d] for d in dets])
    assert timeline_rows(tracks) == [{"track": 1, "label": "14: Stop", "votes": "14: Stop x5, unknown sign x1",
                                      "first_s": 0.0, "last_s": 2.5, "frames": 6, "best_score": 0.99,
                                      "best_frame": 10}]
