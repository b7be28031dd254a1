"""Routing helpers: keep Home.py's router in charge, and rerun a page without undoing the user's navigation."""
from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests, ScriptRequestType
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx


def ensure_router() -> None:
    """Make sure Home.py's ``st.navigation`` router is in charge (each page calls this first).

    A process starts in Streamlit's legacy "pages/ folder" mode until ``st.navigation`` has run once; a first
    visit straight to a page URL (``/evaluate``) on a fresh server would then run the page alone, without the
    router. Switching the flag off and rerunning runs Home.py, which routes to the same page.
    """
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def navigation_pending() -> bool:
    """True when the user has asked for another page and that request waits for the current run to yield.

    Streamlit folds a pending request and a newer ``st.rerun()`` into one, taking the *newer* one's page: a
    polling fragment that reruns the app just after a click on another page would keep the user where they were.
    """
    ctx = get_script_run_ctx()
    requests = getattr(ctx, "script_requests", None) if ctx else None
    if requests is None:
        return False
    pending = getattr(requests, "_rerun_data", None)
    return (getattr(requests, "_state", None) == ScriptRequestType.RERUN and pending is not None
            and pending.page_script_hash not in ("", ctx.page_script_hash))


def rerun_page() -> None:
    """``st.rerun()`` for polling fragments: skipped when the user is leaving the page (the new page runs anyway)."""
    if navigation_pending():
        return
    st.rerun()


def _timer_over_navigation(pending: RerunData | None, new: RerunData) -> bool:
    """Whether ``new`` is a polling fragment's timer tick of one page arriving over a pending change to another."""
    return (pending is not None and new.is_auto_rerun and not pending.is_auto_rerun
            and bool(pending.page_script_hash) and new.page_script_hash != pending.page_script_hash)


def keep_navigation_over_timers() -> None:
    """Stop a fragment's timer tick (``st.fragment(run_every=...)``) from undoing a click on another page.

    The browser keeps sending the old page's timer ticks until the new page starts. While the server is busy,
    the click waits as a pending request, and Streamlit folds each later request into it with the *newer* page:
    under load, the user stayed on the page they left (the lost navigation seen in the load test). Installed once
    per process by Home.py; a tick that arrives over a pending page change is dropped (the new page runs anyway).
    """
    original = ScriptRequests._request_rerun_locked
    if getattr(original, "keeps_navigation", False):
        return

    def request_rerun_locked(self: ScriptRequests, new_data: RerunData) -> bool:
        pending = self._rerun_data if self._state == ScriptRequestType.RERUN else None
        if _timer_over_navigation(pending, new_data):
            return True
        return original(self, new_data)

    request_rerun_locked.keeps_navigation = True
    request_rerun_locked.original = original
    ScriptRequests._request_rerun_locked = request_rerun_locked
