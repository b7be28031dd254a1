"""Evaluation speed in the app against the CLI, side by side on the same machine.

    python bench/bench_eval_app.py [--dataset GTSRB] [--split test] [--rounds 2]

Alternates, ``--rounds`` times: ``python -m core evaluate --json`` (the CLI) and an evaluation started from the
Evaluate page of a real ``streamlit run`` in headless Chromium, with the page left open (its status fragment
polling, as a user would leave it). Both record the model's images/s over the split; the app's wall time runs from
the click to the report's record. Needs the dataset built (``python -m core datasets build``) in the data root.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "tests"))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from browser_support import CHROMIUM, CHROMIUM_ARGS, choose, streamlit_server, wait_for_app  # noqa: E402

from core.analysis import reports
from core.base import config  # noqa: E402


def cli(model: str, dataset: str, split: str) -> float:
    out = subprocess.run([sys.executable, "-m", "core", "evaluate", "--model", model, "--dataset", dataset,
                          "--split", split, "--json"], cwd=PROJECT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["images_per_s"]


def app(page, dataset: str, split: str) -> tuple[float, float]:
    before = {r["id"] for r in reports.list_reports()}
    choose(page, "Dataset", dataset)
    choose(page, "Split", split)
    t0 = time.perf_counter()
    page.get_by_role("button", name="Run evaluation").click()
    while not ({r["id"] for r in reports.list_reports()} - before):
        page.wait_for_timeout(100)
    wall = time.perf_counter() - t0
    (new,) = {r["id"] for r in reports.list_reports()} - before
    return reports.load_report(new).summary["images_per_s"], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="benchmark")
    ap.add_argument("--dataset", default="GTSRB")
    ap.add_argument("--split", default="test")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright
    with streamlit_server(config.data_root()) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url + "/evaluate")
        page.get_by_role("heading", name="Evaluate models").wait_for(timeout=60_000)
        wait_for_app(page)
        for k in range(args.rounds):
            c = cli(args.model, args.dataset, args.split)
            a, wall = app(page, args.dataset, args.split)
            print(f"round {k + 1}: CLI {c:,.0f} images/s, app {a:,.0f} images/s (ratio {a / c:.2f}); "
                  f"app wall time click -> report {wall:.1f} s")


if __name__ == "__main__":
    main()
