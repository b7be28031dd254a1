"""AppTests through Home.py's router: the fixture that keeps Streamlit out of its legacy pages/ mode.

AppTest re-creates its PagesManager on every run, which switches Streamlit back to the legacy pages/-folder mode (the
page script alone); ``ui.nav.ensure_router`` would then rerun and swallow the click being tested. Import
``router_mode`` (autouse) or ``router`` (on request) into a test module.
"""
from __future__ import annotations

import pytest


def _route_through_home(monkeypatch) -> None:
    from streamlit.runtime.pages_manager import PagesManager
    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture(autouse=True)
def router_mode(monkeypatch):
    """Every AppTest of the module through Home.py's st.navigation router, as the real server runs pages."""
    _route_through_home(monkeypatch)


@pytest.fixture
def router(monkeypatch):
    """The same, for the tests that ask for it."""
    _route_through_home(monkeypatch)
