"""A polling fragment's rerun must not undo a click on another page (the race behind a lost navigation)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests

import ui.nav as nav


def _ctx(requests: ScriptRequests, page: str = "evaluate-hash") -> SimpleNamespace:
    return SimpleNamespace(script_requests=requests, page_script_hash=page)


def test_streamlit_folds_a_later_rerun_over_a_pending_navigation():
    """Why the guard exists: the newer request's page wins, so an st.rerun() after a click keeps the old page."""
    requests = ScriptRequests()
    requests.request_rerun(RerunData(page_script_hash="predict-hash"))  # the user's click
    requests.request_rerun(RerunData(page_script_hash="evaluate-hash"))  # the fragment's st.rerun()
    assert requests._rerun_data.page_script_hash == "evaluate-hash"


@pytest.mark.parametrize("pending, expected", [(None, False), ("evaluate-hash", False), ("predict-hash", True)])
def test_navigation_pending(monkeypatch, pending, expected):
    requests = ScriptRequests()
    if pending:
        requests.request_rerun(RerunData(page_script_hash=pending))
    monkeypatch.setattr(nav, "get_script_run_ctx", lambda: _ctx(requests))
    assert nav.navigation_pending() is expected


def test_rerun_page_skips_while_the_user_leaves(monkeypatch):
    calls = []
    monkeypatch.setattr(nav.st, "rerun", lambda: calls.append("rerun"))
    requests = ScriptRequests()
    monkeypatch.setattr(nav, "get_script_run_ctx", lambda: _ctx(requests))
    nav.rerun_page()
    assert calls == ["rerun"]  # nothing pending: the page reruns
    requests.request_rerun(RerunData(page_script_hash="predict-hash"))
    nav.rerun_page()
    assert calls == ["rerun"]  # a click on another page is pending: leave it alone
    assert requests._rerun_data.page_script_hash == "predict-hash"


def test_no_script_context_means_no_navigation(monkeypatch):
    monkeypatch.setattr(nav, "get_script_run_ctx", lambda: None)
    assert nav.navigation_pending() is False
