"""Acting on data issues: relabel (base images too), remove, move, send to Extra, one or many, each one undoable
change; a built dataset is never changed (a workspace is derived first); bad requests change nothing; variants
move with their upload; the CLI (issues find, images relabel) and the Data issues tab."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import runs
from core.analysis import label_actions, label_issues
from core.analysis.issues_run import IssuesRun, shown_issues, still_as_found
from core.data import datasets, workspace_changes, workspaces
from tests.cli_support import run_cli
from tests.run_support import finished
from tests.test_data_issues import planted
from waits import PAGE_S
from app_support import router as router_mode  # noqa: F401 (fixture, asked for by name)

SAMPLE = "Sample48"
HOME = str(Path(__file__).resolve().parent.parent / "Home.py")


@pytest.fixture
def ws():
    return workspaces.derive(SAMPLE, "Main")


def header(info: datasets.DatasetInfo) -> bytes:
    return (info.path / workspaces.HEADER).read_bytes()


def ws_class(info: datasets.DatasetInfo, ref: str) -> int:
    return next(r["class_id"] for r in datasets.read_index(info) if r["file"] == ref)


def where(name: str, ref: str) -> tuple[str, int] | None:
    row = next((r for r in datasets.read_index(datasets.get_dataset(name)) if r["file"] == ref
                or r.get("id") == ref), None)
    return None if row is None else (row["split"], row["class_id"])


# -- confident learning on small arrays ----------------------------------------------------------------------------

def test_thresholds_are_the_mean_self_confidence_per_class_and_issues_need_a_confident_other_class():
    labels = np.array([0, 0, 1, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.2, 0.8]])
    np.testing.assert_allclose(label_issues.class_thresholds(labels, probs),
                               [(0.9 + 0.7 + 0.2) / 3, (0.8 + 0.6 + 0.9) / 3])
    issues, suggested = label_issues.find_label_issues(labels, probs)
    assert issues.tolist() == [5] and suggested.tolist() == [1]  # image 3 (0.6 < t1 = 0.767) is not confident
    np.testing.assert_allclose(label_issues.self_confidence(labels, probs), [0.9, 0.7, 0.8, 0.6, 0.9, 0.2])


def test_an_image_whose_label_the_model_predicts_confidently_is_never_an_issue():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5) * 0.3, 400)
    labels = rng.integers(0, 5, 400)
    issues, _ = label_issues.find_label_issues(labels, probs)
    thresholds = label_issues.class_thresholds(labels, probs)
    confident = (probs.argmax(1) == labels) & (probs[np.arange(400), labels] >= thresholds[labels])
    assert not set(issues) & set(np.flatnonzero(confident)) and len(issues) > 0
    scores = label_issues.self_confidence(labels, probs)[issues]
    assert (np.diff(scores) >= 0).all()  # ranked, lowest self-confidence first


def test_cross_validated_probabilities_find_flipped_labels_that_in_sample_ones_would_hide():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (4, 8))
    truth = np.repeat(np.arange(4), 50)
    x = centres[truth] + rng.normal(0, 1, (200, 8))
    given = truth.copy()
    flipped = rng.choice(200, 8, replace=False)
    given[flipped] = (truth[flipped] + 1) % 4
    probs, classes = label_issues.cross_validated_probs(x, given * 10, seed=0)  # any class ids
    assert classes.tolist() == [0, 10, 20, 30]
    issues, suggested = label_issues.find_label_issues(given, probs)
    assert set(issues) == set(flipped) and (suggested == truth[issues]).all()
    again, _ = label_issues.cross_validated_probs(x, given * 10, seed=0)
    np.testing.assert_array_equal(again, probs)  # seeded


@pytest.mark.parametrize("labels, probs, msg", [([0, 2], [[0.5, 0.5], [0.5, 0.5]], "column indices 0..1"),
                                                ([0], [[0.5, 0.5], [0.5, 0.5]], "one row per label")])
def test_bad_arrays_are_refused(labels, probs, msg):
    with pytest.raises(ValueError, match=msg):
        label_issues.find_label_issues(np.array(labels), np.array(probs))


def test_cross_validation_refuses_too_few_images():
    with pytest.raises(ValueError, match="at least 10 images"):
        label_issues.cross_validated_probs(np.zeros((6, 3)), np.arange(6))


# -- workspace changes ---------------------------------------------------------------------------------------------

def test_relabelling_base_images_is_one_change_that_undo_takes_back(ws):
    before = datasets.get_dataset("Main")
    rows = datasets.read_index(before, "train")[:3]
    files = [r["file"] for r in rows]
    n = workspace_changes.relabel_images("Main", files, class_id=14)
    after = datasets.get_dataset("Main")
    assert n == 3 and [where("Main", f) for f in files] == [("train", 14)] * 3
    assert after.fingerprint != before.fingerprint
    assert sum(after.counts["train"].values()) == sum(before.counts["train"].values())
    assert after.counts["train"][14] == before.counts["train"][14] + sum(r["class_id"] != 14 for r in rows)
    arrays = datasets.load_split(after, "train")
    assert [int(arrays.labels[arrays.files.index(f)]) for f in files] == [14, 14, 14]
    assert workspace_changes.undo_list("Main")[-1] == "relabel 3 images as 14: Stop"
    workspace_changes.undo("Main")
    assert datasets.get_dataset("Main").fingerprint == before.fingerprint
    assert [where("Main", f) for f in files] == [("train", r["class_id"]) for r in rows]


def test_relabelling_each_image_to_its_own_class_is_one_change(ws):
    files = [r["file"] for r in datasets.read_index(ws, "test")[:2]]
    workspace_changes.relabel_images("Main", files, class_id=[3, 5])
    assert [where("Main", f) for f in files] == [("test", 3), ("test", 5)]
    assert workspace_changes.undo_list("Main")[-1] == "relabel 2 images"


@pytest.mark.parametrize("call, msg", [
    (lambda f: workspace_changes.relabel_images("Main", [f], class_id=99), "has no class 99"),
    (lambda f: workspace_changes.relabel_images("Main", [f, "nope.png"], class_id=3), "not in workspace"),
    (lambda f: workspace_changes.relabel_images("Main", [], class_id=3), "no images given"),
    (lambda f: workspace_changes.relabel_images("Main", [f], class_id=workspaces.EXTRA_CLASS), "Extra bucket"),
    (lambda f: workspace_changes.move_images("Main", [f], split="dev"), "unknown split 'dev'"),
    (lambda f: workspace_changes.move_images("Main", [f, "nope.png"], split="val"), "not in workspace"),
    (lambda f: workspace_changes.delete_images("Main", ["nope.png"]), "not in workspace")])
def test_bad_requests_change_nothing(ws, call, msg):
    f = datasets.read_index(ws, "train")[0]["file"]
    head = header(ws)
    with pytest.raises(ValueError, match=msg):
        call(f)
    assert header(ws) == head


def test_an_uploads_augmented_variants_move_with_it(ws):
    images = list(np.random.default_rng(0).integers(0, 256, (4, 48, 48, 3), dtype=np.uint8))
    recipe = {"recipe": {"groups": ["blur"], "seed": 1}}
    ids = workspace_changes.add_images("Main", images, split="train", class_id=14, sources=["a.png"] * 4,
                                       records=[{}, {"parent_index": 0, **recipe}, {"parent_index": 1, **recipe},
                                                {}])  # an upload, its variant, a variant of that, another upload
    assert workspace_changes.move_images("Main", [ids[0]], split="val") == 1
    assert [where("Main", i)[0] for i in ids] == ["val", "val", "val", "train"]
    workspace_changes.undo("Main")
    assert [where("Main", i)[0] for i in ids] == ["train"] * 4
    workspace_changes.move_images("Main", [ids[1]], split="test")  # a variant alone moves with its own variants
    assert [where("Main", i)[0] for i in ids] == ["train", "test", "test", "train"]


# -- actions on findings -------------------------------------------------------------------------------------------

def test_acting_on_a_built_dataset_derives_a_workspace_and_acts_there():
    base = datasets.get_dataset(SAMPLE)
    files = [r["file"] for r in datasets.read_index(base, "val")[:2]]
    with pytest.raises(ValueError, match="built dataset and never changes; name a workspace"):
        label_actions.act(SAMPLE, files, "remove")
    done = label_actions.act(SAMPLE, files, "move", split="test", workspace="Fixes")
    assert done.derived and done.dataset == "Fixes"
    assert done.message == "moved 2 images to test in the new workspace Fixes"
    assert [where("Fixes", f)[0] for f in files] == ["test", "test"]  # the base's ids carry into the workspace
    assert [where(SAMPLE, f)[0] for f in files] == ["val", "val"]  # the built dataset did not change
    one = label_actions.act("Fixes", files[:1], "relabel", class_id=14)
    assert not one.derived and one.message == "relabelled 1 image as 14: Stop"
    assert label_actions.act("Fixes", files[1:], "remove").message == "moved 1 image to the trash"
    assert where("Fixes", files[1]) is None
    workspace_changes.undo("Fixes")
    assert where("Fixes", files[1]) == ("test", where(SAMPLE, files[1])[1])


@pytest.mark.parametrize("kwargs, msg", [({"action": "relabel", "class_id": 99}, "has no class 99"),
                                         ({"action": "move", "split": "dev"}, "unknown split 'dev'"),
                                         ({"action": "remove", "refs": ["nope.png"]}, "1 image not in Sample48"),
                                         ({"action": "extra"}, "Extra bucket holds added images only"),
                                         ({"action": "paint"}, "unknown action 'paint'")])
def test_bad_actions_on_a_built_dataset_create_no_workspace(kwargs, msg):
    refs = kwargs.pop("refs", [datasets.read_index(datasets.get_dataset(SAMPLE), "val")[0]["file"]])
    with pytest.raises(ValueError, match=msg):
        label_actions.act(SAMPLE, refs, workspace="Fixes", **kwargs)
    assert not workspaces.is_workspace("Fixes")


def test_resolving_a_class_by_id_or_name():
    info = datasets.get_dataset(SAMPLE)
    assert label_actions.resolve_class(info, "14") == 14 and label_actions.resolve_class(info, "stop") == 14
    with pytest.raises(ValueError, match="has no class 'Purple'; give a class id or name"):
        label_actions.resolve_class(info, "Purple")


def test_findings_acted_on_are_left_out_of_a_stale_result_and_come_back_with_undo():
    planted()
    run = finished(runs.start("issues", IssuesRun(model="benchmark", dataset="Planted", split="test")))
    assert run["status"] == "done", run.get("error")
    fresh = shown_issues("benchmark", "Planted", "test")
    assert not fresh.stale and fresh.issues.mislabelled[0]["file"] == "test/1/te004.png"
    done = label_actions.act("Planted", ["test/1/te004.png"], "relabel", class_id=[14], workspace="PlantedFix")
    carried = shown_issues("benchmark", done.dataset, "test")
    assert carried.stale and carried.found_on == "Planted" and carried.hidden == 1
    assert "test/1/te004.png" not in {r["file"] for r in carried.issues.mislabelled}
    assert carried.issues.leaks == fresh.issues.leaks and carried.issues.outliers == fresh.issues.outliers
    workspace_changes.undo("PlantedFix")
    back, hidden = still_as_found(fresh.issues, datasets.read_index(datasets.get_dataset("PlantedFix")))
    assert hidden == 0 and back.mislabelled == fresh.issues.mislabelled


# -- command line --------------------------------------------------------------------------------------------------

def test_cli_finds_issues_as_json_and_reuses_the_valid_run(data_root):
    planted()
    first = run_cli("issues", "find", "--dataset", "Planted", "--split", "test", "--model", "benchmark", "--json",
                    root=data_root)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert set(out) == {"run", "mislabelled", "leaks", "outliers"}
    assert out["mislabelled"][0] == {"image_id": "test/1/te004.png", "given": 1, "suggested": 14,
                                     "score": out["mislabelled"][0]["score"]}
    assert out["leaks"][0]["image_id"] == "test/17/te016.png" and out["leaks"][0]["near"] == "train/17/tr020.png"
    again = json.loads(run_cli("issues", "find", "--dataset", "Planted", "--split", "test", "--model", "benchmark",
                               "--json", root=data_root).stdout)
    assert again["run"] == out["run"] and len(runs.list_runs("issues")) == 1
    bad = run_cli("issues", "find", "--dataset", "Planted", "--split", "test", "--model", "nope", root=data_root)
    assert bad.returncode != 0 and "nope" in bad.stderr


def test_cli_relabels_by_class_name_or_id_and_undoes(ws, data_root):
    f = datasets.read_index(ws, "train")[0]["file"]
    head = header(ws)
    for to, msg in (("Purple", "has no class 'Purple'"), ("99", "has no class '99'")):
        bad = run_cli("images", "relabel", "--dataset", "Main", "--to", to, f, root=data_root)
        assert bad.returncode != 0 and msg in bad.stderr
    bad = run_cli("images", "relabel", "--dataset", "Main", "--to", "14", "nope.png", root=data_root)
    assert bad.returncode != 0 and "not in workspace" in bad.stderr
    built = run_cli("images", "relabel", "--dataset", SAMPLE, "--to", "14", f, root=data_root)
    assert built.returncode != 0 and "derive a workspace" in built.stderr
    assert header(ws) == head
    done = run_cli("images", "relabel", "--dataset", "Main", "--to", "Stop", f, "--json", root=data_root)
    assert done.returncode == 0 and json.loads(done.stdout) == {"relabelled": 1} and where("Main", f)[1] == 14
    assert run_cli("images", "undo", "--dataset", "Main", root=data_root).stdout.startswith("undone: relabel 1")
    assert datasets.get_dataset("Main").fingerprint == ws.fingerprint and where("Main", f)[1] == ws_class(ws, f)


# -- the Data issues tab -------------------------------------------------------------------------------------------


def _issues_tab() -> AppTest:
    """Explore's Data issues tab on the planted dataset, benchmark on test, before Find is pressed."""
    planted()
    at = AppTest.from_file(HOME, default_timeout=PAGE_S)
    at.run()
    at.switch_page("pages/explore.py").run()
    at.selectbox(key="dataset").set_value("Planted").run()
    at.selectbox(key="issues_model").set_value("benchmark").run()
    at.selectbox(key="issues_split").set_value("test").run()
    return at


def test_data_issues_tab_finds_acts_in_a_derived_workspace_and_undoes(router_mode):
    at = _issues_tab()
    assert at.button(key="issues_go").label == "Find data issues"
    at.button(key="issues_go").click().run()
    assert not at.exception, at.exception
    (run,) = runs.list_runs("issues")
    assert finished(run["id"])["status"] == "done"
    at.run()
    assert not at.exception, at.exception
    labels = [t.label for t in at.tabs]
    assert "Likely mislabelled (1)" in labels and "Leakage (1)" in labels
    assert at.button(key="issues_go").label == "Find again"
    tables = [t.value for t in at.dataframe]
    mis = next(t for t in tables if "Suggested" in t.columns)
    assert mis.iloc[0]["Label"] == "1: Speed limit (30km/h)" and mis.iloc[0]["Suggested"] == "14: Stop"
    assert mis.iloc[0]["Image"].startswith("data:image/png;base64,")
    leak = next(t for t in tables if "Matching image" in t.columns)
    assert leak.iloc[0]["Its split"] == "train" and leak.iloc[0]["Matching image"].startswith("data:image/png")
    version = datasets.get_dataset("Planted").fingerprint
    apply = at.button(key="issues_mislabelled_apply")
    assert apply.disabled  # nothing picked yet
    at.toggle(key=f"issues_table_mislabelled_{version}_{run['id']}_every").set_value(True).run()
    assert at.button(key="issues_mislabelled_apply").label == "Apply to 1 image in a new workspace"
    at.text_input(key="issues_mislabelled_workspace").set_value("PlantedFix").run()
    at.button(key="issues_mislabelled_apply").click().run()
    assert not at.exception, at.exception
    assert any("Relabelled 1 image as 14: Stop in the new workspace PlantedFix" in s.value for s in at.success)
    assert at.selectbox(key="dataset").value == "PlantedFix" and where("PlantedFix", "test/1/te004.png")[1] == 14
    assert where("Planted", "test/1/te004.png")[1] == 1
    labels = [t.label for t in at.tabs]
    assert "Likely mislabelled (0)" in labels and "Leakage (1)" in labels  # acted-on row dropped, the rest stay
    assert any("found on Planted" in i.value and "1 finding acted on since is hidden" in i.value for i in at.info)
    at.button(key="issues_undo").click().run()
    assert not at.exception, at.exception
    assert where("PlantedFix", "test/1/te004.png")[1] == 1
    assert "Likely mislabelled (1)" in [t.label for t in at.tabs]


def test_make_more_like_these_opens_the_generate_page_with_the_picked_findings(router_mode):
    at = _issues_tab()
    at.button(key="issues_go").click().run()
    (run,) = runs.list_runs("issues")
    assert finished(run["id"])["status"] == "done"
    at.run()
    assert at.button(key="issues_mislabelled_generate").disabled  # nothing picked yet
    version = datasets.get_dataset("Planted").fingerprint
    at.toggle(key=f"issues_table_mislabelled_{version}_{run['id']}_every").set_value(True).run()
    at.button(key="issues_mislabelled_generate").click().run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Make more like these"]
    assert at.radio(key="gen_source").value == "dataset" and at.selectbox(key="gen_dataset").value == "Planted"
    assert at.text_area(key="gen_refs").value == "test/1/te004.png"
