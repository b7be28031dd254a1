"""How long a test waits for something before calling it failed: every ceiling of the suite in one place.

No test sleeps for a fixed time and then looks. Each waits for its condition (an element, a run's status, a file)
and goes on the moment it holds, so a ceiling costs nothing when things work: it only bounds how long a failure
takes to be reported. The ceilings are generous (both cores of a 2-core machine busy, or one core) and scale with
``TSW_TEST_TIMEOUT_SCALE`` (e.g. ``3`` on a machine three times slower still).
"""
from __future__ import annotations

import os
import time
from typing import Callable


def _scale() -> float:
    raw = os.environ.get("TSW_TEST_TIMEOUT_SCALE", "") or "1"
    try:
        scale = float(raw)
    except ValueError:
        scale = 0.0
    if not scale > 0:
        raise ValueError(f"TSW_TEST_TIMEOUT_SCALE must be a number above 0, got {raw!r}; unset it or use e.g. 2")
    return scale


#: Multiplies every ceiling below.
SCALE = _scale()
#: A page reacting to an action: a script run ending, a dialog opening, a navigation, a small run seen in the page.
PAGE_S = 120.0 * SCALE
#: A run ending: a training, an evaluation, an import, a map; a CLI process doing one.
RUN_S = 600.0 * SCALE
#: A cold ``streamlit run`` answering its health check.
START_S = 240.0 * SCALE
#: The same in milliseconds, for Playwright.
PAGE_MS, RUN_MS, START_MS = (int(s * 1000) for s in (PAGE_S, RUN_S, START_S))
#: Between two looks at a condition checked by polling (not how long anything may take).
POLL_S = 0.05


def wait_until(condition: Callable[[], object], *, what: str, timeout: float = RUN_S, poll: float = POLL_S):
    """Poll ``condition()`` until it returns something true, and return that; fail, naming ``what``, after
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(poll)
