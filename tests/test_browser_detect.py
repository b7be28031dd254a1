"""From street footage to training data, in a real browser (issue 23's "done when"): upload a generated street photo
and a short generated dashcam video to Detect signs, wait for the detect run, see the photo's boxes and the video's
tracks, tick two detections and harvest their crops into a workspace, then find them on Added images."""
from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from browser_support import (SHOTS, act, browser, choose, new_page, screenshot,  # noqa: F401 (fixture)
                             settle, streamlit_server, visit, wait_for_app)
from cli_support import run_cli
from waits import PAGE_MS, RUN_MS

pytestmark = pytest.mark.browser

#: Where the lead looks at this flow's screenshots (besides the suite's tests/artifacts).


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A server over a data root with the workspace Main (from Sample48)."""
    root = tmp_path_factory.mktemp("detect-data")
    assert run_cli("datasets", "derive", "--from", "Sample48", "--name", "Main", root=root).returncode == 0
    with streamlit_server(root) as url:
        yield url, root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A generated street photo (JPEG) and a 2-second dashcam clip (mp4) of two signs coming closer."""
    from core.detection import scenes
    from core.detection.video import write_video
    folder = tmp_path_factory.mktemp("detect-inputs")
    photo = folder / "street.jpg"
    buf = io.BytesIO()
    Image.fromarray(scenes.make_scene(3).image).save(buf, format="JPEG", quality=92)
    photo.write_bytes(buf.getvalue())
    frames, _ = scenes.make_video(1, n_frames=24, size=(640, 360))
    return photo, write_video(folder / "dashcam.mp4", frames, fps=12.0)


def learned_or_colour() -> str:
    """The shipped learned detector; colour proposals only while its file is not here yet (a fresh checkout
    before ``python -m core detector train``)."""
    from core.detection import pipeline
    try:
        pipeline.load_detector(pipeline.DEFAULT_DETECTOR)
    except ValueError:
        return "colour"
    return pipeline.DEFAULT_DETECTOR


def shot(page, tmp_path: Path, name: str) -> Path:
    """A screenshot into the test's folder, copied to the suite's artifacts (tests/artifacts)."""
    path = tmp_path / f"detect_{name}.png"
    screenshot(page, path)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    assert page.get_by_test_id("stException").count() == 0
    return path


def tick_rows(page, job: str, rows: list[int]) -> None:
    """Tick the row-selection boxes of ``rows`` in the (canvas-drawn) detections table of run ``job``."""
    grid = page.locator(f".st-key-detect_table_{job}").get_by_test_id("stDataFrame")
    grid.scroll_into_view_if_needed()
    settle(page)  # the layout above it has stopped moving
    box = grid.bounding_box()
    for row in rows:
        x, y = box["x"] + 20, box["y"] + 35 * (row + 1) + 18
        page.mouse.move(x, y)  # the grid draws its row's selection box under the pointer first
        act(page, lambda: page.mouse.click(x, y), what=f"the run after ticking row {row + 1}")


def test_detect_a_photo_and_a_video_then_harvest_two_crops_into_a_workspace(browser, app, inputs, tmp_path,
                                                                           monkeypatch):
    url, root = app
    monkeypatch.setenv("TSW_DATA_ROOT", str(root))
    from core import runs
    from core.data import datasets, workspaces
    from core.detection import detect_run

    # 1. Detect signs: upload both files with the default (learned) detector and the shipped benchmark.
    page = new_page(browser, height=2600)  # Streamlit scrolls inside the page: shots show the viewport
    page.goto(url + "/detect")
    page.get_by_role("heading", name="Detect signs").wait_for()
    wait_for_app(page)
    detector = learned_or_colour()
    choose(page, "Detector", detector)
    rate = page.get_by_role("spinbutton", name="Video frames per second")
    rate.fill("6")  # 12 of the clip's 24 frames: each sign stays one track (it moves far between 2 a second)
    act(page, lambda: rate.press("Enter"), what="the run after setting the frame rate")
    act(page, lambda: page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files([str(p) for p in inputs]),
        what="the run after uploading")
    act(page, page.get_by_role("button", name="Detect in 2 files").click)
    page.get_by_text(re.compile(r"street\.jpg \u2014 \d+ detections?")).wait_for(timeout=RUN_MS)
    page.get_by_text(re.compile(r"dashcam\.mp4 \u2014 \d+ detections? in 12 frames \(6 a second\)")).wait_for()
    wait_for_app(page)
    (job,) = [r["id"] for r in runs.list_runs("detect", statuses=("done",))]
    assert detect_run.read_summary(job)["detector"] == detector
    photo, video = detect_run.load_results(job)
    assert photo.detections and video.tracks, (len(photo.detections), len(video.tracks))

    # 2. The photo's boxes (one rectangle and one caption per detection) and the video's tracks on the timeline.
    chart = page.locator(".js-plotly-plot").first
    chart.scroll_into_view_if_needed()
    assert chart.locator(".shapelayer path").count() == len(photo.detections)
    captions = [t.text_content() for t in chart.locator(".annotation-text").all()]  # SVG text: no inner text
    assert captions == [f"{d.label} ({d.confidence:.0%})" for d in photo.detections]
    timeline = page.locator(".js-plotly-plot").nth(1)
    for t in video.tracks:
        timeline.get_by_text(f"track {t.id}", exact=True).wait_for()
    assert page.get_by_text(re.compile(r"^track \d+: ")).count() >= 1  # the tracks' best crops, captioned
    shot(page, tmp_path, "1_results")

    # 3. Click a box (the marker at its centre): its crop, top-5 and Integrated Gradients open under the table.
    last = photo.detections[-1]
    point = chart.locator(".scatterlayer .point").nth(len(photo.detections) - 1).bounding_box()
    x, y = point["x"] + point["width"] / 2, point["y"] + point["height"] / 2
    page.mouse.move(x, y)  # Plotly's drag layer takes the click and picks the point under the pointer
    act(page, lambda: page.mouse.click(x, y), what="the run after clicking a box")
    page.get_by_text(f"street.jpg \u2192 {last.label} ({last.confidence:.1%})").wait_for()
    page.get_by_text("Integrated Gradients (top-1)").wait_for()

    # 4. Tick two detections, harvest them into Main's Extra bucket.
    tick_rows(page, job, [0, 1])
    page.get_by_role("button", name="Harvest 2 crops").wait_for()
    choose(page, "Into dataset", "Main (workspace of Sample48)")
    choose(page, "Class", "Extra bucket (no class yet)")
    shot(page, tmp_path, "2_chosen")
    act(page, page.get_by_role("button", name="Harvest 2 crops").click)
    page.get_by_text("Added 2 images to the Extra bucket of Main").wait_for()
    added = workspaces.current_added(datasets.get_dataset("Main"))
    assert len(added) == 2 and {a["origin"] for a in added} == {"detection"}
    shot(page, tmp_path, "3_harvested")

    # 5. Added images shows them, with where they came from.
    visit(page, page.get_by_role("link", name="Added images"), "Added images")
    choose(page, "Workspace", "Main (workspace of Sample48)")
    for a in added:
        page.get_by_text(re.compile(rf"^{re.escape(a['id'])} {workspaces.EXTRA}$")).wait_for()
    page.get_by_text(re.compile(r"detected in (street\.jpg|dashcam\.mp4), by detector")).first.wait_for(timeout=PAGE_MS)
    shot(page, tmp_path, "4_added_images")
    page.close()
