"""Routing helpers: keep Home.py's router in charge, and rerun a page without undoing the user's navigation."""
from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequestType
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
