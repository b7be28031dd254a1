"""Routing helpers: keep Home.py's router in charge, rerun a page without undoing the user's navigation, and name
the browser session for demo mode (:func:`start_session`)."""
from __future__ import annotations

import contextlib
import secrets

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests, ScriptRequestType
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from core.base import demo

#: The st.session_state key of this browser session's demo-mode identity.
SESSION_KEY = "_workbench_demo_session"


def start_session() -> None:
    """Load the app's secrets and name this browser session for demo mode; Home.py calls it first on every run.

    Streamlit copies root-level secrets into ``os.environ`` when it loads them, which is how the Cloud
    deployment's secret ``TSW_DEMO = "1"`` reaches :func:`core.base.demo.enabled`; a missing or unreadable secrets
    file is fine (demo mode then follows the environment). The session id is random, kept in ``st.session_state``
    (stable for the browser session) and set as the demo session of this script run; fragment reruns, which do
    not run Home.py, find it through the resolver.
    """
    with contextlib.suppress(Exception):  # no secrets file (the usual case locally), or a broken one
        st.secrets.load_if_toml_exists()
    if SESSION_KEY not in st.session_state:
        st.session_state[SESSION_KEY] = secrets.token_hex(8)
    demo.set_session(st.session_state[SESSION_KEY])
    demo.set_session_resolver(_session_of_this_script)


def _session_of_this_script() -> str | None:
    """The demo session of the script run on this thread; None on any other thread (a run's worker)."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    return st.session_state.get(SESSION_KEY)


def ensure_router() -> None:
    """Make sure Home.py's ``st.navigation`` router is in charge (each page calls this first).

    A process starts in Streamlit's legacy "pages/ folder" mode until ``st.navigation`` has run once; a first
    visit straight to a page URL (``/evaluate``) on a fresh server would then run the page alone, without the
    router. Switching the flag off and rerunning runs Home.py, which routes to the same page.
    """
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
    start_session()  # Home.py did already, unless this page runs alone


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


#: The attribute of a session's ScriptRequests naming the page its latest script run showed.
_SHOWN = "_workbench_page_shown"


def _stale_timer_tick(requests: ScriptRequests, new: RerunData) -> bool:
    """Whether ``new`` is a polling fragment's timer tick of a page the user has left: another page's change
    is pending, or another page is running or was the last one shown."""
    if not new.is_auto_rerun or not new.page_script_hash:
        return False
    pending = requests._rerun_data if requests._state == ScriptRequestType.RERUN else None
    if pending is not None and not pending.is_auto_rerun and pending.page_script_hash:
        return new.page_script_hash != pending.page_script_hash
    shown = getattr(requests, _SHOWN, "")
    return bool(shown) and new.page_script_hash != shown


def keep_navigation_over_timers() -> None:
    """Stop a fragment's timer tick (``st.fragment(run_every=...)``) from undoing a click on another page.

    The browser keeps sending the old page's timer ticks for a while after a click on another page. Streamlit
    folds a tick that arrives while the click waits into it, keeping the *newer* (old) page, and a tick that
    arrives while the new page runs interrupts it to rerun the old page's fragment: under load, the user stayed
    on the page they had left (the lost navigation seen in the load test). Called by Home.py on every run: it
    installs the guard once per process and notes the page this run shows; ticks of any other page are dropped.
    """
    ctx = get_script_run_ctx()
    if ctx is not None and getattr(ctx, "script_requests", None) is not None:
        setattr(ctx.script_requests, _SHOWN, ctx.page_script_hash)
    original = ScriptRequests._request_rerun_locked
    if getattr(original, "keeps_navigation", False):
        return

    def request_rerun_locked(self: ScriptRequests, new_data: RerunData) -> bool:
        if _stale_timer_tick(self, new_data):
            return True
        return original(self, new_data)

    request_rerun_locked.keeps_navigation = True
    request_rerun_locked.original = original
    ScriptRequests._request_rerun_locked = request_rerun_locked
