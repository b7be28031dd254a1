"""A polling fragment's rerun must not undo a click on another page (the race behind a lost navigation)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests

import ui.nav as nav


def _ctx(requests: ScriptRequests, page: str = "evaluate-hash") -> SimpleNamespace:
    return SimpleNamespace(script_requests=requests, page_script_hash=page)


def test_streamlit_folds_a_later_rerun_over_a_pending_navigation(unpatched):
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


@pytest.fixture
def unpatched(monkeypatch):
    """Streamlit's own folding (Home.py may have installed the guard in this process already)."""
    current = ScriptRequests._request_rerun_locked
    monkeypatch.setattr(ScriptRequests, "_request_rerun_locked", getattr(current, "original", current))


def _timer_tick(page: str) -> RerunData:
    return RerunData(page_script_hash=page, fragment_id="progress-fragment", is_auto_rerun=True)


def test_streamlit_folds_a_timer_tick_over_a_pending_navigation(unpatched):
    """Why the guard exists: the old page's fragment timer, arriving while the click waits, wins."""
    requests = ScriptRequests()
    requests.request_rerun(RerunData(page_script_hash="predict-hash"))  # the user's click
    requests.request_rerun(_timer_tick("evaluate-hash"))  # the Evaluate page's 1 s progress timer
    assert requests._rerun_data.page_script_hash == "evaluate-hash"


def test_keep_navigation_over_timers_drops_the_tick_and_nothing_else(unpatched):
    nav.keep_navigation_over_timers()
    nav.keep_navigation_over_timers()  # installing twice wraps once
    assert ScriptRequests._request_rerun_locked.original.__name__ == "_request_rerun_locked"
    requests = ScriptRequests()
    requests.request_rerun(RerunData(page_script_hash="predict-hash"))
    requests.request_rerun(_timer_tick("evaluate-hash"))
    assert requests._rerun_data.page_script_hash == "predict-hash"  # the click stands
    assert requests._rerun_data.fragment_id_queue == []  # a full run of the new page, not a fragment
    requests.request_rerun(RerunData(page_script_hash="improve-hash"))  # another click: the newer one wins
    assert requests._rerun_data.page_script_hash == "improve-hash"
    alone = ScriptRequests()
    alone.request_rerun(_timer_tick("evaluate-hash"))  # nothing pending: the tick runs its fragment
    assert alone._rerun_data.page_script_hash == "evaluate-hash"
    assert alone._rerun_data.fragment_id_queue == ["progress-fragment"]
    same = ScriptRequests()
    same.request_rerun(RerunData(page_script_hash="evaluate-hash", widget_states=None))  # a click on this page
    same.request_rerun(_timer_tick("evaluate-hash"))
    assert same._rerun_data.page_script_hash == "evaluate-hash"


def test_no_script_context_means_no_navigation(monkeypatch):
    monkeypatch.setattr(nav, "get_script_run_ctx", lambda: None)
    assert nav.navigation_pending() is False
