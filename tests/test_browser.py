"""User flows in a real browser: Playwright drives Debian's Chromium against ``streamlit run`` on localhost."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from playwright.sync_api import expect

from browser_support import (SHOTS, act, browser, choose, new_page, options, screenshot,  # noqa: F401 (fixture)
                             selected, shown_sidebar, sidebar_seen, start_scratch_training, streamlit_server, visit,
                             wait_for_app, wait_for_count, wait_for_sidebar, wait_for_toast, watch_sidebar,
                             watch_toasts)
from waits import RUN_MS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-data")
    os.environ["TSW_DATA_ROOT"] = str(root)
    from core.data.built import SplitToWrite, write_dataset
    rng = np.random.default_rng(0)
    n = 30  # one class with 30 images: three pages of 12
    imgs = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(n)]
    write_dataset("Paging", {"train": SplitToWrite(imgs, np.full(n, 14), [f"img_{i:02d}.png" for i in range(n)],
                                                   ["synthetic"] * n, [""] * n, np.full((n, 2), 32))},
                  classes={14: "Stop"}, source="synthetic", recipe="browser test")
    with streamlit_server(root) as url:
        yield url, root


#: Streamlit's menu: Home.py's st.navigation, page titles in sections. Never the files' own names.
MENU = {"Home", "Explore dataset", "Visualise classes", "Add new classes", "Add new images", "Added images",
        "Evaluate models", "Improve model", "Make more like these", "Make prediction",
        "Detect signs"}
#: Home's "Start here" links and the heading of the page each opens.
START_HERE = [("Explore dataset", "Explore dataset"), ("Evaluate models", "Evaluate models"),
              ("Add new classes", "Add new classes")]
#: Home's heading.
HOME = "Traffic-sign model workbench"


def test_home_cold_start_menu_and_start_here(browser, app):
    """The first visit to a fresh server: the menu lists the pages by title, never (not even for a moment) by their
    file names, and each "Start here" link opens its page."""
    url, _ = app
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(browser)
    watch_sidebar(page)
    page.goto(url)
    wait_for_sidebar(page, MENU)  # however long the cold start takes
    page.get_by_text("Start here").wait_for()
    wait_for_app(page)
    assert sidebar_seen(page) == MENU  # everything ever listed was a title
    screenshot(page, SHOTS / "home.png")
    for label, heading in START_HERE:
        visit(page, page.get_by_test_id("stMain").get_by_role("link", name=label), heading)
        assert page.get_by_test_id("stException").count() == 0, heading
        visit(page, page.get_by_test_id("stSidebar").get_by_role("link", name="Home"), HOME)
        page.get_by_text("Start here").wait_for()
    assert sidebar_seen(page) == MENU
    page.close()


def test_a_first_visit_straight_to_a_page_url_runs_it_under_the_router(browser, tmp_path):
    """A fresh server whose first visitor opens /evaluate: Home.py takes over and routes it (its page config, the
    titled menu), never Streamlit's legacy pages-folder mode (the page alone, file names in the menu), even for the
    moment before ``ui.nav.ensure_router`` hands the visit to the router."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    with streamlit_server(tmp_path) as url:
        page = new_page(browser)
        watch_sidebar(page)
        page.goto(url + "/evaluate")
        page.get_by_role("heading", name="Evaluate models").wait_for()
        wait_for_sidebar(page, MENU)
        wait_for_app(page)
        assert shown_sidebar(page) == MENU and sidebar_seen(page) == MENU
        assert page.title() == "Traffic-sign workbench"  # Home.py's st.set_page_config ran: Home.py routed
        assert page.url.endswith("/evaluate") and page.get_by_test_id("stException").count() == 0
        screenshot(page, SHOTS / "first_visit_evaluate.png", full_page=False)
        page.close()


def test_explore_pages_through_a_class(browser, app):
    url, _ = app
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(browser)
    page.goto(url + "/explore")
    page.get_by_role("heading", name="Explore dataset").wait_for()
    wait_for_app(page)
    choose(page, "Dataset", "Paging")
    choose(page, "Class", "14: Stop")
    choose(page, "Per page", "12")
    page.get_by_text(re.compile(r"Page\s*1\s*/\s*3")).wait_for()
    wait_for_count(page.get_by_test_id("stImage"), 12)
    act(page, page.get_by_role("button", name=re.compile("Next")).click)
    page.get_by_text(re.compile(r"Page\s*2\s*/\s*3")).wait_for()
    act(page, page.get_by_role("button", name=re.compile("Next")).click)
    page.get_by_text(re.compile(r"Page\s*3\s*/\s*3")).wait_for()
    wait_for_app(page)
    expect(page.get_by_role("button", name=re.compile("Next"))).to_be_disabled()
    page.get_by_text(re.compile("img_2[4-9]")).first.wait_for(state="attached")  # the last page's images
    screenshot(page, SHOTS / "explore_paging.png")
    assert page.get_by_test_id("stException").count() == 0
    page.close()


def test_explore_embedded_sample_shows_details_and_chart(browser, app):
    url, _ = app
    page = new_page(browser, height=1600)
    page.goto(url + "/explore")
    page.get_by_role("heading", name="Explore dataset").wait_for()
    wait_for_app(page)
    choose(page, "Dataset", "Sample48 (embedded sample)")
    choose(page, "Class", "14: Stop")
    page.get_by_test_id("stPlotlyChart").first.wait_for()
    screenshot(page, SHOTS / "explore_sample.png")
    # Clicking a thumbnail's caption opens the image's details in a dialog.
    act(page, page.locator(".st-key-explore_thumb-2 button").first.click)
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("reference pictogram").wait_for()
    expect(dialog).to_contain_text("14: Stop")
    screenshot(page, SHOTS / "explore_details_dialog.png", full_page=False)
    assert page.get_by_test_id("stException").count() == 0
    page.close()


def test_improve_trains_a_model_and_shows_its_curves(browser, app, monkeypatch):
    url, root = app
    monkeypatch.setenv("TSW_DATA_ROOT", str(root))
    page = new_page(browser, height=1400)
    page.goto(url + "/improve")
    page.get_by_role("heading", name="Improve model").wait_for()
    wait_for_app(page)
    start_scratch_training(page, "browser-model", 1)
    page.get_by_text(re.compile(r"Model browser-model saved")).wait_for(timeout=RUN_MS)
    page.get_by_test_id("stPlotlyChart").first.wait_for()
    # One epoch still draws a curve: the batch means as a line beside the epoch point.
    batches = """() => {
        const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
        const t = gd && gd._fullData && gd._fullData.find(d => d.name === 'batches');
        return t ? t.x.length : 0; }"""
    page.wait_for_function(f"() => ({batches})() >= 2")
    assert page.evaluate(batches) >= 2
    screenshot(page, SHOTS / "improve_trained.png")
    assert page.get_by_test_id("stException").count() == 0
    from core.learning import registry
    assert "browser-model" in [m.name for m in registry.list_models()]
    page.close()


def test_evaluate_confusion_cell_ig_and_anchor(browser, app, monkeypatch):
    url, root = app
    monkeypatch.setenv("TSW_DATA_ROOT", str(root))
    page = new_page(browser, height=1400)
    page.goto(url + "/evaluate")
    page.get_by_role("heading", name="Evaluate models").wait_for()
    wait_for_app(page)
    choose(page, "Model", next(o for o in options(page, "Model") if o.startswith(SHIPPED)))
    choose(page, "Dataset", "Sample48 (embedded sample)")
    # The 43-class benchmark on a 48-class dataset: the page says so and offers the model's classes only.
    page.get_by_text(re.compile(r"predicts 43 classes, Sample48 has 48")).wait_for()
    page.get_by_text("only the model's classes").wait_for()
    watch_toasts(page)
    page.get_by_role("button", name="Run evaluation").click()
    # The finished report is announced and opened at once.
    wait_for_toast(page, "Report ready")
    page.get_by_text("Confusion matrix").wait_for()
    wait_for_app(page)
    from core.analysis import reports
    latest = reports.load_report(reports.list_reports()[0]["id"])
    worst = reports.worst_confusion(latest)
    assert worst is not None
    assert selected(page, "Cell: true class").startswith(f"{worst[0]}:")  # opens on the largest confusion
    assert selected(page, "Cell: predicted class").startswith(f"{worst[1]}:")
    # Open a cell by clicking it in the heatmap: the diagonal cell of class 14 (Stop).
    chart = page.locator(".st-key-eval_confusion")
    chart.scroll_into_view_if_needed()
    # Each non-empty cell is a square marker; find the one plotly drew for (true 14, predicted 14).
    page.wait_for_function(f"() => ({CELL_INDEX})([14, 14]) >= 0")
    chart.locator("g.points path.point").first.wait_for()
    point = chart.locator("g.points path.point").nth(cell_index(page, 14, 14))
    point.click(force=True)
    page.get_by_text(re.compile(r"images? of class 14: .+ predicted as 14: ")).wait_for()
    wait_for_app(page)
    # Clicking a mistake's thumbnail opens it with its IG heat map and colour scale.
    page.get_by_role("heading", name="Misclassified images").scroll_into_view_if_needed()
    page.locator(".st-key-wrong-0 button").first.click()
    dialog = page.get_by_role("dialog")
    dialog.locator(".js-plotly-plot .colorbar").wait_for(timeout=RUN_MS)
    expect(dialog).to_contain_text("Predicted")
    screenshot(page, SHOTS / "evaluate_thumbnail_dialog.png", full_page=False)
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    wait_for_app(page)
    # A misclassified image's Integrated Gradients on request; then run an Anchor job.
    page.get_by_role("heading", name="Misclassified images").scroll_into_view_if_needed()
    page.get_by_role("button", name="Explain with Integrated Gradients").click()
    page.locator(".st-key-eval_ig_fig .colorbar").wait_for(timeout=RUN_MS)
    page.get_by_role("button", name="Run Anchors").click()
    page.get_by_text(re.compile(r"Anchor: precision \d")).wait_for(timeout=RUN_MS)
    screenshot(page, SHOTS / "evaluate_report.png")
    assert page.get_by_test_id("stException").count() == 0
    page.close()


SHIPPED = "benchmark"


#: JS: the index of the confusion chart's marker for cell [true, predicted], from plotly's own data; -1 until drawn.
CELL_INDEX = """([t, p]) => {
    const gd = document.querySelector('.st-key-eval_confusion .js-plotly-plot');
    const tr = gd && gd._fullData && gd._fullData[0];
    if (!tr) return -1;
    for (let i = 0; i < tr.x.length; i++) if (tr.x[i] === p && tr.y[i] === t) return i;
    return -1;
}"""


def cell_index(page, true_id: int, pred_id: int) -> int:
    """Index of the marker for a confusion cell, read from plotly's own data in the page."""
    return page.evaluate(CELL_INDEX, [true_id, pred_id])


def test_predict_upload_shows_top5_ig_and_refuses_a_bad_file(browser, app, tmp_path):
    url, _ = app
    from core.data.datasets import get_dataset, list_files
    sample = get_dataset("Sample48")
    stop = sample.path / list_files(sample, "test", 14)[0]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    page = new_page(browser, height=1400)
    page.goto(url + "/predict")
    page.get_by_role("heading", name="Make prediction").wait_for()
    wait_for_app(page)
    page.locator("input[type='file']").set_input_files([str(stop), str(bad)])
    page.get_by_text(re.compile(r"1 image predicted, 1 refused")).wait_for(timeout=RUN_MS)
    page.locator("[class*='st-key-predict_ig_'] .colorbar").wait_for(timeout=RUN_MS)
    page.get_by_test_id("stAlertContentError").get_by_text(re.compile("broken.png: ")).wait_for()
    screenshot(page, SHOTS / "predict.png")
    errors = page.get_by_test_id("stAlertContentError").all_inner_texts()
    assert len(errors) == 1 and "broken.png" in errors[0], errors
    with page.expect_download() as download:
        page.get_by_role("button", name="Download results (CSV)").click()
    rows = [line.split(",") for line in open(download.value.path(), encoding="utf-8").read().splitlines()]
    header = rows[0]
    assert header[:2] == ["file", "class_id"] or "file" in header, header
    by_file = {r[header.index("file")]: r for r in rows[1:]}
    assert set(by_file) == {stop.name, "broken.png"}
    assert by_file[stop.name][header.index("class_id")] == "14"
    assert page.get_by_test_id("stException").count() == 0
    page.close()
