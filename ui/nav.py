"""Rerun a page without undoing the user's navigation (a workaround for Streamlit folding requests)."""
from __future__ import annotations

import streamlit as st
from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequestType
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx


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
