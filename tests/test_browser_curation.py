"""The workbench's loop in a real browser: create a class, add images (one bad) with augmentation and smart
segregation, manage them on Added images (move, crop, delete, undo), see Explore's counts, train incrementally
from the shipped benchmark onto the workspace, and predict the new class."""
from __future__ import annotations

import os
import re

import pytest
from PIL import Image

from conftest import star_sign
from browser_support import (SHOTS, act, browser, choose, new_page, open_list, options,  # noqa: F401 (fixture)
                             screenshot, settle, streamlit_server, wait_for_app, wait_for_count)
from waits import RUN_MS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("curation-data")
    os.environ["TSW_DATA_ROOT"] = str(root)
    with streamlit_server(root) as url:
        yield url, root


def shot(page, name: str) -> None:
    screenshot(page, SHOTS / f"curation_{name}.png")
    assert page.get_by_test_id("stException").count() == 0


def open_page(browser, url: str, path: str, heading: str, height: int = 1400):
    page = new_page(browser, height=height)
    page.goto(url + path)
    page.get_by_role("heading", name=heading).wait_for()
    wait_for_app(page)
    return page


def test_add_a_class_and_images_manage_them_retrain_and_predict(browser, app, tmp_path, monkeypatch):
    url, root = app
    monkeypatch.setenv("TSW_DATA_ROOT", str(root))  # check the server's data root from here
    SHOTS.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(2):
        path = tmp_path / f"star{k}.png"
        Image.fromarray(star_sign(k)).save(path)
        files.append(str(path))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")

    # 1. A workspace in one click, then a new class.
    page = open_page(browser, url, "/add_classes", "Add new classes")
    page.get_by_text("Create a workspace above").wait_for()
    act(page, page.get_by_role("button", name="Create").click)
    page.get_by_role("heading", name="New class", exact=True).wait_for()
    page.get_by_label("Class name", exact=True).first.fill("Purple star")
    page.get_by_role("button", name="Add class").click()
    page.get_by_text("Added class 48: Purple star").wait_for()
    wait_for_app(page)
    shot(page, "1_class")
    page.close()

    # 2. Upload 3 files (one bad) with 2 augmentation groups; preview; add to train/val at 80/20.
    page = open_page(browser, url, "/add_images", "Add new images", 1600)
    page.locator("input[type='file']").set_input_files(files + [str(bad)])
    page.get_by_text(re.compile(r"Preview: 2 uploads")).wait_for(timeout=RUN_MS)
    for group in ("Shift & rotate", "Brightness & contrast"):
        open_list(page, page.get_by_test_id("stMultiSelect"), "Augmentation groups")
        act(page, page.get_by_role("option", name=group, exact=True).click, what=f"the run after picking {group}")
    page.keyboard.press("Escape")
    page.get_by_role("spinbutton", name="Variants per image").fill("8")
    act(page, lambda: page.keyboard.press("Enter"), what="the run after 8 variants")
    page.get_by_text(re.compile(r"Preview: 2 uploads x 9 = 18 images")).wait_for(timeout=RUN_MS)
    wait_for_count(page.get_by_text(re.compile("broken.jpg: ")), 1)
    wait_for_count(page.get_by_test_id("stImage"), 18, timeout=RUN_MS)  # the previews come in as they are made
    shot(page, "2_preview")
    page.get_by_role("button", name=re.compile(r"Add 18 images to Main")).click()
    page.get_by_text(re.compile(r"Added 18 images")).wait_for(timeout=RUN_MS)
    wait_for_app(page)
    shot(page, "3_added")
    page.close()
    from core.data import datasets, workspaces
    info = datasets.get_dataset("Main")
    assert info.counts["train"][48] + info.counts["val"][48] == 18 and info.counts["val"][48] > 0

    # 3. Added images: move one to test, crop one, delete one, undo the delete.
    page = open_page(browser, url, "/added_images", "Added images", 1800)
    page.get_by_text(re.compile(r"18 of 18 added images")).wait_for()
    # variants only: an upload moves with its 8 variants (no near-duplicate left in the other split), and which
    # record comes first depends on the order the previews finished in
    choose(page, "Augmented", "Variants")
    page.get_by_text(re.compile(r"16 of 18 added images")).wait_for()
    act(page, page.get_by_test_id("stCheckbox").first.click)
    choose(page, "Move to", "test")
    page.get_by_role("button", name="Move", exact=True).click()
    page.get_by_text(re.compile(r"Moved 1 image to test")).wait_for()
    wait_for_app(page)
    slider = page.get_by_test_id("stSlider").first.get_by_role("slider").first
    slider.focus()

    def crop() -> None:
        for _ in range(8):
            page.keyboard.press("ArrowRight")
    act(page, crop, what="the run after moving the crop slider")  # the slider sends its value once it rests
    page.get_by_role("button", name="Save as a new version").click()
    page.get_by_text(re.compile(r"Saved as a\d+ \(parent a\d+\)")).wait_for()
    wait_for_app(page)
    act(page, page.get_by_test_id("stCheckbox").nth(2).click)
    page.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_text(re.compile(r"to the trash")).wait_for()
    wait_for_app(page)
    shot(page, "4_deleted")
    assert len(workspaces.current_added(datasets.get_dataset("Main"))) == 17
    page.get_by_role("button", name=re.compile(r"Undo: delete 1 image")).click()
    page.get_by_text(re.compile(r"Undone: delete 1 image")).wait_for()
    wait_for_app(page)
    shot(page, "5_undone")
    page.close()
    recs = workspaces.current_added(datasets.get_dataset("Main"))
    assert len(recs) == 18 and any(r.get("recipe") and "edit" in r["recipe"] for r in recs)
    assert sum(r["split"] == "test" for r in recs) == 1

    # 4. Explore counts the workspace's new class.
    page = open_page(browser, url, "/explore", "Explore dataset", 1600)
    choose(page, "Dataset", "Main (workspace of Sample48)")
    choose(page, "Class", "48: Purple star")
    info = datasets.get_dataset("Main")
    n_train = info.counts["train"][48]
    page.get_by_text(re.compile(rf"{n_train} images")).first.wait_for()
    shot(page, "6_explore")
    page.close()

    # 5. Incremental learning from the shipped benchmark onto the workspace.
    page = open_page(browser, url, "/improve", "Improve model")
    choose(page, "Base model", next(o for o in options(page, "Base model") if o.startswith("benchmark (")))
    choose(page, "Dataset", "Main (workspace of Sample48)")
    page.get_by_label("New model name").fill("main-inc")
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill("4")  # 1 on the new rows, 3 on all
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile(r"Model main-inc saved")).wait_for(timeout=RUN_MS)
    wait_for_app(page)
    shot(page, "7_trained")
    page.close()

    # 6. The new model predicts the new class on a star it never saw.
    unseen = tmp_path / "unseen_star.png"
    Image.fromarray(star_sign(7)).save(unseen)
    page = open_page(browser, url, "/predict", "Make prediction")
    choose(page, "Model", next(o for o in options(page, "Model") if o.startswith("main-inc")))
    page.locator("input[type='file']").set_input_files([str(unseen)])
    page.get_by_text(re.compile(r"unseen_star.png\s*\u2192\s*48: Purple star")).wait_for(timeout=RUN_MS)
    shot(page, "8_predicted")
    page.close()


def test_visualise_map_new_images_flagged_group_and_selection(browser, app, monkeypatch):
    url, root = app
    monkeypatch.setenv("TSW_DATA_ROOT", str(root))
    from core.data import datasets
    from core.data.images import encode_png
    split = datasets.load_split("Sample48", "test")
    files = []
    for k, im in enumerate(split.images[split.labels == 14][:3]):
        (root / f"stop{k}.png").write_bytes(encode_png(im))
        files.append(str(root / f"stop{k}.png"))
    for k in range(3):
        Image.fromarray(star_sign(20 + k)).save(root / f"star{k}.png")
        files.append(str(root / f"star{k}.png"))
    page = open_page(browser, url, "/visualise", "Visualise classes", 2000)
    choose(page, "Model", next(o for o in options(page, "Model") if o.startswith("benchmark (")))
    choose(page, "Dataset", "Sample48 (embedded sample)")
    page.get_by_role("button", name="Compute map").click()
    page.get_by_text("Colour by").wait_for(timeout=RUN_MS)
    wait_for_app(page)
    act(page, page.get_by_test_id("stRadioGroup").last.get_by_text("upload", exact=True).click)
    page.locator("input[type='file']").set_input_files(files)
    page.get_by_text(re.compile(r"likely a new class")).first.wait_for(timeout=RUN_MS)
    wait_for_app(page)
    groups = page.get_by_test_id("stMarkdownContainer").filter(has_text=re.compile(r"Group \d")).all_inner_texts()
    assert any("likely a new class" in g and "(3 images)" in g for g in groups), groups
    chart = page.locator("[class*='st-key-vis_map_'] .js-plotly-plot")
    chart.scroll_into_view_if_needed()
    settle(page)  # the map drawn and at rest: drag on it
    box = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.8, steps=10)
    page.mouse.up()
    page.get_by_text(re.compile(r"\d+ images? selected")).wait_for()
    wait_for_app(page)
    shot(page, "9_visualise")
    page.close()
