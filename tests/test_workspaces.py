"""Workspace datasets: derived copy-on-write from a built dataset, changed through an overlay, versioned."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.analysis import reports
from core.base import config, store
from core.data import datasets, workspace_changes, workspaces
from core.learning import models, registry, training
from core import runs
from core.analysis.anchor_run import AnchorRun
from core.analysis.evaluate_run import EvaluateRun
from core.learning.train_run import TrainRun
from conftest import smooth_images
from cli_support import run_cli  # noqa: E402
from tests.run_support import finished

PROJECT = Path(__file__).resolve().parent.parent
SAMPLE = "Sample48"


def _tree_digest(path: Path) -> str:
    """Hash of every file's name and bytes under ``path`` (proves a built dataset never changes)."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def main_ws():
    return workspaces.derive(SAMPLE, "Main")


def test_a_derived_workspace_is_listed_with_base_and_version_and_reads_like_its_base(main_ws):
    base = datasets.get_dataset(SAMPLE)
    listed = {d.name: d for d in datasets.list_datasets()}
    ws = listed["Main"]
    assert ws.kind == "workspace" and ws.base == SAMPLE and len(ws.fingerprint) == 16
    assert ws.classes == base.classes and ws.counts == base.counts
    assert ws.summary()["version"] == ws.fingerprint and ws.summary()["base"] == SAMPLE
    assert [(r["split"], r["file"], r["class_id"]) for r in datasets.read_index(ws)] == \
           [(r["split"], r["file"], r["class_id"]) for r in datasets.read_index(base)]
    for split in datasets.SPLITS:
        a, b = datasets.load_split(ws, split), datasets.load_split(base, split)
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels) and a.files == b.files
    # nothing of the base is copied: the workspace folder holds only its small description
    ws_files = [p for p in main_ws.path.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in ws_files) < 20_000
    row = datasets.read_index(ws, "test")[0]
    assert ws.image_path(row["file"]) == base.path / row["file"]


@pytest.mark.parametrize("base, name, msg", [
    ("Nope", "W1", "no dataset named 'Nope'"),
    (SAMPLE, SAMPLE, "exists already"),
    (SAMPLE, "../evil", "must be letters, digits"),
    (SAMPLE, "a b", "must be letters, digits"),
    (SAMPLE, "", "must be letters, digits"),
    (SAMPLE, "x" * 65, "must be letters, digits"),
])
def test_bad_derive_requests_are_refused_and_write_nothing(base, name, msg):
    with pytest.raises(ValueError, match=msg):
        workspaces.derive(base, name)
    root = config.workspaces_dir()
    assert not root.exists() or list(root.iterdir()) == []


def test_deriving_an_existing_workspace_name_or_from_a_workspace_is_refused(main_ws):
    version = main_ws.fingerprint
    with pytest.raises(ValueError, match="exists already"):
        workspaces.derive(SAMPLE, "Main")
    with pytest.raises(ValueError, match="is a workspace; derive from a built dataset"):
        workspaces.derive("Main", "Other")
    assert [w.name for w in workspaces.list_workspaces()] == ["Main"]
    assert datasets.get_dataset("Main").fingerprint == version


def test_delete_removes_a_workspace_and_refuses_built_datasets(main_ws):
    with pytest.raises(ValueError, match="built dataset, and built datasets never change"):
        workspaces.delete(SAMPLE)
    with pytest.raises(ValueError, match="no dataset named"):
        workspaces.delete("Nope")
    workspaces.delete("Main")
    assert "Main" not in {d.name for d in datasets.list_datasets()}
    assert not workspaces.workspace_dir("Main").exists()


def test_adding_a_class_and_images_changes_the_version_and_leaves_the_base_untouched(main_ws):
    base = datasets.get_dataset(SAMPLE)
    before = _tree_digest(base.path)
    v0 = main_ws.fingerprint
    with pytest.raises(ValueError, match="has a class named"):
        workspace_changes.add_class("Main", "speed limit (40KM/H)")  # the sample's class 43, any case
    cid = workspace_changes.add_class("Main", "  Speed limit   (100km/h, China)  ")
    assert cid == 48
    v1 = datasets.get_dataset("Main").fingerprint
    assert v1 != v0
    imgs = list(smooth_images(4, 64, seed=3))  # 64 px: stored as given, read at the base's size
    ids = workspace_changes.add_images("Main", imgs, split="train", class_id=cid,
                                       sources=[f"up{i}.png" for i in range(4)],
                                       records=[{"upload": f"up{i}.png"} for i in range(4)])
    assert len(ids) == 4
    ws = datasets.get_dataset("Main")
    assert ws.fingerprint not in (v0, v1)
    assert ws.classes[48] == "Speed limit (100km/h, China)" and ws.counts["train"][48] == 4
    assert ws.split_size("train") == base.split_size("train") + 4
    train = datasets.load_split(ws, "train")
    assert len(train) == ws.split_size("train") and (train.labels == 48).sum() == 4
    assert train.images.shape[1:] == datasets.load_split(base, "train").images.shape[1:]
    added = [r for r in datasets.read_index(ws, "train") if r["origin"] == "added"]
    assert [r["id"] for r in added] == ids and all(ws.image_path(r["file"]).is_file() for r in added)
    assert all(str(ws.image_path(r["file"])).startswith(str(ws.path)) for r in added)
    with pytest.raises(ValueError, match="has no class 99"):
        workspace_changes.add_images("Main", imgs[:1], split="train", class_id=99, sources=["x"])
    assert _tree_digest(base.path) == before


def test_moves_and_deletes_are_an_overlay_and_the_same_content_gives_the_same_version(main_ws):
    base = datasets.get_dataset(SAMPLE)
    v0 = main_ws.fingerprint
    test_rows = datasets.read_index(main_ws, "test")
    moved, gone = test_rows[0]["file"], test_rows[1]["file"]
    workspace_changes.move_images("Main", [moved], split="train")
    workspace_changes.delete_images("Main", [gone])
    ws = datasets.get_dataset("Main")
    assert ws.split_size("test") == base.split_size("test") - 2
    assert ws.split_size("train") == base.split_size("train") + 1
    assert moved in [r["file"] for r in datasets.read_index(ws, "train")]
    assert gone not in [r["file"] for r in datasets.read_index(ws)]
    train = datasets.load_split(ws, "train")
    k = train.files.index(moved)
    base_test = datasets.load_split(base, "test")
    assert np.array_equal(train.images[k], base_test.images[base_test.files.index(moved)])
    assert (base.path / gone).is_file()  # the base keeps its file
    with pytest.raises(ValueError, match="not in workspace"):
        workspace_changes.delete_images("Main", [gone])
    workspace_changes.move_images("Main", [moved], split="test")  # back where it was: only the deletion remains
    other = workspaces.derive(SAMPLE, "Other")
    workspace_changes.delete_images("Other", [gone])
    assert datasets.get_dataset("Other").fingerprint == datasets.get_dataset("Main").fingerprint != v0


def test_a_failed_change_leaves_the_previous_version_intact(main_ws, monkeypatch):
    v0 = main_ws.fingerprint
    header = (main_ws.path / workspaces.HEADER).read_bytes()
    with pytest.raises(RuntimeError, match="mid-change"):
        with workspace_changes.change("Main") as ch:
            ch.classes["48"] = "half-added"
            raise RuntimeError("crash mid-change (simulated)")
    real = os.replace

    def crash_on_header(src, dst):  # the overlay of the new version is written, then the commit fails
        if str(dst).endswith(workspaces.HEADER):
            raise OSError("power cut (simulated)")
        return real(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", crash_on_header)
        with pytest.raises(OSError, match="power cut"):
            workspace_changes.add_images("Main", list(smooth_images(2, 48)), split="test", class_id=0,
                                         sources=["a", "b"])
    assert (main_ws.path / workspaces.HEADER).read_bytes() == header
    ws = datasets.get_dataset("Main")
    assert ws.fingerprint == v0 and 48 not in ws.classes
    assert len(datasets.load_split(ws, "test")) == datasets.get_dataset(SAMPLE).split_size("test")


def _extra_images(n: int = 3) -> list[str]:
    """``n`` unlabelled images put in Main's Extra bucket; their ids."""
    return workspace_changes.add_images("Main", list(smooth_images(n, 48, seed=5)), split=workspaces.EXTRA,
                                        class_id=workspaces.EXTRA_CLASS, sources=[f"x{i}.png" for i in range(n)])


def test_a_class_from_a_group_of_images_is_one_change_that_one_undo_takes_back(main_ws):
    ids = _extra_images()
    before = datasets.get_dataset("Main")
    cid = workspace_changes.class_from_images("Main", " Road works (temporary) ", ids[:2], split="train")
    ws = datasets.get_dataset("Main")
    assert cid == 48 and ws.classes[48] == "Road works (temporary)"
    assert ws.counts["train"][48] == 2 and ws.split_size(workspaces.EXTRA) == 1
    moved = {r["id"]: r for r in workspaces.current_added(ws)}
    assert [(moved[i]["split"], moved[i]["class_id"]) for i in ids] == [("train", 48), ("train", 48),
                                                                       (workspaces.EXTRA, workspaces.EXTRA_CLASS)]
    assert workspace_changes.undo_list("Main")[-1] == "create class 'Road works (temporary)' from 2 images"
    workspace_changes.undo("Main")  # one step takes back both the class and the moves
    back = datasets.get_dataset("Main")
    assert back.fingerprint == before.fingerprint and 48 not in back.classes
    assert back.split_size(workspaces.EXTRA) == 3


@pytest.mark.parametrize("refs, msg", [(lambda ids, base: [ids[0], "nope.png"], "not in workspace"),
                                       (lambda ids, base: [ids[0], base], "keep their class"),
                                       (lambda ids, base: [], "no images given")])
def test_a_class_from_images_that_fails_half_way_changes_nothing(main_ws, refs, msg):
    ids = _extra_images()
    base_file = datasets.read_index(main_ws, "test")[0]["file"]
    head = (main_ws.path / workspaces.HEADER).read_bytes()
    with pytest.raises(ValueError, match=msg):
        workspace_changes.class_from_images("Main", "Road works", refs(ids, base_file))
    assert (main_ws.path / workspaces.HEADER).read_bytes() == head  # neither the class nor any move
    assert "Road works" not in datasets.get_dataset("Main").classes.values()


def test_a_class_from_images_that_crashes_mid_move_changes_nothing(main_ws, monkeypatch):
    ids = _extra_images()
    head = (main_ws.path / workspaces.HEADER).read_bytes()
    real, calls = workspace_changes.Change.move, []

    def crash_on_second(self, row, split, class_id=None):
        calls.append(row["id"])
        if len(calls) == 2:
            raise OSError("disk gone (simulated)")
        return real(self, row, split, class_id)

    monkeypatch.setattr(workspace_changes.Change, "move", crash_on_second)
    with pytest.raises(OSError, match="disk gone"):
        workspace_changes.class_from_images("Main", "Road works", ids)
    assert calls == ids[:2]  # the class was added and one image moved before the crash
    assert (main_ws.path / workspaces.HEADER).read_bytes() == head
    assert workspace_changes.undo_list("Main")[-1] == "add 3 images"


@pytest.mark.parametrize("name, split, msg", [("", "train", "use 1-80 printable characters"),
                                              ("Stop", "train", "has a class named"),
                                              ("Road works", "extra", "unknown split")])
def test_a_class_from_images_checks_its_name_and_split(main_ws, name, split, msg):
    ids = _extra_images(1)
    with pytest.raises(ValueError, match=msg):
        workspace_changes.class_from_images("Main", name, ids, split=split)


def test_built_datasets_cannot_be_changed():
    with pytest.raises(ValueError, match="built dataset and never changes; derive a workspace"):
        workspace_changes.add_class(SAMPLE, "new")


def _tiny_model(name: str) -> None:
    torch.manual_seed(0)
    m = models.build_model("published", 48)
    registry.register(name, models.make_checkpoint(
        m, architecture="published", class_ids=list(range(48)), class_names=[f"c{i}" for i in range(48)],
        dataset=SAMPLE, dataset_fingerprint="x", parent=None, mode="scratch", epochs=1, history=[], metrics={},
        config={}))


def test_train_and_evaluate_on_a_workspace_record_its_version_and_a_changed_workspace_makes_the_report_stale(main_ws):
    version = main_ws.fingerprint
    cfg = training.TrainConfig(epochs=1, batch_size=64, augment=False, max_train_images=128)
    train_run = finished(runs.start("train", TrainRun(cfg, dataset="Main", name="ws-model")))
    assert train_run["status"] == "done", train_run.get("error")
    assert train_run["inputs"]["dataset"] == {"name": "Main", "version": version}
    ckpt = models.load_checkpoint(registry.get_model("ws-model").path)
    assert ckpt["dataset"] == "Main" and ckpt["dataset_fingerprint"] == version

    ev = finished(runs.start("evaluate", EvaluateRun(model="ws-model", dataset="Main", split="test")))
    assert ev["status"] == "done", ev.get("error")
    assert ev["inputs"]["model"]["sha256"] == registry.file_version(registry.get_model("ws-model").path)
    rep = reports.load_report(ev["id"])
    assert rep.summary["dataset_version"] == version and rep.stale is None
    assert {r["id"]: r for r in reports.list_reports()}[ev["id"]]["dataset_version"] == version
    assert len(reports.report_images(rep, [0])) == 1

    workspace_changes.delete_images("Main", [rep.predictions.files[0]])
    stale = reports.load_report(ev["id"])
    assert stale.stale and "has changed since this report was made" in stale.stale
    assert stale.summary["accuracy"] == rep.summary["accuracy"]  # the numbers stay readable
    with pytest.raises(ValueError, match="has changed since"):
        reports.report_images(stale, [0])
    with pytest.raises(ValueError, match="has changed since"):
        runs.start("anchor", AnchorRun(report=ev["id"], index=0))
    workspaces.delete("Main")
    assert "no longer exists" in reports.load_report(ev["id"]).stale


def test_reading_a_changed_split_is_cached_per_version(main_ws):
    workspace_changes.delete_images("Main", [datasets.read_index(main_ws, "val")[0]["file"]])
    ws = datasets.get_dataset("Main")
    first = datasets.load_split(ws, "val")
    cache = config.cache_dir() / "workspaces" / "Main" / ws.fingerprint / "val.npz"
    assert cache.is_file()
    again = datasets.load_split(ws, "val")
    assert np.array_equal(first.images, again.images) and first.files == again.files
    workspace_changes.delete_images("Main", [first.files[0]])
    datasets.load_split(datasets.get_dataset("Main"), "val")
    assert not cache.exists()  # reading a new version drops the old version's cache
    assert [p.name for p in cache.parent.parent.iterdir()] == [datasets.get_dataset("Main").fingerprint]


def _cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    return run_cli(*args, root=root)


def test_cli_derive_list_delete(data_root):
    out = _cli("datasets", "derive", "--from", SAMPLE, "--name", "Main", "--json", root=data_root)
    assert out.returncode == 0, out.stderr
    made = json.loads(out.stdout)
    assert made["kind"] == "workspace" and made["base"] == SAMPLE
    listed = {d["name"]: d for d in json.loads(_cli("datasets", "list", "--json", root=data_root).stdout)}
    assert listed["Main"]["version"] == made["version"] and listed[SAMPLE]["kind"] == "built"
    text = _cli("datasets", "list", root=data_root).stdout
    assert f"workspace of {SAMPLE}" in text and made["version"] in text
    bad = _cli("datasets", "derive", "--from", SAMPLE, "--name", "Main", root=data_root)
    assert bad.returncode == 2 and "exists already" in bad.stderr and "Traceback" not in bad.stderr
    refused = _cli("datasets", "delete", SAMPLE, root=data_root)
    assert refused.returncode == 2 and "built datasets never change" in refused.stderr
    assert _cli("datasets", "delete", "Main", root=data_root).returncode == 0
    assert "Main" not in {d["name"] for d in json.loads(_cli("datasets", "list", "--json", root=data_root).stdout)}
    store.all_records("runs")  # the store is still readable


def test_two_requests_deriving_one_name_at_once_make_one_workspace_and_a_clear_refusal():
    """Found by the demo soak (bench/soak_demo.py): two sessions creating "Main-2" at the same moment."""
    import threading
    start, outcomes = threading.Barrier(4), []

    def derive():
        start.wait()
        try:
            outcomes.append(workspaces.derive("Sample48", "Twin").name)
        except workspaces.NameTaken as e:
            outcomes.append(str(e))
    threads = [threading.Thread(target=derive) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes.count("Twin") == 1, outcomes
    assert all("exists already" in o for o in outcomes if o != "Twin")
    assert [w.name for w in workspaces.list_workspaces()] == ["Twin"]
    assert not [p.name for p in config.workspaces_dir().iterdir() if p.name.startswith(".new-")]
