"""A polling fragment's rerun must not undo a click on another page (the race behind a lost navigation)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests, ScriptRequestType

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


def _guarded(monkeypatch, shown: str | None = None) -> ScriptRequests:
    """A session's requests with the guard installed, as Home.py leaves them after showing page ``shown``."""
    requests = ScriptRequests()
    monkeypatch.setattr(nav, "get_script_run_ctx", lambda: _ctx(requests, shown) if shown else None)
    nav.keep_navigation_over_timers()
    return requests


def test_the_guard_installs_once_and_notes_the_page_shown(unpatched, monkeypatch):
    requests = _guarded(monkeypatch, "predict-hash")
    nav.keep_navigation_over_timers()  # every run calls it: one wrapper, the page noted again
    assert ScriptRequests._request_rerun_locked.original.__name__ == "_request_rerun_locked"
    assert getattr(requests, nav._SHOWN) == "predict-hash"


def test_a_tick_over_a_pending_click_is_dropped(unpatched, monkeypatch):
    requests = _guarded(monkeypatch)
    requests.request_rerun(RerunData(page_script_hash="predict-hash"))  # the click waits
    requests.request_rerun(_timer_tick("evaluate-hash"))  # the page being left ticks
    assert requests._rerun_data.page_script_hash == "predict-hash"  # the click stands
    assert requests._rerun_data.fragment_id_queue == []  # a full run of the new page, not a fragment
    requests.request_rerun(RerunData(page_script_hash="improve-hash"))  # another click: the newer one wins
    assert requests._rerun_data.page_script_hash == "improve-hash"


def test_a_tick_of_the_page_left_cannot_interrupt_the_new_page(unpatched, monkeypatch):
    """The new page runs (nothing pending); the old page's tick would preempt it to rerun the old fragment."""
    requests = _guarded(monkeypatch, shown="predict-hash")
    requests.request_rerun(_timer_tick("evaluate-hash"))
    assert requests._state == ScriptRequestType.CONTINUE  # dropped: the Make prediction run goes on
    requests.request_rerun(_timer_tick("predict-hash"))  # the shown page's own fragment still ticks
    assert requests._rerun_data.page_script_hash == "predict-hash"
    assert requests._rerun_data.fragment_id_queue == ["progress-fragment"]


def test_clicks_and_unknown_pages_pass_as_streamlit_has_them(unpatched, monkeypatch):
    requests = _guarded(monkeypatch, shown="predict-hash")
    requests.request_rerun(RerunData(page_script_hash="evaluate-hash"))  # a click back: not a tick
    assert requests._rerun_data.page_script_hash == "evaluate-hash"
    fresh = _guarded(monkeypatch)  # a new session's requests: no page shown yet
    fresh.request_rerun(_timer_tick("evaluate-hash"))
    assert fresh._rerun_data.fragment_id_queue == ["progress-fragment"]


def test_no_script_context_means_no_navigation(monkeypatch):
    monkeypatch.setattr(nav, "get_script_run_ctx", lambda: None)
    assert nav.navigation_pending() is False
