"""From finding to fixing, in a real browser (issue 22's "done when"): derive a workspace, flip three labels with the
command line, find them at the top of Explore's Data issues, relabel them there to the suggestion, retrain
incrementally and see the comparison with the base model, compare the two models image by image on Evaluate, then
export the workspace as a zip and import it back as a new workspace with the same counts."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from browser_support import (SHOTS, act, browser, choose, new_page, options, screenshot,  # noqa: F401 (fixture)
                             streamlit_server, wait_for_app)
from cli_support import run_cli
from waits import PAGE_MS, RUN_MS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    """A data root with workspace Main (from Sample48) whose three confidently recognised test images were given
    wrong labels with ``python -m core images relabel``: {file: (true class, given class)}."""
    root = tmp_path_factory.mktemp("findings-data")
    assert run_cli("datasets", "derive", "--from", "Sample48", "--name", "Main", root=root).returncode == 0
    os.environ["TSW_DATA_ROOT"] = str(root)
    from core.data import datasets
    from core.learning import inference, models, registry
    ckpt = models.load_checkpoint(registry.model_path("benchmark"))
    split = datasets.load_split(datasets.get_dataset("Main"), "test")
    probs = inference.predict_proba(models.model_from_checkpoint(ckpt), split.images)
    ids = np.asarray(ckpt["class_ids"])
    right = np.flatnonzero(ids[probs.argmax(1)] == split.labels)
    chosen, seen = [], set()
    for i in right[np.argsort(-probs[right].max(1))]:  # the most confident first, one per class
        if int(split.labels[i]) not in seen:
            chosen.append(i)
            seen.add(int(split.labels[i]))
        if len(chosen) == 3:
            break
    flips = {}
    for i in chosen:
        true = int(split.labels[i])
        given = int((true + 20) % 43)  # a known class far from the true one
        flips[split.files[i]] = (true, given)
        done = run_cli("images", "relabel", "--dataset", "Main", "--to", given, split.files[i], root=root)
        assert done.returncode == 0, done.stderr
    return root, flips


@pytest.fixture(scope="module")
def app(flipped):
    root, flips = flipped
    with streamlit_server(root) as url:
        yield url, root, flips


def shot(page, name: str) -> None:
    screenshot(page, SHOTS / f"findings_{name}.png")
    assert page.get_by_test_id("stException").count() == 0


def open_page(browser, url: str, path: str, heading: str, height: int = 1400):
    page = new_page(browser, height=height)
    page.goto(url + path)
    page.get_by_role("heading", name=heading).wait_for()
    wait_for_app(page)
    return page


def tick_rows(page, n: int) -> None:
    """Tick the Pick cells of the first ``n`` rows of the (canvas-drawn) findings table."""
    grid = page.get_by_test_id("stDataFrame").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    for row in range(n):
        act(page, lambda: page.mouse.click(box["x"] + 37, box["y"] + 35 * (row + 1) + 18),
            what=f"the run after ticking row {row + 1}")


def test_flip_find_relabel_retrain_compare_export_and_reimport(browser, app, tmp_path, monkeypatch):
    url, root, flips = app
    monkeypatch.setenv("TSW_DATA_ROOT", str(root))
    from core.analysis.issues_run import shown_issues
    from core.data import datasets
    SHOTS.mkdir(parents=True, exist_ok=True)

    # 1. Explore -> Data issues on Main/test with the benchmark: the three flipped images lead the list.
    page = open_page(browser, url, "/explore", "Explore dataset", 1600)
    choose(page, "Dataset", "Main (workspace of Sample48)")
    page.get_by_role("tab", name="Data issues").click()
    model = next(o for o in options(page, "Model", key="issues_model") if o.startswith("benchmark ("))
    choose(page, "Model", model, key="issues_model")
    choose(page, "Split", "test", key="issues_split")
    act(page, page.get_by_role("button", name="Find data issues").click)
    page.get_by_role("tab", name=re.compile(r"Likely mislabelled \(\d+\)")).wait_for(timeout=RUN_MS)
    wait_for_app(page)
    found = shown_issues("benchmark", "Main", "test").issues.mislabelled
    assert {r["file"] for r in found[:3]} == set(flips), [r["file"] for r in found[:5]]
    assert all(r["suggested"] == flips[r["file"]][0] for r in found[:3])  # the suggestion is the true class
    tick_rows(page, 3)
    page.get_by_role("button", name="Apply to 3 images").wait_for()
    shot(page, "1_issues")
    act(page, page.get_by_role("button", name="Apply to 3 images").click)
    page.get_by_text(re.compile(r"Relabelled 3 images", re.I)).wait_for()
    labels = {r["file"]: int(r["class_id"]) for r in datasets.read_index(datasets.get_dataset("Main"), "test")}
    assert {f: labels[f] for f in flips} == {f: true for f, (true, _) in flips.items()}
    page.get_by_role("button", name=re.compile(r"^Undo: ")).wait_for()
    shot(page, "2_relabelled")
    page.close()

    # 2. Improve: incremental training from the benchmark on the fixed workspace; the comparison with the base.
    page = open_page(browser, url, "/improve", "Improve model", 1600)
    choose(page, "Base model", next(o for o in options(page, "Base model") if o.startswith("benchmark (")))
    choose(page, "Dataset", "Main (workspace of Sample48)")
    page.get_by_label("New model name").fill("main-fixed")
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill("2")  # 1 on the new rows, 1 on all
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile(r"Model main-fixed saved")).first.wait_for(timeout=RUN_MS)
    page.get_by_text(re.compile(r"Compared with benchmark")).first.wait_for()
    page.get_by_text(re.compile(r"The base model's classes (lost accuracy|kept their accuracy)")).first.wait_for()
    wait_for_app(page)
    shot(page, "3_vs_base")
    page.close()

    # 3. Evaluate -> Compare two models: both evaluated on Main/val, then the two disagreement grids and, as the
    #    val split was made by track, the test that counts each track once.
    page = open_page(browser, url, "/evaluate", "Evaluate models", 1600)
    page.get_by_role("tab", name="Compare two models").click()
    choose(page, "Model A", next(o for o in options(page, "Model A") if o.startswith("benchmark (")))
    choose(page, "Model B", next(o for o in options(page, "Model B") if o.startswith("main-fixed (")))
    choose(page, "Compare on dataset", "Main (workspace of Sample48)")
    choose(page, "Compare on split", "val")
    act(page, page.get_by_role("button", name=re.compile(r"^Evaluate ")).click)
    right_a = page.get_by_role("tab", name=re.compile(r"A right, B wrong \(\d+\)"))
    right_a.wait_for(timeout=RUN_MS)
    page.get_by_role("tab", name=re.compile(r"B right, A wrong \(\d+\)")).wait_for()
    page.get_by_text(re.compile(r"McNemar")).first.wait_for()
    page.get_by_text("p by track").first.wait_for()
    wait_for_app(page)
    shot(page, "4_compare")
    page.close()

    # 4. Added images: the workspace as a zip; imported back and derived, it has the same counts.
    page = open_page(browser, url, "/added_images", "Added images")
    choose(page, "Workspace", next(o for o in options(page, "Workspace") if o.startswith("Main")))
    page.get_by_text("Download this workspace (zip)").click()
    act(page, page.get_by_role("button", name="Prepare zip").click)
    button = page.get_by_role("button", name=re.compile(r"Download Main\.zip"))
    button.wait_for(timeout=PAGE_MS)
    with page.expect_download() as download:
        button.click()
    target = tmp_path / "Main.zip"
    download.value.save_as(target)
    shot(page, "5_export")
    page.close()
    assert run_cli("datasets", "import", "--layout", "folder", "--path", target, "--name", "Back",
                   root=root).returncode == 0
    assert run_cli("datasets", "derive", "--from", "Back", "--name", "Again", root=root).returncode == 0
    listed = {d["name"]: d for d in json.loads(run_cli("datasets", "list", "--json", root=root).stdout)}
    assert listed["Again"]["kind"] == "workspace"
    assert listed["Again"]["splits"] == listed["Main"]["splits"]
    again, main = datasets.get_dataset("Again"), datasets.get_dataset("Main")
    assert again.counts == {s: c for s, c in main.counts.items() if s in datasets.SPLITS}
