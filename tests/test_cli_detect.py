"""``python -m core detect``: the issue's JSON schema on generated street scenes, bad files beside good ones,
harvesting into a workspace, and argument errors (checked before anything is detected)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cli_support import run_cli
from core.cli.detect_commands import _detection_line
from core.data import datasets, workspaces
from core.data.images import encode_png
from core.detection import boxes, pipeline, scenes, video
from core.detection.results import Detection, FileResult

#: A test scene (GTSRB test crops on a test photo) with two signs large enough for the shipped detector.
SEED = 3
ENTRY_KEYS = {"file", "width", "height", "error", "detections"}
DETECTION_KEYS = {"box", "score", "class_id", "class_name", "confidence", "novel", "frame", "track"}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """The scene as PNG and JPEG, a text file named .jpg, and the scene's truth."""
    folder = tmp_path_factory.mktemp("detect-inputs")
    scene = scenes.make_scene(SEED, n_signs=(2, 2), sign_sizes=(48, 96))
    png, jpg, bad = folder / "scene.png", folder / "scene.jpg", folder / "notes.jpg"
    png.write_bytes(encode_png(scene.image))
    jpg.write_bytes(cv2.imencode(".jpg", scene.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    bad.write_text("this is not a photo\n")
    return {"scene": scene, "png": png, "jpg": jpg, "bad": bad, "folder": folder}


@pytest.fixture(scope="module")
def min_score() -> float:
    return float(pipeline.load_detector().min_score)


def _check_entry(entry: dict, *, width: int, height: int, min_score: float) -> None:
    assert set(entry) == ENTRY_KEYS and entry["error"] is None
    assert (entry["width"], entry["height"]) == (width, height)
    for d in entry["detections"]:
        assert set(d) == DETECTION_KEYS
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert min_score <= d["score"] <= 1 and 0 <= d["confidence"] <= 1 and isinstance(d["novel"], bool)
        if d["novel"]:
            assert d["class_id"] is None and d["class_name"] is None
        else:
            assert isinstance(d["class_id"], int) and isinstance(d["class_name"], str)


def test_json_gives_one_entry_per_file_in_the_issues_schema_and_a_bad_file_does_not_stop_the_rest(
        files, data_root, min_score):
    res = run_cli("detect", files["png"], files["jpg"], files["bad"], "--json", root=data_root)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)  # one JSON document, nothing else on stdout
    assert [e["file"] for e in out] == [str(files["png"]), str(files["jpg"]), str(files["bad"])]
    scene = files["scene"]
    h, w = scene.image.shape[:2]
    for entry in out[:2]:
        _check_entry(entry, width=w, height=h, min_score=min_score)
        assert all(d["frame"] is None and d["track"] is None for d in entry["detections"])  # photos
        found = np.array([d["box"] for d in entry["detections"]]).reshape(-1, 4)
        # every sign of the scene is found, in the input's pixel coordinates
        assert (boxes.iou(scene.boxes, found).max(axis=1, initial=0) >= 0.5).all(), (scene.boxes, found)
    assert set(out[2]) == ENTRY_KEYS and out[2]["error"] and out[2]["detections"] == []


def test_min_score_keeps_only_detections_at_or_above_it(files, data_root, min_score):
    every = json.loads(run_cli("detect", files["png"], "--json", "--min-score", "0", root=data_root).stdout)[0]
    strict = json.loads(run_cli("detect", files["png"], "--json", "--min-score", "0.9", root=data_root).stdout)[0]
    assert all(d["score"] >= 0.9 for d in strict["detections"])
    default = json.loads(run_cli("detect", files["png"], "--json", root=data_root).stdout)[0]
    assert [d for d in every["detections"] if d["score"] >= min_score] == default["detections"]


def test_text_output_has_a_line_per_detection_and_per_refused_file(files, data_root):
    res = run_cli("detect", files["png"], files["bad"], root=data_root)
    assert res.returncode == 0, res.stderr
    n = len(json.loads(run_cli("detect", files["png"], "--json", root=data_root).stdout)[0]["detections"])
    lines = res.stdout.splitlines()
    assert len([ln for ln in lines if ln.startswith(f"{files['png']}: ") and "score" in ln]) == n >= 1
    assert [ln for ln in lines if ln.startswith(f"{files['bad']}: refused: ")]


def test_the_exit_code_is_1_when_every_file_is_refused(files, data_root):
    missing = files["folder"] / "missing.png"
    res = run_cli("detect", files["bad"], missing, "--json", root=data_root)
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert [e["file"] for e in out] == [str(files["bad"]), str(missing)] and all(e["error"] for e in out)


def test_harvest_to_adds_the_crops_once_with_their_source(files, data_root):
    workspaces.derive("Sample48", "ws1")
    res = run_cli("detect", files["png"], "--json", "--harvest-to", "ws1", "--class", "extra", root=data_root)
    assert res.returncode == 0, res.stderr
    n = len(json.loads(res.stdout)[0]["detections"])  # stdout stays pure JSON; the message is on stderr
    assert n >= 1 and f"added {n} image{'s' if n > 1 else ''} to the Extra bucket of ws1" in res.stderr
    recs = workspaces.current_added(datasets.get_dataset("ws1"))
    assert len(recs) == n and {r["split"] for r in recs} == {workspaces.EXTRA}
    assert {r["source_file"] for r in recs} == {str(files["png"])} and all(r["origin"] == "detection" for r in recs)
    assert {r["model"] for r in recs} == {pipeline.load_classifier().name}
    again = run_cli("detect", files["png"], "--harvest-to", "ws1", "--class", "Stop", root=data_root)
    assert again.returncode == 0, again.stderr
    assert f"nothing added to class 14: Stop in ws1: {n} image{'s' if n > 1 else ''} already harvested" in again.stdout
    assert len(workspaces.current_added(datasets.get_dataset("ws1"))) == n


def test_a_video_gives_frames_and_tracks_and_harvests_each_tracks_best_crop(files, data_root, min_score):
    frames, _ = scenes.make_video(1, n_frames=6, size=(320, 240), n_signs=1)
    clip = video.write_video(files["folder"] / "clip.mp4", frames, fps=6)
    workspaces.derive("Sample48", "ws1")
    res = run_cli("detect", clip, "--json", "--fps", "6", "--max-frames", "6", "--harvest-to", "ws1",
                  "--class", "extra", root=data_root)
    assert res.returncode == 0, res.stderr
    (entry,) = json.loads(res.stdout)
    _check_entry(entry, width=320, height=240, min_score=min_score)
    dets = entry["detections"]
    assert dets and all(isinstance(d["frame"], int) and isinstance(d["track"], int) for d in dets)
    tracks = {d["track"] for d in dets}
    recs = workspaces.current_added(datasets.get_dataset("ws1"))
    assert len(recs) == len(tracks) and {r["detection_track"] for r in recs} == tracks


@pytest.mark.parametrize("args, message", [
    (["--harvest-to", "ws1"], "--harvest-to WS and --class ID|extra go together"),
    (["--class", "14"], "--harvest-to WS and --class ID|extra go together"),
    (["--fps", "0"], "a number of frames per second above 0"),
    (["--fps", "nan"], "a number of frames per second above 0"),
    (["--max-frames", "0"], "a whole number of at least 1"),
    (["--min-score", "1.5"], "a detector score between 0 and 1"),
])
def test_argument_errors_are_argparse_errors(files, data_root, args, message):
    res = run_cli("detect", files["png"], *args, root=data_root)
    assert res.returncode == 2 and message in res.stderr and "usage:" in res.stderr and res.stdout == ""


def test_an_unknown_detector_or_model_is_refused_with_the_valid_ones(files, data_root):
    res = run_cli("detect", files["png"], "--detector", "nope", root=data_root)
    assert res.returncode == 2 and "unknown detector 'nope'; valid: detector, colour" in res.stderr
    res = run_cli("detect", files["png"], "--detector", "colour", "--model", "nope", root=data_root)
    assert res.returncode == 2 and "nope" in res.stderr and res.stdout == ""


def test_no_path_is_an_argparse_error(data_root):
    res = run_cli("detect", "--json", root=data_root)
    assert res.returncode == 2 and "the following arguments are required: PATH" in res.stderr


@pytest.mark.parametrize("target, message", [
    (["--harvest-to", "Sample48", "--class", "14"], "'Sample48' is a built dataset and never changes; derive a "
                                                   "workspace from it first (python -m core datasets derive"),
    (["--harvest-to", "nope", "--class", "14"], "no dataset named 'nope'"),
    (["--harvest-to", "ws1", "--class", "99"], "ws1 has no class '99'; give a class id or name"),
])
def test_a_bad_harvest_target_is_refused_before_anything_is_detected(files, data_root, monkeypatch, target, message):
    workspaces.derive("Sample48", "ws1")

    def never(*args, **kwargs):
        raise AssertionError("detected although the harvest target is wrong")

    monkeypatch.setattr(pipeline, "detect_files", never)
    res = run_cli("detect", files["png"], *target, root=data_root)
    assert res.returncode == 2 and message in res.stderr and res.stdout == ""
    assert workspaces.current_added(datasets.get_dataset("ws1")) == []


def test_a_novel_detection_line_names_the_best_guess():
    d = Detection((10, 20, 42, 52), 0.9, None, None, 0.61, True, top=[{"class_id": 14, "name": "Stop", "p": 0.61}],
                  frame=3, time_s=1.5, track=2)
    line = _detection_line(FileResult("clip.mp4", kind="video"), d)
    assert line == "clip.mp4 frame 3 (1.50 s) track 2: unknown sign (best guess 14: Stop 61%)  score 0.90  box [10, 20, 42, 52]"
