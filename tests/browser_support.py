"""A real ``streamlit run`` server on a free localhost port and a headless Debian Chromium driven by Playwright.

Every wait here is on a condition, never a pause: an element, the app idle, or the script run an action caused
having ended (read off the page's websocket, :class:`ScriptRuns`). Ceilings come from :mod:`waits`.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import weakref
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from waits import PAGE_MS, POLL_S, RUN_MS, START_S

expect.set_options(timeout=PAGE_MS)

PROJECT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SHOTS = PROJECT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(data_root: Path, *, timeout: float = START_S, workers: str = "process",
                     env: dict | None = None):
    """``streamlit run Home.py`` on a free port over ``data_root``; yields its URL. ``workers``: where its runs
    execute (``process``, the product's default, or ``thread``: the benchmark's before); ``env``: more environment
    variables for the server (``TSW_DEMO=1``)."""
    port = free_port()
    env = dict(os.environ, TSW_DATA_ROOT=str(data_root), NO_ALBUMENTATIONS_UPDATE="1", TSW_RUN_WORKERS=workers,
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", **(env or {}))
    log = open(data_root / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(PROJECT / "Home.py"),
                             "--server.headless", "true", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
                            cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=10) as r:  # one look; loop retries
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start: {(data_root / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


#: JS: the app is idle: its last script run has ended (Streamlit's own run state on the app's root element).
_IDLE = """() => { const app = document.querySelector("[data-testid='stApp']");
                   return !!app && app.getAttribute('data-test-script-state') === 'notRunning'; }"""


def wait_for_app(page, timeout: float = PAGE_MS) -> None:
    """Wait until Streamlit has finished running the script. Right after an action the run it causes may not have
    started yet: use :func:`act` (or wait for what the action shows) there."""
    page.wait_for_selector("[data-testid='stApp']", timeout=timeout)
    page.wait_for_function(_IDLE, timeout=timeout)


class ScriptRuns:
    """The script runs of one browser page's Streamlit session, read off its websocket: each rerun the user asked
    for (a click, a choice, a key press; timer ticks of polling fragments are not asked for), each run's start
    (whole script or which fragments) and end, in order."""

    def __init__(self) -> None:
        #: ("asked", fragment id or "") | ("started", run id, fragment ids) | ("ended" or "cut", run id), in order;
        #: "cut": ended early for a newer rerun
        self.events: list[tuple] = []

    def listen(self, socket) -> None:
        socket.on("framesent", self._on_sent)
        socket.on("framereceived", self._on_received)

    def _on_sent(self, payload) -> None:
        msg = _parse(BackMsg, payload)
        if msg is not None and msg.WhichOneof("type") == "rerun_script" and not msg.rerun_script.is_auto_rerun:
            self.events.append(("asked", msg.rerun_script.fragment_id))

    def _on_received(self, payload) -> None:
        msg = _parse(ForwardMsg, payload)
        kind = msg.WhichOneof("type") if msg is not None else None
        if kind == "new_session":
            self.events.append(("started", msg.metadata.run.script_run_id, tuple(msg.metadata.run.fragment_ids)))
        elif kind == "script_finished":
            cut = msg.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN
            self.events.append(("cut" if cut else "ended", msg.metadata.run.script_run_id))

    def mark(self) -> int:
        """A point in the sequence: what follows it happened after an action taken from now on."""
        return len(self.events)

    def asked_since(self, mark: int) -> bool:
        return any(e[0] == "asked" for e in self.events[mark:])

    def answered_since(self, mark: int) -> bool:
        """Whether a rerun asked for after ``mark`` has run: a run that started after the request, of the whole
        script or of the fragment asked for, has ended (not cut short for a newer rerun)."""
        asked: set[str] | None = None
        started: set[str] = set()
        for event in self.events[mark:]:
            if event[0] == "asked":
                asked = (asked or set()) | {event[1]}
            elif event[0] == "started" and asked is not None and (not event[2] or set(event[2]) & asked):
                started.add(event[1])
            elif event[0] == "ended" and event[1] in started:
                return True
        return False

    def ran_since(self, mark: int) -> bool:
        """Whether any run (a fragment's timer tick included) started after ``mark`` and has ended."""
        started = {e[1] for e in self.events[mark:] if e[0] == "started"}
        return any(e[0] == "ended" and e[1] in started for e in self.events[mark:])


def _parse(kind, payload):
    """``payload`` as a ``kind`` protobuf message, or None (a text frame, or not such a message)."""
    if isinstance(payload, str):
        return None
    msg = kind()
    try:
        msg.ParseFromString(payload)
    except Exception:  # noqa: BLE001  (not one: nothing to count)
        return None
    return msg


_RUNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def new_page(browser, *, width: int = 1400, height: int = 1100):
    """A browser page whose script runs are followed (:func:`act`, :func:`visit`), with the suite's ceilings as its
    default timeouts."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(PAGE_MS)
    runs = ScriptRuns()
    page.on("websocket", runs.listen)
    _RUNS[page] = runs
    return page


def script_runs(page) -> ScriptRuns:
    try:
        return _RUNS[page]
    except KeyError:
        raise ValueError("this page's script runs are not followed: open it with browser_support.new_page") from None


def _poll(page, condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Look at ``condition`` until it holds (Playwright delivers the page's events between looks)."""
    deadline = time.monotonic() + timeout / 1000
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout / 1000:.0f} s"
        page.wait_for_timeout(POLL_S * 1000)


def act(page, action: Callable[[], object], *, what: str = "the run after an action", timeout: float = PAGE_MS):
    """Do ``action`` (a click, a choice, a key press, an upload: something that asks for a rerun) and wait until the
    run it asked for has ended and the app is idle. Returns what ``action`` returned."""
    runs = script_runs(page)
    mark = runs.mark()
    result = action()
    _poll(page, lambda: runs.answered_since(mark), timeout=timeout,
          what=f"{what} ({'asked for, never ran' if runs.asked_since(mark) else 'no rerun asked for'})")
    wait_for_app(page, timeout)
    return result


def _same_page(url: str, href: str) -> bool:
    a, b = urlsplit(url), urlsplit(href)
    return (a.netloc, a.path.rstrip("/")) == (b.netloc, b.path.rstrip("/"))


def visit(page, link, heading: str, *, timeout: float = PAGE_MS) -> int:
    """Click the page link ``link`` and wait until that page (its ``heading`` shown) has run; returns the clicks it
    took. A click Streamlit dropped (a run started after it and ended, the app is idle, and the browser is still
    not at the link's URL) is clicked again: the page must still appear within ``timeout``, and the count shows
    that a click was lost."""
    runs = script_runs(page)
    target = page.get_by_role("heading", name=heading).first
    href = link.get_attribute("href")
    deadline = time.monotonic() + timeout / 1000
    clicks = 0
    while True:
        mark = runs.mark()
        link.click()
        clicks += 1
        while not target.is_visible():
            if href and runs.ran_since(mark) and page.evaluate(_IDLE) and not _same_page(page.url, href):
                break  # lost: nothing will bring the page now
            assert time.monotonic() < deadline, \
                f"page {heading!r} not shown within {timeout / 1000:.0f} s ({clicks} click(s); at {page.url})"
            page.wait_for_timeout(POLL_S * 1000)
        else:
            wait_for_app(page, max(1.0, (deadline - time.monotonic()) * 1000))
            return clicks


#: JS: what a screenshot shows has settled: fonts and images loaded, no element still a loading skeleton (a table
#: while its component loads), plotly charts drawn, no animation under way.
_SETTLED = """() => document.fonts.status === 'loaded'
    && !document.querySelector("[data-testid='stSkeleton']")
    && [...document.images].every(i => i.complete || i.loading === 'lazy')
    && [...document.querySelectorAll('.js-plotly-plot')].every(gd => gd._fullLayout && gd.querySelector('.main-svg'))
    && document.getAnimations().every(a => a.playState !== 'running'
                                          || a.effect?.getComputedTiming().iterations === Infinity)"""


def settle(page) -> None:
    """Wait until the app is idle and what it shows has settled (before a screenshot, or a drag on a chart)."""
    wait_for_app(page)
    page.wait_for_function(_SETTLED)


def screenshot(page, path: Path, *, full_page: bool = True) -> None:
    """Save a screenshot once what it shows has settled."""
    settle(page)
    page.screenshot(path=str(path), full_page=full_page)


#: Every toast text the page shows, kept in ``window.__toastsSeen`` (a toast goes after a few seconds, whenever the
#: test happens to look).
_TOAST_WATCH = """(() => {
  if (window.__toastsSeen) return;
  const seen = window.__toastsSeen = [];
  const record = () => document.querySelectorAll("[data-testid='stToast']").forEach(t => {
    const text = t.innerText.trim();
    if (text && !seen.includes(text)) seen.push(text);
  });
  new MutationObserver(record).observe(document, {subtree: true, childList: true, characterData: true});
})();"""


def watch_toasts(page) -> None:
    """Record every toast ``page`` shows from now on (read with :func:`wait_for_toast`)."""
    page.evaluate(_TOAST_WATCH)


def wait_for_toast(page, text: str, *, timeout: float = RUN_MS) -> None:
    """Wait until ``page`` has shown a toast containing ``text`` since :func:`watch_toasts`."""
    page.wait_for_function("text => (window.__toastsSeen || []).some(t => t.includes(text))", arg=text,
                           timeout=timeout)


def wait_for_count(locator, n: int, *, timeout: float = PAGE_MS) -> None:
    """Wait until ``locator`` matches at least ``n`` elements."""
    locator.nth(n - 1).wait_for(state="attached", timeout=timeout)


#: Every text the sidebar's links ever show, kept in ``window.__sidebarSeen`` by a MutationObserver that starts before
#: the app's own scripts: a test sees what was listed even for a moment, however fast or slow the machine.
_SIDEBAR_WATCH = """(() => {
  const seen = window.__sidebarSeen = [];
  const record = () => document.querySelectorAll("[data-testid='stSidebar'] a").forEach(a => {
    const text = a.innerText.trim().split("\\n").pop().trim();  // the label, after the icon's ligature
    if (text && !seen.includes(text)) seen.push(text);
  });
  new MutationObserver(record).observe(document, {subtree: true, childList: true, characterData: true});
})();"""


def watch_sidebar(page) -> None:
    """Record every sidebar link label of ``page`` from its next navigation on (read with :func:`sidebar_seen`)."""
    page.add_init_script(_SIDEBAR_WATCH)


def sidebar_seen(page) -> set[str]:
    """The sidebar link labels ``page`` has shown since :func:`watch_sidebar` (this document only)."""
    return set(page.evaluate("() => window.__sidebarSeen || []"))


def shown_sidebar(page) -> set[str]:
    """The sidebar link labels ``page`` shows now."""
    return set(page.evaluate("""() => [...document.querySelectorAll("[data-testid='stSidebar'] a")]
                                      .map(a => a.innerText.trim().split("\\n").pop().trim())"""))


def wait_for_sidebar(page, labels, timeout: float = PAGE_MS) -> None:
    """Wait until the sidebar lists a link for each of ``labels``."""
    page.wait_for_function(
        """labels => { const shown = [...document.querySelectorAll("[data-testid='stSidebar'] a")]
                         .map(a => a.innerText.trim().split("\\n").pop().trim());
                       return labels.every(l => shown.includes(l)); }""", arg=sorted(labels), timeout=timeout)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(f"Chromium missing at {CHROMIUM}")
        pytest.skip(f"Chromium missing at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _selectbox(page, label: str, key: str | None = None):
    """The selectbox labelled ``label`` (``key``: the one with that widget key, where labels repeat)."""
    if key is not None:
        return page.locator(f".st-key-{key}").get_by_test_id("stSelectbox")
    return page.get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True))


def _shown(box, label: str) -> str:
    lines = [t.strip() for t in box.inner_text().splitlines() if t.strip()]
    values = [t for t in lines if t != label] or [box.locator("input").first.input_value().strip()]
    return values[0]


def selected(page, label: str) -> str:
    """The shown value of the selectbox labelled ``label``."""
    box = _selectbox(page, label)
    box.scroll_into_view_if_needed()
    value = _shown(box, label)
    assert value, f"selectbox {label!r} shows no value: {box.inner_html()[:1500]}"
    return value


#: ms a selectbox click has to open its list before it is repeated (not a limit: that is the page ceiling)
REOPEN_MS = 5000


def open_list(page, box, label: str, *, timeout: float = PAGE_MS):
    """Open the list of the selectbox ``box``; returns the options' locator. A click the page dropped (a rerun
    re-drew the box first) is repeated once the app is idle; the list must open within ``timeout``."""
    listed = page.get_by_role("option")
    deadline, clicks = time.monotonic() + timeout / 1000, 0
    while not listed.first.is_visible():  # a list that opened late is not clicked shut again
        assert time.monotonic() < deadline, f"selectbox {label!r}: no list in {timeout / 1000:.0f} s, {clicks} clicks"
        wait_for_app(page, max(1000.0, (deadline - time.monotonic()) * 1000))
        box.click()
        clicks += 1
        with contextlib.suppress(PlaywrightTimeout):
            listed.first.wait_for(timeout=REOPEN_MS)
    return listed


def choose(page, label: str, option: str, *, key: str | None = None) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label`` (with widget key ``key``, where labels repeat)
    and wait for the run that choice causes."""
    if _shown(_selectbox(page, label, key), label) == option:
        return  # chosen already: picking it again would cause no run
    open_list(page, _selectbox(page, label, key), label)
    page.keyboard.type(option)  # the option list is virtualised: filter it so the option is rendered
    act(page, page.get_by_role("option", name=option, exact=True).click, what=f"the run after choosing {option!r}")


def options(page, label: str, *, key: str | None = None) -> list[str]:
    """The options of the Streamlit selectbox labelled ``label`` (opens and closes it)."""
    listed = open_list(page, _selectbox(page, label, key), label)
    found = listed.all_inner_texts()
    page.keyboard.press("Escape")
    listed.first.wait_for(state="detached")
    return found


def start_scratch_training(page, name: str, epochs: int, dataset: str = "Sample48 (embedded sample)") -> None:
    """On the open Improve model page: a scratch training of ``epochs`` on ``dataset``, started and acknowledged."""
    act(page, page.get_by_test_id("stRadioGroup").get_by_text("From scratch", exact=True).click)
    choose(page, "Dataset", dataset)
    page.get_by_label("New model name").fill(name)
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill(str(epochs))
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile("Started training run")).wait_for()


def write_load_data(sizes: dict[str, int], *, recipe: str) -> None:
    """Synthetic test-only datasets of the given sizes (10 classes of 32 x 32 noise) and an untrained 10-class
    model ``ten`` in the current data root: evaluations long enough to overlap (the load test and
    bench/bench_responsive.py)."""
    import numpy as np
    import torch

    from core.data.built import SplitToWrite, write_dataset
    from core.learning import models, registry
    rng = np.random.default_rng(0)
    for name, n in sizes.items():
        split = SplitToWrite(list(rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)), np.arange(n) % 10,
                             [f"t{i:05d}.png" for i in range(n)], ["synthetic"] * n, [""] * n, np.full((n, 2), 32))
        write_dataset(name, {"test": split}, classes={i: f"class {i}" for i in range(10)}, source="synthetic",
                      recipe=recipe)
    torch.manual_seed(0)
    registry.register("ten", models.make_checkpoint(
        models.build_model("published", 10), architecture="published", class_ids=list(range(10)),
        class_names=[f"class {i}" for i in range(10)], dataset=list(sizes)[-1], dataset_fingerprint="x",
        parent=None, mode="scratch", epochs=1, history=[], metrics={}, config={}))
