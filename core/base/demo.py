"""Demo mode for public hosting: caps and ownership rules that apply only when :func:`enabled` is true.

On (``TSW_DEMO`` = ``1``, ``true`` or ``yes``) in the Streamlit Community Cloud deployment, through the app's
secret ``TSW_DEMO = "1"`` (Streamlit copies root-level secrets into ``os.environ`` when it loads them; the page
layer loads them first thing, see ``ui.nav.start_session``). Without the variable, the mode is also on when the
project runs from ``/mount/src/``, where the Cloud clones every app's repository (an observed sign, not a
documented one: the secret is the switch to rely on). ``TSW_DEMO=0`` (or any other value) forces it off. Off,
nothing here changes anything: every check returns at once.

What demo mode adds, each checked where the write happens and before anything is written:

- caps on training (:data:`DEMO_MAX_EPOCHS`, :data:`DEMO_MAX_TRAIN_IMAGES`), on the bytes a session uploads
  (:data:`DEMO_SESSION_UPLOAD_BYTES`, a zip counted by its expanded size) and on the disk all workspaces use
  (:data:`DEMO_WORKSPACES_DISK_BYTES`), see :mod:`core.data.quotas`;
- ownership: a workspace, model or report made in a demo session records that session (:func:`owner_fields`);
  a session sees only its own workspaces besides shared ones (:func:`visible`) and changes or deletes only what
  it made (:func:`check_writable`); shared things (built datasets, shipped models, anything made outside a
  session) are read-only; demo workspaces are swept after :data:`DEMO_WORKSPACE_TTL_S`;
- a bounded run history (:data:`DEMO_MAX_RUN_RECORDS`, :func:`core.base.run_history.prune_runs`).

The session is a :class:`contextvars.ContextVar` set by the page layer at the top of every script run
(:func:`set_session`), with a resolver for code that runs outside the script's context (a fragment's rerun);
tests and the CLI use :func:`session_scope`. Code outside any session (the CLI, a run's worker thread whose
request was checked in its session) may change session-owned things but never shared ones.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from pathlib import Path
from typing import Callable, Iterator

from core.base import config

ENV = "TSW_DEMO"
ON_VALUES = ("1", "true", "yes")
#: Streamlit Community Cloud clones each app's repository under this folder.
CLOUD_MOUNT = Path("/mount/src")

#: Most epochs one training may ask for (the Improve page's default, 10, fits).
DEMO_MAX_EPOCHS = 10
#: Most training images one training may read per epoch (the embedded sample has 576, plus room for uploads).
DEMO_MAX_TRAIN_IMAGES = 2_000
#: Bytes one session may upload in all (a zip counts as its members' expanded size); a 26 MB file is refused.
DEMO_SESSION_UPLOAD_BYTES = 20 * 2**20
#: Bytes all workspaces together may hold on disk (added images, overlays).
DEMO_WORKSPACES_DISK_BYTES = 256 * 2**20
#: Seconds after its creation a workspace made in a demo session is swept, with everything added to it.
DEMO_WORKSPACE_TTL_S = 2 * 3600
#: Run records kept in the store; the oldest finished ones (and their run folders) beyond it are pruned.
DEMO_MAX_RUN_RECORDS = 200
#: The field that records the session a workspace, model or report was made in.
SESSION_FIELD = "session"

_SESSION: contextvars.ContextVar[str | None] = contextvars.ContextVar("tsw_demo_session", default=None)
_resolver: Callable[[], str | None] | None = None


class DemoRefused(ValueError):
    """A request the public demo does not allow; the message says which cap or rule, and what to do instead."""


def enabled() -> bool:
    """Whether demo mode is on: ``TSW_DEMO`` set to 1/true/yes, or unset and running on Streamlit Community
    Cloud; any other value of ``TSW_DEMO`` (``0``) turns it off."""
    value = os.environ.get(ENV, "").strip().lower()
    if value:
        return value in ON_VALUES
    return on_streamlit_cloud()


def on_streamlit_cloud(root: Path | None = None) -> bool:
    """Whether the project (or ``root``) runs from a Community Cloud checkout (``/mount/src/<repository>``)."""
    return CLOUD_MOUNT in Path(root if root is not None else config.PROJECT_ROOT).parents


# -- the session ---------------------------------------------------------------------------------------------------

def current_session() -> str | None:
    """The demo session this code runs for, or None (the CLI, a worker thread, a test outside a scope)."""
    session = _SESSION.get()
    if session is None and _resolver is not None:
        session = _resolver()
    return session


def set_session(session_id: str | None) -> None:
    """Make ``session_id`` the session of the current context (the page layer, at the top of every run)."""
    _SESSION.set(session_id)


def set_session_resolver(resolver: Callable[[], str | None] | None) -> None:
    """A function that names the session where the context variable is unset (the page layer's, for fragment
    reruns); it must return None outside a session (a worker thread)."""
    global _resolver
    _resolver = resolver


@contextlib.contextmanager
def session_scope(session_id: str | None) -> Iterator[None]:
    """Run a block as session ``session_id`` (tests, the CLI, a run's worker for the session that started it)."""
    token = _SESSION.set(session_id)
    try:
        yield
    finally:
        _SESSION.reset(token)


# -- ownership -----------------------------------------------------------------------------------------------------

def owner_fields() -> dict:
    """What a new workspace, model or report records about its maker: ``{"session": id}`` in a demo session,
    else nothing (it is shared)."""
    session = current_session() if enabled() else None
    return {SESSION_FIELD: session} if session else {}


def visible(owner: str | None) -> bool:
    """Whether something made in session ``owner`` (None: shared) is listed for the current session: in demo
    mode a session sees shared things and its own; code outside a session sees everything."""
    if owner is None or not enabled():
        return True
    session = current_session()
    return session is None or session == owner


def check_writable(owner: str | None, *, what: str, fix: str) -> None:
    """Refuse (:class:`DemoRefused`) to change or delete ``what``, made in session ``owner`` (None: shared), unless
    the current session made it. ``fix`` says what to do instead."""
    if not enabled():
        return
    if owner is None:
        raise DemoRefused(f"{what} is shared in this public demo and read-only; {fix}")
    session = current_session()
    if session is not None and session != owner:
        raise DemoRefused(f"{what} belongs to another session of this public demo; only that session can change "
                          f"or delete it; {fix}")


def refuse_shared_write(what: str) -> None:
    """Refuse a write to something every session shares (building a dataset) in demo mode."""
    check_writable(None, what=what, fix=f"run it without demo mode ({ENV}=0) on your own machine")


# -- caps ----------------------------------------------------------------------------------------------------------

def check_epochs(epochs: int) -> None:
    if enabled() and epochs > DEMO_MAX_EPOCHS:
        raise DemoRefused(f"{epochs} epochs is above this public demo's cap of {DEMO_MAX_EPOCHS} epochs per "
                          f"training; choose at most {DEMO_MAX_EPOCHS}")


def check_train_images(n: int, *, dataset: str) -> None:
    """``n``: the training images one epoch would read."""
    if enabled() and n > DEMO_MAX_TRAIN_IMAGES:
        raise DemoRefused(f"training on {dataset} would read {n:,} training images per epoch, above this public "
                          f"demo's cap of {DEMO_MAX_TRAIN_IMAGES:,}; choose a smaller dataset (the embedded sample "
                          f"or a workspace of it), or set max_train_images to at most {DEMO_MAX_TRAIN_IMAGES:,}")


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def caps_summary() -> str:
    """The caps in one sentence, for the Home page's banner."""
    return (f"at most {DEMO_MAX_EPOCHS} epochs and {DEMO_MAX_TRAIN_IMAGES:,} training images per training, "
            f"{mib(DEMO_SESSION_UPLOAD_BYTES)} of uploads per session (a zip counts expanded), "
            f"{mib(DEMO_WORKSPACES_DISK_BYTES)} for all workspaces together; your workspaces are private to this "
            f"browser session and are deleted {DEMO_WORKSPACE_TTL_S // 3600} hours after you create them; shared "
            "datasets and shipped models are read-only")
