"""Pages under load: while five evaluations and a training run, how long does each page take to answer a click?

    python bench/bench_responsive.py [--modes thread,process] [--images 6000] [--epochs 30]

For each mode (``thread``: every run in a thread of the app's process, as before issue 24; ``process``: the
default, each run in a worker process of lower priority with bounded torch threads), side by side in one
invocation: a real ``streamlit run`` over a fresh data root holding a synthetic dataset of ``--images`` images and a
10-class model; from headless Chromium, five evaluations (Evaluate models) and a scratch training of the
embedded sample (Improve model) are started; then, while they run, every page of the sidebar is visited twice.
Per visit it prints the seconds from the click on the sidebar link to the page's title (the click answered) and
to the end of the page's script (rendered), and how many runs were active. Goal: every click answered within
3 s on 2 cores. Numbers are for comparison between the modes on the same machine, not absolutes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "tests"))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from browser_support import (CHROMIUM, CHROMIUM_ARGS, act, choose, new_page, options,  # noqa: E402
                             start_scratch_training, streamlit_server, visit, wait_for_app,
                             write_load_data)

#: Sidebar label -> the page's title.
PAGES = [("Home", "Traffic-sign model workbench"), ("Explore dataset", "Explore dataset"),
         ("Visualise classes", "Visualise classes"), ("Add new classes", "Add new classes"),
         ("Add new images", "Add new images"), ("Added images", "Added images"),
         ("Evaluate models", "Evaluate models"), ("Improve model", "Improve model"),
         ("Make prediction", "Make prediction")]
GOAL_S = 3.0


def make_root(root: Path, images: int) -> None:
    """A data root with a synthetic ``Load`` dataset (``images`` test images) and a 10-class model ``ten``."""
    os.environ["TSW_DATA_ROOT"] = str(root)
    write_load_data({"Load": images}, recipe="responsiveness bench")


#: JS: note when a heading with the page's title appears (the click answered), from the moment this is called.
_WATCH_TITLE = """title => {
  window.__answered = null;
  const t0 = performance.now();
  const obs = new MutationObserver(() => {
    if ([...document.querySelectorAll('h1')].some(h => h.innerText.trim().startsWith(title))) {
      window.__answered = (performance.now() - t0) / 1000;
      obs.disconnect();
    }
  });
  obs.observe(document, {subtree: true, childList: true, characterData: true});
}"""


def timed_visit(page, label: str, title: str) -> tuple[float, float, int]:
    """(seconds to the page's title, seconds to the end of its script, clicks it took) after a click on its
    sidebar link; a click the server dropped is clicked again (browser_support.visit) and counted."""
    page.evaluate(_WATCH_TITLE, title)
    t0 = time.perf_counter()
    clicks = visit(page, page.get_by_test_id("stSidebar").get_by_role("link", name=label, exact=True), title,
                   timeout=600_000)
    rendered = time.perf_counter() - t0
    answered = page.evaluate("() => window.__answered")
    return (rendered if answered is None else answered), rendered, clicks


def load_and_visit(url: str, epochs: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    from core import runs
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = new_page(browser, height=1000)
        page.goto(url + "/evaluate")
        page.get_by_role("heading", name="Evaluate models").wait_for(timeout=120_000)
        wait_for_app(page)
        choose(page, "Model", next(o for o in options(page, "Model") if o.startswith("ten")))
        choose(page, "Dataset", "Load")
        for k in range(5):
            act(page, page.get_by_role("button", name="Run evaluation").click)
            deadline = time.monotonic() + 300
            while len(runs.list_runs("evaluate")) < k + 1:
                assert time.monotonic() < deadline, "an evaluation click started nothing"
                time.sleep(0.1)
            wait_for_app(page)
        timed_visit(page, "Improve model", "Improve model")
        start_scratch_training(page, "bench-train", epochs)
        for _ in range(2):
            for label, title in PAGES:
                active = len(runs.list_runs(statuses=runs.ACTIVE))
                answered, rendered, clicks = timed_visit(page, label, title)
                out.append({"page": label, "answered_s": round(answered, 2), "rendered_s": round(rendered, 2),
                            "clicks": clicks, "active_runs": active})
                print(f"  {label:18s} answered {answered:5.2f} s  rendered {rendered:5.2f} s  clicks {clicks}  "
                      f"({active} runs active)", flush=True)
        browser.close()
    return out


def summary(rows: list[dict]) -> dict:
    loaded = [r for r in rows if r["active_runs"] >= 3] or rows
    ans = [r["answered_s"] for r in loaded]
    ren = [r["rendered_s"] for r in loaded]
    return {"visits": len(loaded), "answered_median_s": round(statistics.median(ans), 2),
            "answered_max_s": max(ans), "rendered_median_s": round(statistics.median(ren), 2),
            "rendered_max_s": max(ren), "within_goal": sum(a <= GOAL_S for a in ans),
            "lost_clicks": sum(r["clicks"] - 1 for r in loaded)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="thread,process")
    ap.add_argument("--images", type=int, default=6000, help="test images per evaluation (longer load)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    results = {}
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bench-responsive-{mode}-") as tmp:
            root = Path(tmp)
            make_root(root, args.images)
            print(f"mode {mode}: five evaluations of {args.images} images and a {args.epochs}-epoch training",
                  flush=True)
            with streamlit_server(root, workers=mode) as url:
                rows = load_and_visit(url, args.epochs)
            results[mode] = {"summary": summary(rows), "visits": rows}
            print(f"mode {mode}: {json.dumps(results[mode]['summary'])}", flush=True)
    print(json.dumps({m: r["summary"] for m, r in results.items()}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
