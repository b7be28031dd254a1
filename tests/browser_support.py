"""A real ``streamlit run`` server on a free localhost port and a headless Debian Chromium driven by Playwright."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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
def streamlit_server(data_root: Path, *, timeout: float = 60.0):
    port = free_port()
    env = dict(os.environ, TSW_DATA_ROOT=str(data_root), NO_ALBUMENTATIONS_UPDATE="1",
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
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
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
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


def wait_for_app(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished running the script (no 'Running...' status widget)."""
    page.wait_for_selector("[data-testid='stApp']", timeout=timeout)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    page.wait_for_timeout(300)


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


def wait_for_sidebar(page, labels, timeout: float = 120_000) -> None:
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


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    box = page.get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True))
    box.click()
    page.keyboard.type(option)  # the option list is virtualised: filter it so the option is rendered
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_app(page)


def options(page, label: str) -> list[str]:
    """The options of the Streamlit selectbox labelled ``label`` (opens and closes it)."""
    box = page.get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True))
    box.click()
    found = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return found


def start_scratch_training(page, name: str, epochs: int, dataset: str = "Sample48 (embedded sample)") -> None:
    """On the open Improve model page: a scratch training of ``epochs`` on ``dataset``, started and acknowledged."""
    import re
    page.get_by_test_id("stRadioGroup").get_by_text("scratch", exact=True).click()
    wait_for_app(page)
    choose(page, "Dataset", dataset)
    page.get_by_label("New model name").fill(name)
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill(str(epochs))
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile("Started training run")).wait_for(timeout=30_000)
