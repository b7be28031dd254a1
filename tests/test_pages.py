"""AppTest per page: start from Home.py (the router), switch page, assert no exception and the visible result."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import jobs, registry

@pytest.fixture(autouse=True)
def router_mode(monkeypatch):
    """Run every AppTest through Home.py's st.navigation router, as the real server does after its first run.

    AppTest re-creates its PagesManager on every run, which switches Streamlit back to the legacy pages/-folder
    mode (the page script alone); our ``ensure_router`` would then rerun and swallow the click being tested.
    """
    from streamlit.runtime.pages_manager import PagesManager
    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


HOME = str(Path(__file__).resolve().parent.parent / "Home.py")


def app() -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def open_page(page: str) -> AppTest:
    at = app()
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def test_home_lists_datasets_and_routes_to_every_page():
    at = app()
    assert at.title[0].value == "Traffic-sign model workbench"
    table = at.dataframe[0].value
    assert "Sample48" in set(table["dataset"])
    assert int(table.loc[table["dataset"] == "Sample48", "classes"].iloc[0]) == 48
    assert any("python -m core datasets build" in i.value for i in at.info)


@pytest.mark.parametrize("page, title", [("pages/visualise.py", "Visualise classes"),
                                         ("pages/add_classes.py", "Add new classes"),
                                         ("pages/add_images.py", "Add new images"),
                                         ("pages/added_images.py", "Added images")])
def test_planned_pages_say_what_they_will_do(page, title):
    at = open_page(page)
    assert at.title[0].value == title
    assert "will" in at.info[0].value


def test_explore_shows_a_page_of_thumbnails_counts_and_details():
    at = open_page("pages/explore.py")
    at.selectbox(key="dataset").set_value("Sample48").run()
    at.selectbox(key="explore_class").set_value(14).run()
    assert not at.exception
    assert any("Page **1 / 1**" in m.value and "12 images" in m.value for m in at.markdown)
    details = " ".join(m.value for m in at.markdown)
    assert "**Class** 14: Stop" in details and "**Split** train" in details
    assert len(at.get("plotly_chart")) == 1
    assert len(at.get("image")) >= 12 + 2  # the page of thumbnails, the chosen image and its pictogram


def test_explore_pages_forward_and_back():
    at = open_page("pages/explore.py")
    at.selectbox(key="dataset").set_value("Sample48").run()
    at.selectbox(key="explore_page_size").set_value(96).run()
    assert any("Page **1 / 6**" in m.value for m in at.markdown)  # 576 train images
    at.button(key="explore_next").click().run()
    assert any("Page **2 / 6**" in m.value for m in at.markdown)
    at.button(key="explore_prev").click().run()
    assert any("Page **1 / 6**" in m.value for m in at.markdown)


def test_improve_trains_a_model_end_to_end_on_the_sample():
    at = open_page("pages/improve.py")
    at.radio(key="improve_mode").set_value("scratch").run()
    at.selectbox(key="improve_dataset").set_value("Sample48").run()
    at.text_input(key="improve_name").set_value("apptest-model")
    at.number_input(key="improve_epochs").set_value(1)
    at.checkbox(key="improve_augment").check()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any("Started training job" in s.value for s in at.success), [e.value for e in at.error]
    job_id = at.session_state["improve_job"]
    assert jobs.wait(job_id, timeout=120)["status"] == "done"
    assert "apptest-model" in [m.name for m in registry.list_models()]
    at.run()
    assert any("apptest-model" in s.value for s in at.success)


def test_improve_refuses_a_duplicate_name_with_a_message():
    at = open_page("pages/improve.py")
    at.radio(key="improve_mode").set_value("scratch").run()
    at.selectbox(key="improve_dataset").set_value("Sample48").run()
    at.text_input(key="improve_name").set_value("bad name!")
    at.button[0].click().run()
    assert not at.exception
    assert any("model name" in e.value for e in at.error)
