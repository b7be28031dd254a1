"""The experiment scripts' code, fast on tiny datasets (the experiments themselves never run in CI)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "experiments"))


def _tiny(name: str, n_classes: int, seed: int) -> None:
    from core.data.built import SplitToWrite, write_dataset
    rng = np.random.default_rng(seed)

    def split(per: int, tag: str) -> SplitToWrite:
        labels = np.repeat(np.arange(n_classes), per)
        return SplitToWrite(list(rng.integers(0, 255, (len(labels), 32, 32, 3), dtype=np.uint8)), labels,
                            [f"{tag}{i:04d}.png" for i in range(len(labels))], ["synthetic"] * len(labels),
                            [""] * len(labels), np.full((len(labels), 2), 32))

    write_dataset(name, {"train": split(3, "a"), "val": split(1, "b"), "test": split(1, "c")},
                  classes={i: f"class {i}" for i in range(n_classes)}, source="synthetic", recipe="test")


def test_seed_table_trains_evaluates_writes_every_row_and_resumes(tmp_path, data_root):
    import seed_table
    _tiny("Tiny43", 43, 0)
    _tiny("Tiny48", 48, 1)
    args = ["--map", "GTSRB=Tiny43,GTSRB_48=Tiny48,Difficult=Tiny48,Testing=Tiny48", "--scale", "0.01",
            "--results", str(tmp_path / "r.json"), "--models-dir", str(tmp_path / "models"),
            "--out", str(tmp_path / "t.md"), "--in-process", "--shipped", "published43"]
    assert seed_table.main(args) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data["models"]) == {m.name for m in seed_table.MODELS}
    inc = data["models"]["Inc48_3"]
    assert inc["epochs"] == 1 and inc["seed"] == 0 and inc["train_images"] == 48 * 3 and "--base" in inc["command"]
    md = (tmp_path / "t.md").read_text()
    assert md.count("\n| ") >= len(seed_table.ROWS) + len(seed_table.MODELS)
    assert "not run" not in md and "The published datasets are not available" in md
    assert "In-model augmentation, clean and transformed" in md and "Incremental vs scratch" in md
    shipped = data["shipped"]["published43"]  # a shipped model, on the 43-class test set only
    assert shipped["classes"] == 43 and set(shipped["evals"]) == {"GTSRB"} and shipped["evals"]["GTSRB"]["n"] == 43
    assert "| published43 | published | 43 |" in md
    # Resumable: a second run trains and evaluates nothing again.
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "models").glob("*.pt")}
    assert seed_table.main(args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "models").glob("*.pt")} == stamps
    assert json.loads((tmp_path / "r.json").read_text()) == data
    only = args[:args.index("--results")] + ["--results", str(tmp_path / "s.json"), "--models-dir",
                                              str(tmp_path / "none"), "--out", str(tmp_path / "s.md"),
                                              "--in-process", "--shipped-only", "--shipped", "published43"]
    assert seed_table.main(only) == 0  # the shipped models only: nothing trained
    fresh = json.loads((tmp_path / "s.json").read_text())
    assert fresh["models"] == {} and set(fresh["shipped"]) == {"published43"}
    assert not list((tmp_path / "none").glob("*.pt"))
    # a rebuilt test set (another fingerprint) is evaluated again; an unchanged one is not
    fresh["shipped"]["published43"]["datasets"]["GTSRB"] = "rebuilt"
    fresh["shipped"]["published43"]["evals"]["GTSRB"]["n"] = -1
    (tmp_path / "s.json").write_text(json.dumps(fresh))
    assert seed_table.main(only) == 0
    again = json.loads((tmp_path / "s.json").read_text())["shipped"]["published43"]
    assert again["evals"]["GTSRB"]["n"] == 43 and again["datasets"]["GTSRB"] != "rebuilt"


def test_group_costs_measures_each_group_and_the_mixes_and_refuses_foreign_classes(tmp_path, data_root, capsys):
    """On a tiny synthetic set: every group and mix gets an accuracy in [0, 100]; the clean accuracy, overall and on
    the darkest quarter, is what predict_proba gives; the CLI prints one JSON line per model; foreign labels are
    refused."""
    import group_costs
    import pytest
    import torch

    from core.learning import models
    from core.data.augment import list_groups
    GROUPS = list_groups()
    from core.data.datasets import get_dataset, load_split
    from core.learning.inference import predict_proba
    _tiny("Tiny", 4, 0)
    torch.manual_seed(0)
    net = models.build_model("bn_stn", 4)
    ck = models.make_checkpoint(net, architecture="bn_stn", class_ids=[0, 1, 2, 3], class_names=list("abcd"),
                                dataset="Tiny", dataset_fingerprint="x", parent=None, mode="scratch", epochs=0,
                                history=[], metrics={}, config={})
    path = models.save_checkpoint(ck, tmp_path / "m.pt")
    split = load_split(get_dataset("Tiny"), "val")
    res = group_costs.group_costs(ck, split.images, split.labels, dark_quartile=True)
    assert set(res["groups"]) == set(GROUPS) and set(res["mix"]) == {"0.15", "0.3"}
    expected = (predict_proba(models.model_from_checkpoint(ck), split.images).argmax(1) == split.labels).mean() * 100
    assert res["clean"]["all"] == round(float(expected), 2)
    # Labels made so that only the darkest of the 4 images (the darkest quarter) is classified right.
    pred = predict_proba(models.model_from_checkpoint(ck), split.images).argmax(1)
    darkest = np.argmin(split.images.reshape(len(split.images), -1).mean(1))
    labels = (pred + 1) % 4
    labels[darkest] = pred[darkest]
    clean = group_costs.group_costs(ck, split.images, labels, dark_quartile=True)["clean"]
    assert clean == {"all": 25.0, "darkest_quarter": 100.0}
    assert all(0 <= v["all"] <= 100 and 0 <= v["darkest_quarter"] <= 100 for v in res["groups"].values())
    with pytest.raises(ValueError, match="no output for classes"):
        group_costs.group_costs(ck, split.images, split.labels + 10)
    assert group_costs.main([str(path), "--dataset", "Tiny", "--split", "val"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["images"] == 4 and set(line["groups"]) == set(GROUPS) and isinstance(line["clean"], float)


def test_committee_val_scores_each_model_and_their_average_and_refuses_other_classes(tmp_path, data_root):
    import committee_val
    import pytest

    from core.learning import models
    _tiny("Tiny43", 43, 0)
    def saved(k: int, name: str) -> str:
        ckpt = models.make_checkpoint(models.build_model("published", k), architecture="published",
                                      class_ids=list(range(k)), class_names=[str(i) for i in range(k)],
                                      dataset="Tiny43", dataset_fingerprint="x", parent=None, mode="scratch",
                                      epochs=0, history=[], metrics={}, config={})
        return str(models.save_checkpoint(ckpt, tmp_path / name))

    paths = [saved(43, "m0.pt"), saved(43, "m1.pt")]
    r = committee_val.accuracies("Tiny43", "val", paths)
    assert set(r) == {*paths, "committee"} and all(0 <= v <= 100 for v in r.values())
    same = committee_val.accuracies("Tiny43", "val", [paths[0], paths[0]])
    assert same["committee"] == same[paths[0]] == r[paths[0]]  # a committee of one model is that model
    other = saved(48, "o.pt")
    with pytest.raises(ValueError, match="a committee needs the same classes"):
        committee_val.accuracies("Tiny43", "val", [paths[0], other])


def test_committee_val_against_first_counts_disagreements_and_tracks():
    import committee_val

    from core.analysis import model_diff
    from core.data.built import SplitArrays
    files = [f"f{i}" for i in range(6)]
    arrays = SplitArrays(np.zeros((6, 2, 2, 3), np.uint8), np.zeros(6, np.int64), files)
    ids = np.array([0, 1])
    first = np.tile([0.9, 0.1], (6, 1))                         # right on all six
    other = np.array([[0.1, 0.9]] * 4 + [[0.9, 0.1]] * 2)       # wrong on f0-f3
    tracks = {"f0": "t1", "f1": "t1", "f2": "t1", "f3": "t2"}   # f4, f5 untracked
    out = committee_val.against_first(arrays, ids, [first, other], ["a", "b"], tracks)
    assert out["b"] == (f"vs first: first right only 4, this right only 0, McNemar p "
                        f"{model_diff.mcnemar_exact(4, 0):.3g}, by track (2 tracks) p "
                        f"{model_diff.sign_flip_p(np.array([3, 1])):.3g}")
    assert model_diff.sign_flip_p(np.array([3, 1])) == 0.5 and model_diff.mcnemar_exact(4, 0) == 0.125
    assert "by track" not in committee_val.against_first(arrays, ids, [first, other], ["a", "b"], {})["b"]


def test_testing_like_val_weights_the_two_transformed_copies_as_testing_test_and_repeats(tmp_path, data_root):
    import pytest
    import testing_like_val
    import torch

    from core.data import builds
    from core.learning import models
    _tiny("Tiny48", 48, 1)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        ckpt = models.make_checkpoint(models.build_model("published", 48), architecture="published",
                                      class_ids=list(range(48)), class_names=[str(i) for i in range(48)],
                                      dataset="Tiny48", dataset_fingerprint="x", parent=None, mode="scratch",
                                      epochs=0, history=[], metrics={}, config={})
        paths.append(str(models.save_checkpoint(ckpt, tmp_path / f"m{seed}.pt")))
    copies = testing_like_val.transformed_copies(np.zeros((3, 32, 32, 3), np.uint8) + 128, seeds=2)
    assert [p for p, _ in copies] == [builds.TESTING_P, builds.TESTING_EXTRA_P] * 2
    r = testing_like_val.testing_like(paths, seeds=2, dataset="Tiny48")
    n_test = 48  # Tiny48's test split: one image per class, fewer than TESTING_EXTRA
    w = {builds.TESTING_P: n_test / (2 * n_test), builds.TESTING_EXTRA_P: n_test / (2 * n_test)}
    for row in r.values():
        mixed = sum(w[p] * row[f"p {p}"] for p in w)
        assert abs(row["testing-like"] - mixed) < 1e-9 and 0 <= row["testing-like"] <= 100
        assert row["sd over seeds"] >= 0
    assert testing_like_val.testing_like(paths, seeds=2, dataset="Tiny48") == r  # the same copies every time
    both = testing_like_val.testing_like(paths, seeds=2, dataset="Tiny48", committee=True)
    assert set(both) == {*paths, "committee"} and both[paths[0]] == r[paths[0]]
    one = testing_like_val.testing_like([paths[0], paths[0]], seeds=2, dataset="Tiny48", committee=True)
    assert one["committee"] == one[paths[0]]  # a committee of one model is that model
    other = models.make_checkpoint(models.build_model("published", 43), architecture="published",
                                   class_ids=list(range(43)), class_names=[str(i) for i in range(43)],
                                   dataset="Tiny48", dataset_fingerprint="x", parent=None, mode="scratch",
                                   epochs=0, history=[], metrics={}, config={})
    with pytest.raises(ValueError, match="a committee needs the same classes"):
        testing_like_val.testing_like([paths[0], str(models.save_checkpoint(other, tmp_path / "o.pt"))],
                                      seeds=1, dataset="Tiny48", committee=True)
