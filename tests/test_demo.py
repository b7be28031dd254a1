"""Demo mode (TSW_DEMO=1): every cap and ownership rule refuses with a clear message and writes nothing; with the
flag off the same requests succeed."""
from __future__ import annotations

import hashlib
import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.analysis import reports
from core.base import config, demo, store
from core.base.files import atomic_write_json
from core.base.run_history import prune_runs
from core.curation.import_run import stage_uploads
from core.data import built, datasets, quotas, workspace_changes, workspaces
from core.data.build_run import BuildRun
from core.learning import models, registry, training
from core.learning.train_run import TrainRun
from conftest import smooth_images
from app_support import router  # noqa: F401 (fixture)

SAMPLE = "Sample48"
HOME = str(Path(__file__).resolve().parent.parent / "Home.py")
MiB = 2**20


@pytest.fixture
def demo_on(monkeypatch):
    monkeypatch.setenv(demo.ENV, "1")


def _images(n: int = 3, seed: int = 0) -> np.ndarray:
    return smooth_images(n, 32, seed)


def _add(name: str, n: int = 3, seed: int = 0) -> list[str]:
    return workspace_changes.add_images(name, list(_images(n, seed)), split="test", class_id=0,
                                        sources=[f"u{k}.png" for k in range(n)])


def _version(name: str) -> str:
    return workspaces.read_header(workspaces.workspace_dir(name))["version"]


def _files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the switch and the session ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, on", [("1", True), ("true", True), ("YES", True), ("0", False), ("no", False)])
def test_the_environment_variable_turns_demo_mode_on_and_off(monkeypatch, value, on):
    monkeypatch.setenv(demo.ENV, value)
    assert demo.enabled() is on


def test_demo_mode_is_detected_on_streamlit_cloud_and_tsw_demo_0_wins(monkeypatch):
    monkeypatch.delenv(demo.ENV, raising=False)
    assert not demo.enabled()  # a local checkout
    monkeypatch.setattr(config, "PROJECT_ROOT", Path("/mount/src/traffic-sign-workbench"))
    assert demo.enabled()
    monkeypatch.setenv(demo.ENV, "0")
    assert not demo.enabled()


def test_the_session_comes_from_the_context_then_the_resolver(monkeypatch):
    monkeypatch.setattr(demo, "_resolver", None)
    assert demo.current_session() is None
    demo.set_session_resolver(lambda: "from-resolver")
    assert demo.current_session() == "from-resolver"
    with demo.session_scope("scoped"):
        assert demo.current_session() == "scoped"
    assert demo.current_session() == "from-resolver"


# -- uploads -------------------------------------------------------------------------------------------------------

def test_a_26_mb_upload_is_refused_and_nothing_is_written(demo_on):
    big = [("big.png", b"\x89PNG" + bytes(26 * MiB))]
    with demo.session_scope("alice"), pytest.raises(demo.DemoRefused, match=r"upload quota of 20\.0 MiB"):
        stage_uploads(big)
    assert not (config.runs_dir() / "uploads").exists()
    assert not (config.data_root() / quotas.LEDGER).exists()


def test_the_same_upload_is_staged_with_demo_off():
    paths = stage_uploads([("big.png", b"\x89PNG" + bytes(26 * MiB))])
    assert len(paths) == 1 and Path(paths[0]).stat().st_size == 26 * MiB + 4


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_a_zip_expanding_past_the_session_quota_is_refused_before_anything_is_extracted(demo_on):
    small = [("a.png", bytes(2 * MiB))]
    archive = _zip({f"m{k}.png": bytes(6 * MiB) for k in range(3)})  # 18 MiB expanded, a few KiB compressed
    assert len(archive) < MiB and quotas.upload_size(archive) == 18 * MiB
    with demo.session_scope("alice"):
        staged = stage_uploads(small)
        assert quotas.session_uploaded() == 2 * MiB
        before = _files(config.runs_dir())
        with pytest.raises(demo.DemoRefused, match=r"18\.0 MiB.*2\.0 MiB used, 18\.0 MiB left.*expanded size"):
            stage_uploads([("signs.zip", archive), ("b.png", bytes(MiB))])
        assert _files(config.runs_dir()) == before and quotas.session_uploaded() == 2 * MiB
    with demo.session_scope("bob"):  # another session has its own quota
        assert quotas.session_uploaded() == 0
        assert len(stage_uploads([("signs.zip", archive)])) == 1
    assert len(staged) == 1


def test_the_workspaces_disk_cap_refuses_an_import_before_writing(demo_on, monkeypatch):
    with demo.session_scope("alice"):
        workspaces.derive(SAMPLE, "Mine")
        version, files = _version("Mine"), _files(workspaces.workspace_dir("Mine"))
        monkeypatch.setattr(demo, "DEMO_WORKSPACES_DISK_BYTES", quotas.workspaces_disk_bytes() + 1000)
        with pytest.raises(demo.DemoRefused, match="all workspaces of this public demo use"):
            _add("Mine")
        assert _version("Mine") == version and _files(workspaces.workspace_dir("Mine")) == files
        monkeypatch.setattr(demo, "DEMO_WORKSPACES_DISK_BYTES", 1)
        with pytest.raises(demo.DemoRefused, match="these uploads: all workspaces of this public demo use"):
            stage_uploads([("a.png", b"x")])  # full workspaces refuse uploads before staging them
        assert not (config.runs_dir() / "uploads").exists()
    monkeypatch.delenv(demo.ENV)
    assert len(_add("Mine")) == 3


# -- training ------------------------------------------------------------------------------------------------------

def _train(**kw) -> TrainRun:
    return TrainRun(training.TrainConfig(mode="scratch", **kw), dataset=SAMPLE, name="demo-model")


def test_training_epochs_and_size_are_capped(demo_on, monkeypatch):
    with pytest.raises(demo.DemoRefused, match="11 epochs is above this public demo's cap of 10"):
        _train(epochs=11).check()
    monkeypatch.setattr(demo, "DEMO_MAX_TRAIN_IMAGES", 100)
    with pytest.raises(demo.DemoRefused, match="576 training images per epoch, above this public demo's cap of 100"):
        _train(epochs=2).check()
    assert _train(epochs=2, max_train_images=100).check()["dataset"]["name"] == SAMPLE
    assert store.all_records("runs") == []


def test_training_beyond_the_demo_caps_passes_its_check_locally(monkeypatch):
    monkeypatch.setattr(demo, "DEMO_MAX_TRAIN_IMAGES", 100)
    assert _train(epochs=50).check()["dataset"]["name"] == SAMPLE


# -- workspaces: private to their session, swept -------------------------------------------------------------------

def test_another_sessions_workspace_is_invisible_and_cannot_be_changed(demo_on):
    with demo.session_scope("alice"):
        workspaces.derive(SAMPLE, "AliceWS")
        ids = _add("AliceWS")
        assert "AliceWS" in {d.name for d in datasets.list_datasets()}
    version, files = _version("AliceWS"), _files(workspaces.workspace_dir("AliceWS"))
    with demo.session_scope("bob"):
        assert "AliceWS" not in {d.name for d in datasets.list_datasets()}
        assert SAMPLE in {d.name for d in datasets.list_datasets()}
        assert "AliceWS" not in {w.name for w in workspaces.list_workspaces()}
        with pytest.raises(ValueError, match="no dataset named 'AliceWS'"):
            datasets.get_dataset("AliceWS")
        for request in (lambda: workspaces.delete("AliceWS"),
                        lambda: workspace_changes.delete_images("AliceWS", ids[:1]),
                        lambda: workspace_changes.move_images("AliceWS", ids[:1], split="train"),
                        lambda: workspace_changes.undo("AliceWS"),
                        lambda: _add("AliceWS", seed=1),
                        lambda: workspace_changes.add_class("AliceWS", "Bob's class", pictogram=_images(1)[0])):
            with pytest.raises(demo.DemoRefused, match="workspace 'AliceWS' belongs to another session"):
                request()
        assert workspaces.free_name("AliceWS") == "AliceWS-2"  # its name stays taken
    assert _version("AliceWS") == version and _files(workspaces.workspace_dir("AliceWS")) == files
    with demo.session_scope("alice"):
        assert workspace_changes.delete_images("AliceWS", ids[:1]) == 1
        workspaces.delete("AliceWS")
    assert not workspaces.workspace_dir("AliceWS").exists()


def test_shared_workspaces_are_listed_but_read_only_in_a_demo_session(monkeypatch):
    workspaces.derive(SAMPLE, "Shared")  # made locally: no session
    monkeypatch.setenv(demo.ENV, "1")
    version = _version("Shared")
    with demo.session_scope("bob"):
        assert "Shared" in {d.name for d in datasets.list_datasets()}
        with pytest.raises(demo.DemoRefused, match="workspace 'Shared' is shared in this public demo and read-only"):
            workspace_changes.add_class("Shared", "New")
        with pytest.raises(demo.DemoRefused, match="shared"):
            workspaces.delete("Shared")
    assert _version("Shared") == version
    monkeypatch.delenv(demo.ENV)
    workspace_changes.add_class("Shared", "New")
    workspaces.delete("Shared")


def test_sweep_removes_only_expired_demo_workspaces(demo_on):
    with demo.session_scope("alice"):
        for name in ("Old", "Fresh"):
            workspaces.derive(SAMPLE, name)
    workspaces.derive(SAMPLE, "Local")  # outside a session: shared, never swept
    old = workspaces.workspace_dir("Old")
    head = workspaces.read_header(old)
    atomic_write_json(old / workspaces.HEADER, {**head, "created": time.time() - demo.DEMO_WORKSPACE_TTL_S - 10})
    assert workspaces.sweep_expired() == ["Old"]
    assert {w.name for w in workspaces.list_workspaces()} == {"Fresh", "Local"}
    assert workspaces.sweep_expired(now=time.time() + demo.DEMO_WORKSPACE_TTL_S + 10) == ["Fresh"]
    assert [w.name for w in workspaces.list_workspaces()] == ["Local"]


# -- models, reports, built datasets -------------------------------------------------------------------------------

def _tiny_checkpoint() -> dict:
    torch.manual_seed(0)
    return models.make_checkpoint(models.build_model("published", 48), architecture="published",
                                  class_ids=list(range(48)), class_names=[f"c{i}" for i in range(48)], dataset=SAMPLE,
                                  dataset_fingerprint="x", parent=None, mode="scratch", epochs=1, history=[],
                                  metrics={}, config={})


def test_a_shipped_model_cannot_be_deleted_or_overwritten(demo_on):
    bench = registry.get_model("benchmark")
    digest = _digest(bench.path)
    with demo.session_scope("bob"):
        with pytest.raises(demo.DemoRefused, match="'benchmark' is shipped with the project"):
            registry.delete_model("benchmark")
        with pytest.raises(demo.DemoRefused, match="shipped model 'benchmark' is shared"):
            registry.register("benchmark", _tiny_checkpoint(), overwrite=True)
        with pytest.raises(demo.DemoRefused, match="shipped"):
            TrainRun(training.TrainConfig(mode="scratch", epochs=1), dataset=SAMPLE, name="x",
                     out=str(bench.path)).check()
    assert _digest(bench.path) == digest and registry.get_model("benchmark").shipped


def test_a_shipped_model_is_read_only_locally_too():
    with pytest.raises(ValueError, match="shipped with the project"):
        registry.delete_model("benchmark")
    assert registry.get_model("benchmark").path.is_file()


def test_only_the_session_that_trained_a_model_deletes_it(demo_on):
    with demo.session_scope("alice"):
        mine = registry.register("alice-model", _tiny_checkpoint())
    assert mine.session == "alice" and registry.get_model("alice-model").session == "alice"
    with demo.session_scope("bob"), pytest.raises(demo.DemoRefused, match="belongs to another session"):
        registry.delete_model("alice-model")
    assert mine.path.is_file()
    with demo.session_scope("alice"):
        registry.delete_model("alice-model")
    assert not mine.path.exists() and "alice-model" not in {m.name for m in registry.list_models()}


def test_a_model_is_deleted_without_demo_mode():
    path = registry.register("local-model", _tiny_checkpoint()).path
    registry.delete_model("local-model")
    assert not path.exists()


def test_reports_of_others_cannot_be_renamed_or_deleted(demo_on):
    store.upsert("reports", {"id": "r1", "created": 0.0}, key="id")
    with demo.session_scope("bob"):
        with pytest.raises(demo.DemoRefused, match="report 'r1' is shared"):
            reports.delete_report("r1")
        with pytest.raises(demo.DemoRefused, match="report 'r1' is shared"):
            reports.rename_report("r1", "mine now")
    assert store.get("reports", key="id", value="r1") == {"id": "r1", "created": 0.0}


def test_built_datasets_are_not_built_in_demo_mode(demo_on):
    with pytest.raises(demo.DemoRefused, match="shared in this public demo and read-only.*TSW_DEMO=0"):
        BuildRun(source=".").check()
    with pytest.raises(demo.DemoRefused, match="building dataset 'Tiny'"):
        built.write_dataset("Tiny", {}, classes={0: "a"}, source="test", recipe="test")
    assert not config.datasets_dir().exists() or _files(config.datasets_dir()) == []


# -- run history ---------------------------------------------------------------------------------------------------

def test_prune_runs_keeps_the_newest_records_and_every_active_run():
    statuses = ["running", "queued", "done", "failed", "cancelled", "interrupted", "done", "done", "failed", "done"]
    store.insert_many("runs", [{"id": f"r{k}", "status": s, "created": float(k)} for k, s in enumerate(statuses)])
    for k in range(len(statuses)):
        (config.runs_dir() / f"r{k}").mkdir(parents=True)
    assert prune_runs(keep=3) == ["r2", "r3", "r4", "r5", "r6"]
    kept = {r["id"] for r in store.all_records("runs")}
    assert kept == {"r0", "r1", "r7", "r8", "r9"}
    assert {p.name for p in config.runs_dir().iterdir()} == kept
    assert prune_runs(keep=3) == []
    assert prune_runs(keep=0) == ["r7", "r8", "r9"]
    assert {r["id"] for r in store.all_records("runs")} == {"r0", "r1"}


# -- pages ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def router_mode(router, monkeypatch):
    """AppTests through Home.py's router (tests/app_support.py); and forget the page layer's session resolver
    afterwards."""
    monkeypatch.setattr(demo, "_resolver", None)


def test_home_shows_the_public_demo_banner_only_in_demo_mode(router_mode, monkeypatch):
    at = AppTest.from_file(HOME, default_timeout=120).run()
    assert not at.exception and not any("public demo" in i.value for i in at.info)
    monkeypatch.setenv(demo.ENV, "1")
    at = AppTest.from_file(HOME, default_timeout=120).run()
    assert not at.exception
    assert any("This is a public demo" in i.value and "at most 10 epochs" in i.value for i in at.info)


def test_add_classes_page_shows_the_refusal_of_a_shared_workspace(router_mode, monkeypatch):
    workspaces.derive(SAMPLE, "Shared")
    monkeypatch.setenv(demo.ENV, "1")
    at = AppTest.from_file(HOME, default_timeout=120).run()
    at.switch_page("pages/add_classes.py").run()
    assert not at.exception, at.exception
    at.text_input(key="classes_rename_name").input("Renamed")
    next(b for b in at.button if b.label == "Rename").click().run()
    assert not at.exception, at.exception
    assert any("workspace 'Shared' is shared in this public demo and read-only" in e.value for e in at.error), \
        [e.value for e in at.error]
    assert "Renamed" not in workspaces.read_header(workspaces.workspace_dir("Shared"))["classes"].values()


def test_a_workspace_name_taken_meanwhile_by_another_session_gets_the_next_free_one(router_mode, monkeypatch):
    """Two visitors open Add new classes at once, both offered "Main"; the second to click Create gets "Main-2",
    not an error about a workspace it cannot see (found by bench/soak_demo.py)."""
    monkeypatch.setenv(demo.ENV, "1")
    at = AppTest.from_file(HOME, default_timeout=120).run()
    at.switch_page("pages/add_classes.py").run()
    assert at.text_input(key="classes_ws_new").value == "Main"
    with demo.session_scope("someone-else"):
        workspaces.derive(SAMPLE, "Main")
    next(b for b in at.button if b.label == "Create").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    mine = [w.name for w in workspaces.list_workspaces()]  # as seen from outside any session: both
    assert sorted(mine) == ["Main", "Main-2"]
    assert workspaces.read_header(workspaces.workspace_dir("Main-2"))[demo.SESSION_FIELD] not in (None, "someone-else")


def test_a_seventh_run_is_refused_on_the_evaluate_page_with_nothing_started(router_mode, monkeypatch):
    """Six runs queued or running (of other sessions): the Evaluate page's seventh is refused with the reason."""
    import time as _time

    from core import runs
    monkeypatch.setenv(demo.ENV, "1")
    for k in range(6):
        store.insert("runs", {"id": f"busy-{k}", "kind": "evaluate", "title": "busy", "config": {}, "inputs": {},
                              "status": "running", "progress": 0.0, "message": "", "history": [],
                              "created": _time.time(), "updated": _time.time(), "owner": runs.OWNER,
                              demo.SESSION_FIELD: f"visitor-{k}"})
    at = AppTest.from_file(HOME, default_timeout=120).run()
    at.switch_page("pages/evaluate.py").run()
    at.selectbox(key="eval_dataset").set_value("Sample48").run()
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    assert any("6 runs queued or running" in e.value for e in at.error), [e.value for e in at.error]
    assert len(store.all_records("runs")) == 6
