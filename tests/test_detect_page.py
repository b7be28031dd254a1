"""The Detect signs page and the ``detect`` run behind it, through Home.py's router: the page before any run, a
finished run's photo (boxes, table, the chosen detection's top-5 and IG) and video (tracks on a timeline, their best
crops), bad files refused one by one while the others render, harvesting into a workspace (once), and the run's
saved results read back as they were found."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import runs
from core.base import demo
from core.data import datasets, workspaces
from core.detection import detect_run, pipeline, scenes
from core.detection.video import write_video
from tests.run_support import finished
from waits import PAGE_S, wait_until
from app_support import router_mode  # noqa: F401 (autouse: AppTests through Home.py's router)

HOME = str(Path(__file__).resolve().parent.parent / "Home.py")
#: A scene with two clear signs (a 28: Children crossing and a 2: Speed limit 50) on a test background.
SCENE_SEED = 3


def detector_name() -> str:
    """The shipped learned detector where its file is here, else colour proposals (the suite runs either way)."""
    try:
        pipeline.load_detector(pipeline.DEFAULT_DETECTOR)
    except (ValueError, OSError):
        return "colour"
    return pipeline.DEFAULT_DETECTOR


def jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def scene_upload() -> tuple[str, bytes]:
    return "street.jpg", jpeg(scenes.make_scene(SCENE_SEED).image)


def video_upload(tmp_path: Path) -> tuple[str, bytes]:
    frames, _ = scenes.make_video(1, n_frames=12, size=(320, 240))
    return "dashcam.mp4", write_video(tmp_path / "dashcam.mp4", frames, fps=6.0).read_bytes()


def detected(items: list[tuple[str, bytes]], **settings) -> str:
    """The id of a finished detect run on ``items`` (started as the page starts it)."""
    job = detect_run.start_detection(items, **{"model": "benchmark", "detector": detector_name(), **settings})
    rec = finished(job)
    assert rec["status"] == "done", rec.get("error")
    return job


def open_detect(**state) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=PAGE_S)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page("pages/detect.py")
    at.run()
    assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def detections_table(at: AppTest):
    """The detections table (the one with a box column)."""
    return next(df.value for df in at.dataframe if "box" in df.value.columns)


def select_rows(at: AppTest, run_id: str, rows: list[int]) -> None:
    at.session_state[f"detect_table_{run_id}"] = {"selection": {"rows": rows, "columns": []}}
    at.run()
    assert not at.exception, at.exception


# --- the page ------------------------------------------------------------------------------------------------------

def test_the_page_opens_on_the_shipped_model_detector_and_threshold_before_any_run():
    at = open_detect()
    assert at.title[0].value == "Detect signs"
    assert at.selectbox(key="detect_model").value == "benchmark"
    assert at.selectbox(key="detect_detector").value == pipeline.DEFAULT_DETECTOR
    assert at.selectbox(key="detect_detector").options == list(pipeline.list_detectors())
    if detector_name() == pipeline.DEFAULT_DETECTOR:
        shipped = pipeline.load_detector(pipeline.DEFAULT_DETECTOR).min_score
        assert at.slider(key=f"detect_min_score_{pipeline.DEFAULT_DETECTOR}").value == pytest.approx(shipped)
    else:  # its file is missing here: said so, nothing to start
        assert any("no such detector file" in e.value for e in at.error)
    assert at.button(key="detect_start").disabled  # nothing uploaded yet
    assert any("No results yet" in i.value for i in at.info)
    at.selectbox(key="detect_detector").set_value("colour").run()
    assert at.slider(key="detect_min_score_colour").value == pytest.approx(pipeline.load_detector("colour").min_score)


def test_a_run_the_page_watches_opens_when_it_ends_with_boxes_table_and_the_chosen_detection():
    job = detected([scene_upload()])
    at = open_detect(_detect_watch={job})
    at.run()  # the poller sees it ended and opens it
    assert not at.exception, at.exception
    assert at.selectbox(key="detect_open").value == job
    found = detect_run.load_results(job)[0]
    assert len(found.detections) >= 1
    photo = charts(at)[0]
    rects = [s for s in photo["layout"].get("shapes", []) if s["type"] == "rect"]
    assert len(rects) == len(found.detections)
    captions = [a["text"] for a in photo["layout"]["annotations"]]
    assert captions == [f"{d.label} ({d.confidence:.0%})" for d in found.detections]
    markers = photo["data"][1]  # one clickable marker per box, naming its table row
    assert markers["customdata"] == [[0, j] for j in range(len(found.detections))]
    table = detections_table(at)
    assert len(table) == len(found.detections) and list(table["file"]) == ["street.jpg"] * len(found.detections)
    assert {"frame", "time (s)", "track", "label", "confidence", "score", "novel", "box"} <= set(table.columns)
    select_rows(at, job, [0])  # the ticked row opens: top-5 with the class names, and IG
    det = found.detections[0]
    texts = [p.proto.text for p in at.get("progress")]
    assert [t for t in texts if t.startswith(f"{det.top[0]['class_id']}: {det.top[0]['name']}")]
    assert any("Integrated Gradients" in json.dumps(c["layout"]) for c in charts(at))
    assert at.button(key="detect_harvest").label == "Harvest 1 crop into a new workspace"


def test_bad_files_each_show_their_error_while_the_others_render(tmp_path):
    job = detected([("notes.jpg", b"just some text"), scene_upload(), ("clip.mp4", b"not a video at all"),
                    ("empty.webm", b"")])
    at = open_detect(detect_detector=detector_name())
    errors = [e.value for e in at.error]
    for name in ("notes.jpg", "clip.mp4", "empty.webm"):
        assert len([e for e in errors if e.startswith(name)]) == 1, (name, errors)
    assert len(charts(at)) >= 1 and len(detections_table(at)) >= 1  # the good photo still shows
    results = detect_run.load_results(job)
    assert [r.error is None for r in results] == [False, True, False, False]


def test_a_video_shows_its_tracks_on_a_timeline_with_each_tracks_best_crop(tmp_path):
    job = detected([video_upload(tmp_path)], fps=6.0)
    result = detect_run.load_results(job)[0]
    assert result.kind == "video" and result.frames == 12 and result.tracks
    at = open_detect()
    timeline = charts(at)[0]["data"][0]
    assert timeline["y"] == [f"track {t.id}" for t in result.tracks]
    assert timeline["text"] == [t.label for t in result.tracks]
    crops = [img.proto.imgs[0].caption for img in at.get("image")]
    assert [c for c in crops if c.startswith("track ")] == [f"track {t.id}: {t.label}" for t in result.tracks
                                                          if t.best.crop is not None]
    table = detections_table(at)
    assert (table["track"] != "").all() and (table["frame"] != "").all()
    assert at.radio(key="detect_harvest_what").options == [
        "the detections chosen in the table (0)", f"each track's best crop ({len(result.tracks)})"]


# --- harvesting ------------------------------------------------------------------------------------------------------

def test_harvest_adds_the_chosen_crops_to_a_workspace_class_and_never_twice():
    workspaces.derive("Sample48", "Main")
    job = detected([scene_upload()])
    at = open_detect()
    select_rows(at, job, [0])
    at.selectbox(key="detect_harvest_dataset").set_value("Main").run()
    at.selectbox(key="detect_harvest_class_Main").set_value(14).run()
    assert at.button(key="detect_harvest").label == "Harvest 1 crop"
    at.button(key="detect_harvest").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Added 1 image to class 14: Stop in Main"]
    added = workspaces.current_added(datasets.get_dataset("Main"))
    assert len(added) == 1 and added[0]["class_id"] == 14 and added[0]["origin"] == "detection"
    assert added[0]["source_file"] == "street.jpg" and added[0]["detector"] == detector_name()
    det = detect_run.load_results(job)[0].detections[0]
    assert added[0]["box"] == pytest.approx(list(det.box), abs=0.051)  # kept to a tenth of a pixel
    at.button(key="detect_harvest").click().run()  # the same crop again: skipped, said so
    assert not at.success and any("already harvested" in i.value for i in at.info)
    assert len(workspaces.current_added(datasets.get_dataset("Main"))) == 1


def test_harvesting_into_a_built_dataset_derives_a_workspace_in_the_same_click(tmp_path):
    job = detected([video_upload(tmp_path)], fps=6.0)
    tracks = detect_run.load_results(job)[0].tracks
    at = open_detect()
    at.radio(key="detect_harvest_what").set_value("tracks").run()
    at.selectbox(key="detect_harvest_dataset").set_value("Sample48").run()
    at.text_input(key="detect_harvest_workspace").set_value("From-video").run()
    assert at.button(key="detect_harvest").label == f"Harvest {len(tracks)} crop{'s' * (len(tracks) != 1)} into a " \
                                                    "new workspace"
    at.button(key="detect_harvest").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="detect_harvest_dataset").value == "From-video"  # the picker moves to it
    info = datasets.get_dataset("From-video")
    assert info.kind == "workspace" and info.base == "Sample48"
    added = workspaces.current_added(info)
    assert len(added) == len(tracks) and all(a["class_id"] == workspaces.EXTRA_CLASS for a in added)
    assert sorted(a["detection_track"] for a in added) == sorted(t.id for t in tracks)


def test_a_refused_harvest_creates_nothing():
    job = detected([scene_upload()])
    with pytest.raises(ValueError, match="no class 999"):
        detect_run.harvest_run(job, [(0, 0)], dataset="Sample48", class_id=999, workspace="Never")
    with pytest.raises(ValueError, match="name a workspace"):
        detect_run.harvest_run(job, [(0, 0)], dataset="Sample48", class_id=None)
    with pytest.raises(ValueError, match="has no detection 99"):
        detect_run.harvest_run(job, [(0, 99)], dataset="Sample48", class_id=None, workspace="Never")
    with pytest.raises(ValueError, match="nothing to harvest"):
        detect_run.harvest_run(job, [], dataset="Sample48", class_id=None, workspace="Never")
    assert "Never" not in {d.name for d in datasets.list_datasets()}


# --- the run --------------------------------------------------------------------------------------------------------

def test_the_saved_results_read_back_as_found_and_the_uploads_are_cleared(tmp_path):
    items = [scene_upload(), video_upload(tmp_path)]
    job = detected(items, fps=6.0)
    paths = [tmp_path / "in" / n for n, _ in items]
    for p, (_, data) in zip(paths, items):
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
    direct = pipeline.detect_files(list(zip([n for n, _ in items], paths)),
                                   detector=pipeline.load_detector(detector_name()),
                                   classifier=pipeline.load_classifier("benchmark"), fps=6.0)
    again = detect_run.load_results(job)
    assert [r.to_json() for r in again] == [r.to_json() for r in direct]  # the CLI's schema, unchanged
    for a, b in zip(again, direct):
        assert a.sha256 == b.sha256 and a.kind == b.kind and a.notes == b.notes
        for da, db in zip(a.detections, b.detections):
            assert da.top == db.top and da.time_s == db.time_s and np.array_equal(da.crop, db.crop)
        assert [(t.id, t.class_id, [d.frame for d in t.detections]) for t in a.tracks] == \
               [(t.id, t.class_id, [d.frame for d in t.detections]) for t in b.tracks]
    assert np.array_equal(again[0].image, direct[0].image) and again[1].image is None
    saved = detect_run.read_summary(job)
    assert saved["detector"] == detector_name() and saved["model"] == "benchmark"
    assert saved["model_version"] and saved["detector_version"]
    assert saved["files"][1]["timeline"] and not saved["files"][1]["input"]  # a video's copy is not kept
    rec = runs.get(job)
    assert rec["inputs"]["model"]["name"] == "benchmark" and rec["inputs"]["detector"]["version"]
    staged = runs.run_dir(job).parent / detect_run.STAGING
    assert not staged.exists() or not any(staged.iterdir())  # the uploads went with the run


@pytest.mark.parametrize("settings, message", [
    ({"fps": 0}, "fps must be above 0"), ({"fps": 100.0}, "at most 30"),
    ({"max_frames": 0}, "max_frames must be"), ({"min_score": 1.5}, "min_score must be between 0 and 1"),
    ({"detector": "yolo"}, "unknown detector 'yolo'; valid: "), ({"model": "no-such-model"}, "no-such-model"),
])
def test_a_bad_request_is_refused_with_the_fix_and_leaves_nothing_behind(settings, message):
    with pytest.raises(ValueError, match=message):
        detect_run.start_detection([scene_upload()], **{"model": "benchmark", "detector": "colour", **settings})
    assert runs.list_runs("detect") == []
    staged = runs.run_dir("x").parent / detect_run.STAGING
    assert not staged.exists() or not any(staged.iterdir())


def test_a_run_config_checks_its_files_and_names():
    with pytest.raises(ValueError, match="nothing to detect"):
        detect_run.DetectRun(files=(), names=()).check()
    with pytest.raises(ValueError, match="2 files need as many names, got 1"):
        detect_run.DetectRun(files=("a.jpg", "b.jpg"), names=("a.jpg",)).check()
    with pytest.raises(ValueError, match="gone.jpg: no such file; upload it again"):
        detect_run.DetectRun(files=("/nowhere/gone.jpg",), names=("gone.jpg",)).check()


def test_in_the_public_demo_a_sessions_detections_are_its_own(monkeypatch):
    monkeypatch.setenv(demo.ENV, "1")
    with demo.session_scope("alice"):
        job = detected([scene_upload()])
        assert [r["id"] for r in detect_run.list_finished()] == [job]
    with demo.session_scope("bob"):
        assert detect_run.list_finished() == []  # alice's street photo is not listed for bob
        with pytest.raises(demo.DemoRefused, match="another session"):
            detect_run.load_results(job)
        with pytest.raises(demo.DemoRefused, match="another session"):
            detect_run.harvest_run(job, [(0, 0)], dataset="Sample48", class_id=None, workspace="Bobs")


def test_a_cancelled_run_stops_keeps_nothing_and_clears_its_uploads(tmp_path):
    frames, _ = scenes.make_video(2, n_frames=150, size=(320, 240))
    clip = ("long.mp4", write_video(tmp_path / "long.mp4", frames, fps=30.0).read_bytes())
    job = detect_run.start_detection([clip], model="benchmark", detector="colour", fps=30.0)
    wait_until(lambda: "frame" in str((runs.get(job) or {}).get("message", "")) or
               runs.get(job)["status"] not in runs.ACTIVE, what=f"run {job} analysing frames")
    assert runs.cancel(job)
    rec = finished(job)
    assert rec["status"] == "cancelled", rec
    assert not (runs.run_dir(job) / detect_run.RESULTS_FILE).exists()
    assert detect_run.list_finished() == []
    staged = runs.run_dir(job).parent / detect_run.STAGING
    assert not any(staged.iterdir())


def test_a_rotated_phone_photo_reads_back_upright_with_its_boxes_on_it():
    image = scenes.make_scene(SCENE_SEED).image  # 640 x 480, upright
    sideways = Image.fromarray(np.ascontiguousarray(np.rot90(image, 1)))  # stored turned, as a phone does
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to show"
    buf = io.BytesIO()
    sideways.save(buf, format="JPEG", quality=92, exif=exif)
    job = detected([("phone.jpg", buf.getvalue())])
    result = detect_run.load_results(job)[0]
    assert result.image.shape == (480, 640, 3) and (result.width, result.height) == (640, 480)
    assert np.abs(result.image.astype(int) - image).mean() < 8  # the same picture, up the right way (JPEG aside)
    assert all(0 <= d.box[0] < d.box[2] <= 640 and 0 <= d.box[1] < d.box[3] <= 480 for d in result.detections)
