"""Soak: three browser sessions at once against one server in demo mode, curating, training, evaluating and
predicting in a loop.

    python bench/soak_demo.py [--minutes 10] [--sessions 3] [--json soak.json]

One ``streamlit run`` with ``TSW_DEMO=1`` over a fresh data root; ``--sessions`` headless Chromium sessions, each
in its own thread, each with its own workspace (demo workspaces are private to their session). Each session
loops until the time is up: add two new images to its workspace (Add new images), train a 1-epoch model from
scratch on the embedded sample (Improve model), evaluate the shipped benchmark on the sample (Evaluate models),
predict an uploaded photo (Make prediction). The server's memory (its own RSS; and with its worker processes, as
the sum of their proportional set sizes, shared pages counted once) is sampled every 5 s. At the end it checks,
and prints:

- no exception: no Streamlit exception box on any page, no traceback in the server's log;
- memory flat after warm-up: the server's RSS over the last ``--window`` minutes against the window after the
  ``--warmup`` minutes (the RSS curve is in the JSON);
- every run finished or was cancelled cleanly (none failed, none left active);
- the store valid: every table file reads as JSON and every run record has its fields.

Exit status 0 when all hold. Numbers are for this machine; compare runs side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "tests"))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from PIL import Image  # noqa: E402

from browser_support import (CHROMIUM, CHROMIUM_ARGS, act, choose, new_page, options,  # noqa: E402
                             start_scratch_training, streamlit_server, visit, watch_toasts, wait_for_toast)
from conftest import smooth_images, star_sign  # noqa: E402

RUN_MS = 900_000  # a run's ceiling while three sessions share two cores
STEPS = ("curate", "train", "evaluate", "predict")


def sidebar(page, label: str, title: str) -> None:
    visit(page, page.get_by_test_id("stSidebar").get_by_role("link", name=label, exact=True), title,
          timeout=RUN_MS)


def no_exception(page, where: str) -> None:
    n = page.get_by_test_id("stException").count()
    assert n == 0, f"{where}: {n} exception box(es) on the page"


class Session:
    """One browser session's loop, its step times and failures."""

    def __init__(self, number: int, url: str, files: Path, deadline: float):
        self.number, self.url, self.files, self.deadline = number, url, files, deadline
        self.times: dict[str, list[float]] = {s: [] for s in STEPS}
        self.failures: list[str] = []
        self.loops = 0

    def run(self) -> None:
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = new_page(browser, height=1200)
            page.goto(self.url)
            page.get_by_text("Start here").wait_for(timeout=RUN_MS)
            self.step(page, "workspace", self.create_workspace)
            while time.monotonic() < self.deadline and len(self.failures) < 5:
                for step in STEPS:
                    self.step(page, step, getattr(self, step))
                self.loops += 1
            browser.close()

    def step(self, page, name: str, fn) -> None:
        t0 = time.perf_counter()
        try:
            fn(page)
            no_exception(page, name)
            if name in self.times:
                self.times[name].append(time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001  (a soak reports every failure and goes on)
            self.failures.append(f"session {self.number} {name} (loop {self.loops}): {type(e).__name__}: "
                                 f"{str(e)[:300]}")
            traceback.print_exc()
            page.screenshot(path=str(self.files / f"soak-fail-{self.number}-{name}-{self.loops}.png"))
            try:  # the next step starts from Home, in the same session (a reload would be a new session, and a
                sidebar(page, "Home", "Traffic-sign model workbench")  # demo session's workspace is its own)
            except Exception:  # noqa: BLE001
                page.reload()

    def create_workspace(self, page) -> None:
        sidebar(page, "Add new classes", "Add new classes")
        act(page, page.get_by_role("button", name="Create", exact=True).click, what="creating a workspace")
        page.get_by_role("heading", name="New class", exact=True).wait_for()

    def curate(self, page) -> None:
        sidebar(page, "Add new images", "Add new images")
        paths = []
        for k in range(2):
            seed = 1000 * self.number + 2 * self.loops + k
            path = self.files / f"s{self.number}-{seed}.png"
            Image.fromarray(star_sign(seed)).save(path)
            paths.append(str(path))
        act(page, lambda: page.locator("input[type='file']").set_input_files(paths), what="uploading")
        page.get_by_text(re.compile(r"Preview: 2 upload\(s\)")).wait_for()
        act(page, page.get_by_role("button", name=re.compile(r"Add \d+ image\(s\) to ")).click, what="adding")
        page.get_by_text(re.compile(r"Added \d+ image\(s\)")).wait_for(timeout=RUN_MS)

    def train(self, page) -> None:
        sidebar(page, "Improve model", "Improve model")
        name = f"soak-{self.number}-{self.loops}"
        start_scratch_training(page, name, 1)
        page.get_by_text(re.compile(rf"Model {name} saved")).wait_for(timeout=RUN_MS)

    def evaluate(self, page) -> None:
        sidebar(page, "Evaluate models", "Evaluate models")
        choose(page, "Model", next(o for o in options(page, "Model") if o.startswith("benchmark (")))
        choose(page, "Dataset", "Sample48 (embedded sample)")
        watch_toasts(page)
        act(page, page.get_by_role("button", name="Run evaluation").click, what="starting an evaluation")
        wait_for_toast(page, "Report ready", timeout=RUN_MS)

    def predict(self, page) -> None:
        sidebar(page, "Make prediction", "Make prediction")
        path = self.files / f"photo-{self.number}-{self.loops}.png"
        Image.fromarray(smooth_images(1, 64, seed=self.number * 100 + self.loops)[0]).save(path)
        act(page, lambda: page.locator("input[type='file']").set_input_files([str(path)]), what="uploading")
        page.get_by_text(re.compile(r"1 image\(s\) predicted")).wait_for(timeout=RUN_MS)


def _rss_mb(pid: int, field: str = "VmRSS:", where: str = "status") -> float:
    try:
        for line in Path(f"/proc/{pid}/{where}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _pss_mb(pid: int) -> float:
    """Proportional set size: pages shared with other processes (a worker forked from the server of preloaded
    modules shares torch's) counted in shares, so a sum over processes is the memory they really take."""
    return _rss_mb(pid, "Pss:", "smaps_rollup")


def _server_pid(port: str) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(cmd) and port.encode() in cmd:
                return int(proc.name)
    raise RuntimeError(f"no streamlit process on port {port}")


def _descendants(pid: int) -> list[int]:
    parents = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def sample_memory(pid: int, t0: float, stop: threading.Event, curve: list) -> None:
    while not stop.is_set():
        own = _rss_mb(pid)
        curve.append({"t_s": round(time.monotonic() - t0, 1), "server_mb": round(own, 1),
                      "with_workers_mb": round(_pss_mb(pid) + sum(_pss_mb(c) for c in _descendants(pid)), 1)})
        stop.wait(5.0)


def check_store(root: Path) -> list[str]:
    problems = []
    for table in sorted((root / "store").glob("*.json")):
        try:
            json.loads(table.read_text(encoding="utf-8"))
        except ValueError as e:
            problems.append(f"{table.name} does not read as JSON: {e}")
    os.environ["TSW_DATA_ROOT"] = str(root)
    from core import runs
    for rec in runs.list_runs():
        missing = {"id", "kind", "status", "created", "config"} - set(rec)
        if missing:
            problems.append(f"run {rec.get('id')} lacks {sorted(missing)}")
        if rec["status"] not in ("done", "cancelled"):
            problems.append(f"run {rec['id']} ended {rec['status']}: {rec.get('error') or rec.get('message')}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=2.0, help="minutes before memory counts")
    ap.add_argument("--window", type=float, default=2.0, help="minutes compared at each end")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        root, files = Path(tmp) / "data", Path(tmp) / "files"
        root.mkdir()
        files.mkdir()
        with streamlit_server(root, env={"TSW_DEMO": "1"}) as url:
            pid = _server_pid(url.rsplit(":", 1)[1])
            t0 = time.monotonic()
            curve, stop = [], threading.Event()
            sampler = threading.Thread(target=sample_memory, args=(pid, t0, stop, curve), daemon=True)
            sampler.start()
            sessions = [Session(k + 1, url, files, t0 + args.minutes * 60) for k in range(args.sessions)]
            threads = [threading.Thread(target=s.run, name=f"session-{s.number}") for s in sessions]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            os.environ["TSW_DATA_ROOT"] = str(root)
            from core import runs
            deadline = time.monotonic() + 900
            while runs.list_runs(statuses=runs.ACTIVE) and time.monotonic() < deadline:
                time.sleep(1)
            stop.set()
            sampler.join()
            elapsed = time.monotonic() - t0
            log = (root / "streamlit.log").read_text(errors="replace")
        problems = check_store(root)
        n_runs = len(runs.list_runs())
        by_kind = {}
        for rec in runs.list_runs():
            by_kind[rec["kind"]] = by_kind.get(rec["kind"], 0) + 1
    failures = [f for s in sessions for f in s.failures]
    if "Traceback" in log:
        failures.append("the server's log has a traceback: " + log[log.index("Traceback"):][:1500])
    warm = [c["server_mb"] for c in curve if args.warmup * 60 <= c["t_s"] < (args.warmup + args.window) * 60]
    last = [c["server_mb"] for c in curve if c["t_s"] >= elapsed - args.window * 60]
    memory = {"after_warmup_mb": round(statistics.median(warm), 1) if warm else None,
              "last_mb": round(statistics.median(last), 1) if last else None,
              "peak_with_workers_mb": max((c["with_workers_mb"] for c in curve), default=None)}
    if warm and last:
        memory["growth_pct"] = round(100 * (memory["last_mb"] / memory["after_warmup_mb"] - 1), 1)
    result = {"minutes": round(elapsed / 60, 1), "sessions": args.sessions,
              "loops": {s.number: s.loops for s in sessions},
              "step_median_s": {step: round(statistics.median(t), 1) for step in STEPS
                                if (t := [x for s in sessions for x in s.times[step]])},
              "runs": n_runs, "runs_by_kind": by_kind, "memory": memory, "failures": failures,
              "store_problems": problems,
              "rss_curve": curve}
    print(json.dumps({k: v for k, v in result.items() if k != "rss_curve"}, indent=1))
    print("RSS curve (minute: server MB / with workers MB):",
          ", ".join(f"{c['t_s'] / 60:.0f}: {c['server_mb']:.0f}/{c['with_workers_mb']:.0f}"
                    for c in curve[::12]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    flat = memory.get("growth_pct") is not None and memory["growth_pct"] < 10
    ok = not failures and not problems and flat
    print("soak:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
