"""Exports: a workspace as a zip the folder importer reads back, a model as TorchScript plus its card, a report as
CSV/JSON with class names, the Predict page's CSV; the CLI; the download buttons (AppTest); the rough edges of
Home, Predict and Added images."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from conftest import random_images, smooth_images
from core.analysis import novelty, prediction, report_export, reports
from core.analysis.evaluation import predict_arrays, summarise
from core.cli.main import main as cli
from core.data import builds, datasets, workspace_changes, workspaces
from core.data import export as data_export
from core.data.images import MEAN, STD, encode_png, pixel_hash, preprocess
from core.data.importers import SourceError, import_folder
from core.learning import export as model_export
from core.learning import models, registry
from waits import PAGE_S, wait_until
from app_support import router_mode  # noqa: F401 (autouse: AppTests through Home.py's router)

HOME = str(Path(__file__).resolve().parent.parent / "Home.py")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def out(tmp_path):
    """An empty folder for export targets (the test's data root lives beside it, in tmp_path)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# -- builders ------------------------------------------------------------------------------------------------------

def changed_workspace(name: str = "Main") -> tuple[datasets.DatasetInfo, int]:
    """Sample48 workspace with a new class (pictogram, images in every split, an augmented variant, one in Extra)
    and a base image moved from train to test. Returns (info, new class id)."""
    workspaces.derive("Sample48", name)
    cid = workspace_changes.add_class(name, "New sign", pictogram=smooth_images(1, 40, seed=9)[0])
    imgs = list(random_images(4, (50, 40), seed=3))
    workspace_changes.add_images(name, imgs[:3], split=["train", "val", "test"], class_id=cid,
                                 sources=["a.png", "b.png", "a.png"],
                                 records=[{"upload": "a.png", "recipe": {}},
                                          {"upload": "b.png", "recipe": {}},
                                          {"upload": "a.png", "recipe": {"groups": ["blur", "noise"], "variant": 2}}])
    workspace_changes.add_images(name, imgs[3:], split=workspaces.EXTRA, class_id=workspaces.EXTRA_CLASS,
                                 sources=["x.png"])
    first = datasets.list_files(datasets.get_dataset(name), "train", class_id=14)[0]
    workspace_changes.move_images(name, [first], split="test")
    return datasets.get_dataset(name), cid


def small_model(name: str = "small48", *, architecture: str = "published", dataset: str = "Sample48",
                n: int = 48, metrics: dict | None = None, favour: int | None = None) -> registry.ModelInfo:
    """A registered untrained model; ``favour``: a class whose output bias is raised so it is always the top-1."""
    torch.manual_seed(0)
    net = models.build_model(architecture, n)
    if favour is not None:
        with torch.no_grad():
            net.classifier.bias[favour] = 100.0
    classes = datasets.get_dataset(dataset).classes
    names = [classes.get(i, f"sign {i}") for i in range(n)]  # the dataset's names: 14 is "Stop"
    ck = models.make_checkpoint(net, architecture=architecture, class_ids=list(range(n)), class_names=names,
                                dataset=dataset, dataset_fingerprint="abc", parent="benchmark", mode="incremental",
                                epochs=1, history=[], metrics=metrics or {"best_val_acc": 0.25}, config={})
    return registry.register(name, ck)


def make_report(model: str = "benchmark", report_id: str = "r1") -> reports.Report:
    info = datasets.get_dataset("Sample48")
    split = datasets.load_split(info, "test")
    ckpt = models.load_checkpoint(registry.model_path(model))
    net = models.model_from_checkpoint(ckpt)
    preds, ips = predict_arrays(net, ckpt["class_ids"], split.images[:40], split.labels[:40], files=split.files[:40])
    summary = summarise(preds, class_ids=ckpt["class_ids"], images_per_s=ips)
    reports.save_report(report_id, summary, preds, model=model, model_version="v", dataset=info, split="test")
    return reports.load_report(report_id)


def per_class_pixels(info: datasets.DatasetInfo) -> dict:
    """{(split, class id): Counter of pixel hashes}: a dataset's content, whatever its file names and order."""
    out: dict = {}
    for split in datasets.SPLITS:
        arrays = datasets.load_split(info, split)
        for image, label in zip(arrays.images, arrays.labels):
            out.setdefault((split, int(label)), Counter())[pixel_hash(image)] += 1
    return out


# -- dataset export and the round trip -------------------------------------------------------------------------------

def test_workspace_zip_round_trips_through_the_folder_importer(out):
    info, cid = changed_workspace()
    res = data_export.export_dataset("Main", out / "main.zip")
    assert res.per_split == {s: info.split_size(s) for s in datasets.SPLITS} and res.left_out == 1
    with zipfile.ZipFile(res.path) as zf:
        names = zf.namelist()
        zf.extractall(out / "unzipped")
    assert all(n.split("/")[0] == f"{cid}_New_sign" for n in names if n.startswith(f"{cid}_"))
    assert {"labels.csv", "signnames.csv", "dataset.json"} <= set(names)
    assert cli(["datasets", "import", "--layout", "folder", "--path", str(out / "unzipped"),
                "--name", "Back"]) == 0
    back = datasets.get_dataset("Back")
    # the same images per split and class: the move and the additions kept (the Extra bucket has no class to go in)
    assert back.counts == {s: c for s, c in info.counts.items() if s in datasets.SPLITS}
    assert back.classes[cid] == "New sign" and back.classes[14] == "Stop"
    assert per_class_pixels(back) == per_class_pixels(info)  # the same pixels


def test_the_zip_itself_imports_and_derives_a_workspace_with_the_same_counts(out):
    info, _ = changed_workspace()
    data_export.export_dataset("Main", out / "main.zip")
    assert cli(["datasets", "import", "--layout", "folder", "--path", str(out / "main.zip"), "--name", "Back"]) == 0
    assert cli(["datasets", "derive", "--from", "Back", "--name", "Again"]) == 0
    again = datasets.get_dataset("Again")
    assert again.kind == "workspace" and again.counts == {s: c for s, c in info.counts.items() if s in datasets.SPLITS}
    assert per_class_pixels(again) == per_class_pixels(info)


@pytest.mark.parametrize("member, data, message", [
    ("../evil.png", b"x", "outside the folder"),
    ("/abs/evil.png", b"x", "outside the folder"),
    ("bomb.png", b"\0" * (1 << 22), "zip bomb"),
])
def test_a_zip_with_traversal_or_a_bomb_is_refused_and_nothing_is_built(out, member, data, message):
    bad = out / "bad.zip"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("0_x/a.png", encode_png(np.zeros((8, 8, 3), np.uint8)))
        zf.writestr(member, data)
    before = {d.name for d in datasets.list_datasets()}
    with pytest.raises(SourceError, match=message):
        builds.import_dataset("folder", bad, name="Bad")
    assert {d.name for d in datasets.list_datasets()} == before
    assert not (out / "evil.png").exists() and not Path("/abs/evil.png").exists()


def test_labels_csv_names_classes_and_provenance_in_words(out):
    _, cid = changed_workspace()
    data_export.export_dataset("Main", out / "m.zip")
    with zipfile.ZipFile(out / "m.zip") as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("labels.csv").decode())))
    assert set(rows[0]) >= {"file", "split", "class_id", "class_name", "provenance"}
    new = {r["split"]: r for r in rows if r["class_id"] == str(cid)}
    assert new["train"]["provenance"] == "upload a.png" and new["val"]["provenance"] == "upload b.png"
    assert new["test"]["provenance"] == "augmented variant 2 of upload a.png (blur, noise)"
    stop = [r for r in rows if r["class_id"] == "14"]
    assert stop[0]["class_name"] == "Stop" and stop[0]["provenance"].startswith("GTSRB")
    assert not any("{" in r["provenance"] for r in rows)


@pytest.mark.parametrize("record, text", [
    ({"source": "GTSRB train (gtsrb_train_32.npz)", "origin": "base:train"}, "GTSRB train (gtsrb_train_32.npz)"),
    ({"upload": "stop.jpg", "recipe": {}}, "upload stop.jpg"),
    ({"upload": "stop.jpg", "recipe": {"edit": {"crop": [0, 0, 5, 5], "rotate": 90, "flip": None}}},
     "edit of upload stop.jpg (cropped, rotated 90\u00b0)"),
    ({"id": "abc", "source": "cli.png"}, "added to the workspace from cli.png"),
])
def test_provenance_text(record, text):
    assert data_export.provenance_text(record) == text


def test_export_refuses_an_existing_file_unless_overwrite(out):
    workspaces.derive("Sample48", "Main")
    target = out / "out.zip"
    target.write_bytes(b"keep me")
    with pytest.raises(ValueError, match="exists already.*--force"):
        data_export.export_dataset("Main", target)
    assert target.read_bytes() == b"keep me"
    data_export.export_dataset("Main", target, overwrite=True)
    assert zipfile.is_zipfile(target)


@pytest.mark.parametrize("where, message", [
    ("missing/out.zip", "does not exist"),
    ("a_file/out.zip", "is a file, not a folder"),
    ("out.txt", "must end in .zip"),
    ("/proc/out.zip", "cannot be written"),  # even root cannot make files there
])
def test_export_refuses_an_unwritable_target_and_changes_nothing(out, where, message):
    (out / "a_file").write_text("x")
    before = sorted(out.rglob("*"))
    with pytest.raises(ValueError, match=message):
        data_export.export_dataset("Sample48", out / where if not where.startswith("/") else where)
    assert sorted(out.rglob("*")) == before


def test_export_of_an_unknown_dataset_names_the_known_ones(out):
    with pytest.raises(ValueError, match="no dataset named 'Nope'; available: .*Sample48"):
        data_export.export_dataset("Nope", out / "x.zip")
    assert not list(out.iterdir())


def test_a_failure_mid_export_leaves_no_zip_and_no_temp_file(out):
    workspaces.derive("Sample48", "Main")
    target = out / "out.zip"

    def fail(fraction, message="", entry=None):
        if 0 < fraction < 1:
            raise RuntimeError("disk full (injected)")
    with pytest.raises(RuntimeError, match="injected"):
        data_export.export_dataset("Main", target, progress=fail)
    assert list(out.iterdir()) == []


@pytest.mark.faults
def test_killing_the_process_mid_export_leaves_nothing_at_the_target(out, data_root):
    """A real process, SIGKILLed while it writes the zip: no file (whole or partial) at the target path."""
    target, marker = out / "out.zip", out / "halfway"
    code = (f"import pathlib, time\nfrom core.data import export\n"
            f"def hold(f, m='', e=None):\n"
            f"    if 0 < f < 1:\n        pathlib.Path({str(marker)!r}).touch()\n        time.sleep(600)\n"
            f"export.export_dataset('Sample48', {str(target)!r}, progress=hold)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "TSW_DATA_ROOT": str(data_root)})
    try:
        wait_until(lambda: marker.exists() or proc.poll() is not None, what="the export to reach its middle")
        assert proc.poll() is None, "the export ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not target.exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")]  # only the hidden temp file is left


# -- the folder importer -----------------------------------------------------------------------------------------

def test_folder_importer_reads_id_and_name_class_folders(out):
    for folder, seed in (("14_Stop", 0), ("3", 1)):
        (out / folder).mkdir()
        (out / folder / "a.png").write_bytes(encode_png(random_images(1, 8, seed)[0]))
    src = import_folder(out)
    assert sorted(src.splits["train"].labels.tolist()) == [3, 14]
    (out / "signs").mkdir()
    with pytest.raises(SourceError, match="must start with the integer class id"):
        import_folder(out)


def test_labelled_folder_refuses_an_unknown_split_with_its_line(out):
    (out / "1_A").mkdir()
    (out / "1_A" / "a.png").write_bytes(encode_png(random_images(1, 8)[0]))
    (out / "labels.csv").write_text("file,split,class_id,class_name\n1_A/a.png,training,1,A\n")
    with pytest.raises(SourceError, match="line 2: unknown split 'training'; valid splits: train, val, test"):
        import_folder(out)
    (out / "labels.csv").write_text("file,split,class_id,class_name\n1_A/a.png,val,1,A\n")
    src = import_folder(out)
    assert list(src.splits) == ["val"] and src.class_names == {1: "A"}


# -- model export ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("architecture", models.ARCHITECTURES)
def test_model_exports_as_torchscript_with_the_checkpoints_logits(out, architecture):
    small_model("m", architecture=architecture)
    res = model_export.export_model("m", out / "m.pt")
    net, card = model_export.load_exported(res.path)
    x = preprocess(random_images(5, 48, seed=7))  # another batch size than the export's own check
    ckpt = models.load_checkpoint(registry.get_model("m").path)
    with torch.inference_mode():
        expected = models.model_from_checkpoint(ckpt)(x)
        got = torch.jit.load(str(res.path))(x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert json.loads(res.card_path.read_text()) == card == res.card
    assert card["classes"][14] == {"index": 14, "class_id": 14, "name": "Stop"}
    assert card["preprocessing"]["mean"] == pytest.approx(MEAN.tolist()) and card["preprocessing"]["input_size"] == 48
    assert card["preprocessing"]["colour_order"] == "RGB"
    assert card["dataset"] == {"name": "Sample48", "version": "abc"} and card["parent"] == "benchmark"
    assert card["architecture"] == architecture and card["metrics"] == {"best_val_acc": 0.25}


def test_model_card_preprocessing_reproduces_the_workbench_tensor():
    """A user following the card's numbers by hand gets exactly the tensor the workbench feeds the network."""
    card = model_export.model_card(models.load_checkpoint(registry.get_model("benchmark").path), name="b", version="v")
    img = random_images(1, 48, seed=1)[0]
    p = card["preprocessing"]
    by_hand = ((img.astype(np.float32) * p["scale"] - np.array(p["mean"], np.float32))
               / np.array(p["std"], np.float32)).transpose(2, 0, 1)[None]
    assert np.allclose(by_hand, preprocess(img).numpy(), atol=1e-5)
    assert p["std"] == pytest.approx(STD.tolist())


def test_model_export_refuses_unknown_models_and_existing_files(out):
    with pytest.raises(ValueError, match="no model named 'nope'; available: .*benchmark"):
        model_export.export_model("nope", out / "x.pt")
    (out / "b.json").write_text("{}")
    with pytest.raises(ValueError, match="b.json exists already"):
        model_export.export_model("benchmark", out / "b.pt")
    assert sorted(p.name for p in out.iterdir()) == ["b.json"]
    assert (out / "b.json").read_text() == "{}"


# -- report export ---------------------------------------------------------------------------------------------------

def test_report_csv_and_json_carry_class_names(out):
    report = make_report()
    preds = report_export.predictions_frame(report)
    assert len(preds) == 40 and set(preds.columns) >= {"true_id", "true_name", "predicted_name", "confidence"}
    row = preds.iloc[0]
    assert row["true_name"] == report.class_name(int(row["true_id"])) != f"class {row['true_id']}"
    assert bool(row["correct"]) == (row["true_id"] == row["predicted_id"])
    res = report_export.export_report("r1", out / "p.csv")
    back = list(csv.DictReader(open(res.path)))
    assert len(back) == 40 and back[0]["predicted_name"] == row["predicted_name"]
    report_export.export_report("r1", out / "c.csv", table="per_class")
    per_class = list(csv.DictReader(open(out / "c.csv")))
    assert any(r["name"] == "Stop" for r in per_class) and "f1" in per_class[0]
    report_export.export_report("r1", out / "s.csv", table="summary")
    summary = {r["key"]: r["value"] for r in csv.DictReader(open(out / "s.csv"))}
    assert summary["model"] == "benchmark" and float(summary["accuracy"]) == pytest.approx(report.summary["accuracy"])
    doc = json.loads(report_export.export_report("r1", out / "r.json", fmt="json").path.read_text())
    assert set(doc) == {"summary", "per_class", "confusion", "predictions"}
    assert len(doc["confusion"]["names"]) == len(doc["confusion"]["matrix"]) and "Stop" in doc["confusion"]["names"]
    assert doc["predictions"][0]["true_name"] == row["true_name"]


@pytest.mark.parametrize("kwargs, message", [
    ({"fmt": "xml"}, "unknown format 'xml'; valid formats: csv, json"),
    ({"table": "all"}, "unknown table 'all'; valid tables: predictions, per_class, summary"),
])
def test_report_export_refuses_bad_options(out, kwargs, message):
    make_report()
    with pytest.raises(ValueError, match=message):
        report_export.export_report("r1", out / "x.csv", **kwargs)
    assert not list(out.iterdir())


def test_report_export_of_an_unknown_report_says_how_to_make_one(out):
    with pytest.raises(ValueError, match="no report 'zz'; there are no reports yet .*python -m core evaluate"):
        report_export.export_report("zz", out / "x.csv")
    make_report()
    with pytest.raises(ValueError, match="no report 'zz'; known reports: r1"):
        report_export.export_report("zz", out / "x.csv")


# -- prediction: the CSV with the novelty score, pictograms of workspace classes --------------------------------------

def test_predictions_csv_has_the_novelty_score_and_threshold():
    info = registry.get_model("benchmark")
    ckpt = models.load_checkpoint(info.path)
    net = models.model_from_checkpoint(ckpt)
    detector = novelty.load_or_fit(info.path, net, ckpt)
    stop = datasets.load_split("Sample48", "test")
    img = stop.images[stop.labels == 14][0]
    results = prediction.predict_images(ckpt, [("stop.png", encode_png(img)), ("bad.png", b"nope")], model=net,
                                        detector=detector)
    rows = list(csv.DictReader(io.StringIO(prediction.predictions_csv(results))))
    assert [r["file"] for r in rows] == ["stop.png", "bad.png"]
    assert float(rows[0]["novelty_score"]) == results[0].novelty["score"]
    assert float(rows[0]["novelty_threshold"]) == pytest.approx(detector.thresholds[novelty.DEFAULT_METHOD], abs=1e-4)
    assert rows[0]["novelty_method"] == novelty.DEFAULT_METHOD and rows[0]["probably_novel"] in ("True", "False")
    assert rows[1]["novelty_score"] == "" and "bad.png" in rows[1]["error"]


def test_a_new_workspace_class_has_its_pictogram_for_predictions():
    info, cid = changed_workspace()
    ckpt = {"class_ids": [14, cid], "class_names": ["Stop", "New sign"], "dataset": "Main"}
    found = prediction.class_pictograms(ckpt, [14, cid])
    assert found[cid] == workspaces.pictogram(info, cid) and found[cid].is_file()
    assert found[14] is not None and found[14].name == "14.png"  # the GTSRB pictogram
    workspaces.delete("Main")
    assert prediction.class_pictograms(ckpt, [cid]) == {cid: None}  # the dataset is gone: no pictogram, no error


# -- CLI -------------------------------------------------------------------------------------------------------------

def test_cli_exports_dataset_model_and_report(out, capsys):
    changed_workspace()
    make_report()
    assert cli(["export", "dataset", "Main", "--out", str(out / "m.zip")]) == 0
    said = capsys.readouterr().out
    assert "1,011 images" in said and "49 classes" in said and "1 image without a class (Extra) left out" in said
    assert cli(["export", "model", "benchmark", "--out", str(out / "b.pt")]) == 0
    assert (out / "b.json").is_file() and "43 classes" in capsys.readouterr().out
    assert cli(["export", "report", "r1", "--format", "json", "--out", str(out / "r.json")]) == 0
    assert json.loads((out / "r.json").read_text())["summary"]["report"] == "r1"
    before = (out / "m.zip").read_bytes()
    assert cli(["export", "dataset", "Main", "--out", str(out / "m.zip")]) == 2
    assert "exists already; choose another name, or overwrite it (--force)" in capsys.readouterr().err
    assert (out / "m.zip").read_bytes() == before
    assert cli(["export", "dataset", "Main", "--out", str(out / "m.zip"), "--force"]) == 0
    assert cli(["export", "model", "nope", "--out", str(out / "n.pt")]) == 2
    assert "no model named 'nope'" in capsys.readouterr().err
    assert cli(["export", "report", "r1", "--format", "csv", "--table", "per_class",
                "--out", str(out / "c.csv")]) == 0
    assert "per-class table as CSV" in capsys.readouterr().out


# -- pages -----------------------------------------------------------------------------------------------------------


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=PAGE_S)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def test_home_separates_test_and_validation_accuracy():
    small_model("valonly", metrics={"best_val_acc": 0.5})
    at = open_page()
    table = at.dataframe[1].value.set_index("model")
    assert "accuracy" not in table.columns
    assert table.loc["valonly", "val accuracy"] == 0.5 and np.isnan(table.loc["valonly", "test accuracy"])
    assert table.loc["benchmark", "test accuracy"] > 0.98 and table.loc["benchmark", "val accuracy"] > 0.98
    assert table.loc["benchmark", "test set"] == "gtsrb_test_32.npz (12,630 images)"


def test_home_prepares_a_model_file_and_its_card_for_download():
    at = open_page()
    at.selectbox(key="home_export_model").set_value("incremental48").run()
    assert len(at.get("download_button")) == 0  # nothing exported until asked
    at.button(key="export_model_incremental48_prepare").click().run()
    assert not at.exception, at.exception
    files = at.session_state["export_ready"]["model"]["files"]
    assert [f[1] for f in files] == ["incremental48.pt", "incremental48.json"]
    net = torch.jit.load(io.BytesIO(files[0][2]))
    assert net(torch.zeros(2, 3, 48, 48)).shape == (2, 48)
    assert json.loads(files[1][2])["model"] == "incremental48"
    assert len(at.get("download_button")) == 2
    assert any("48 classes" in c.value for c in at.caption)


def test_added_images_prepares_the_workspace_zip_and_shows_provenance_in_words():
    _, cid = changed_workspace()
    at = open_page("pages/added_images.py")
    assert len(at.get("download_button")) == 0
    at.button(key="export_ws_Main_prepare").click().run()
    assert not at.exception, at.exception
    (label, name, data, mime), = at.session_state["export_ready"]["dataset"]["files"]
    assert name == "Main.zip" and "labels.csv" in zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert len(at.get("download_button")) == 1
    assert any("1,011 images" in c.value and "49 classes" in c.value and "1 image without a class" in c.value
               for c in at.caption)
    provenance = [c.value for c in at.caption if c.value.startswith("Provenance:")]
    assert provenance == ["Provenance: added to the workspace from x.png"]  # the newest first: the Extra image
    labels = at.selectbox(key="added_edit_pick").options  # as shown
    assert not any("class -1" in s for s in labels) and any("Extra (no class yet)" in s for s in labels)
    assert any(f"{cid}: New sign" in s for s in labels)


def test_added_images_says_1_image_not_1_images():
    _, cid = changed_workspace()
    at = open_page("pages/added_images.py")
    rec = next(r for r in workspaces.current_added(datasets.get_dataset("Main")) if r["split"] == "val")
    at.checkbox(key=f"added_sel_{rec['id']}").check().run()
    at.button(key="added_move").click().run()
    assert any(s.value == "Moved 1 image to train." for s in at.success), [s.value for s in at.success]


def _png(image: np.ndarray) -> tuple[str, bytes, str]:
    return ("sign.png", encode_png(image), "image/png")


def test_predict_shows_the_pictogram_of_a_new_workspace_class():
    _, cid = changed_workspace()
    small_model("ws", dataset="Main", n=cid + 1, favour=cid)
    at = open_page("pages/predict.py")
    at.selectbox(key="predict_model").set_value("ws").run()
    at.file_uploader(key="predict_files").set_value([_png(random_images(1, 48)[0])]).run()
    assert not at.exception, at.exception
    bars = [b.proto.text for b in at.get("progress")]
    assert len(bars) == 5 and bars[0].startswith(f"{cid}: New sign \u2014 ") and bars[0].endswith(" %")
    assert len(at.get("image")) == 5  # a pictogram for each: the new class's from the workspace, GTSRB's for the rest
    assert any(m.value.startswith(f"**sign.png** \u2192 **{cid}: New sign**") for m in at.markdown)


def test_predict_drops_the_previous_models_results_before_the_new_model_loads(monkeypatch):
    """Switching models: the results' place is emptied (an element replaces the previous results' block) before
    the new model's slow steps start, so the old model's numbers are never shown as the new one's."""
    import ui.cache
    from streamlit.runtime.forward_msg_queue import ForwardMsgQueue
    small_model("other")
    sent: list = []
    original_enqueue, original_detector = ForwardMsgQueue.enqueue, ui.cache.novelty_detector

    def record(self, msg):
        if msg.HasField("delta"):
            d = msg.delta
            kind = d.new_element.WhichOneof("type") if d.HasField("new_element") else d.WhichOneof("type")
            sent.append((tuple(msg.metadata.delta_path), kind))
        return original_enqueue(self, msg)

    def detector(path):
        sent.append(("slow step starts", path))
        return original_detector(path)

    monkeypatch.setattr(ForwardMsgQueue, "enqueue", record)
    monkeypatch.setattr(ui.cache, "novelty_detector", detector)
    at = open_page("pages/predict.py")
    at.file_uploader(key="predict_files").set_value([_png(random_images(1, 48)[0])]).run()
    sent.clear()
    at.selectbox(key="predict_model").set_value("other").run()
    assert not at.exception, at.exception
    start = next(i for i, e in enumerate(sent) if e[0] == "slow step starts")
    uploader = max(p for p, kind in sent[:start] if kind in ("file_uploader", "file_uploader_widget"))
    after = uploader[:-1] + (uploader[-1] + 1,)
    assert (after, "empty") in sent[:start], sent[:start]
    assert any("Predictions by other" in s.value for s in at.subheader)
    assert not any("benchmark" in m.value for m in at.markdown)


def _downloads_script(report_id: str, workspace: str) -> None:
    from ui.export_views import report_downloads, workspace_download
    report_downloads(report_id)
    workspace_download(workspace)


def test_report_downloads_offer_three_files_and_unknown_names_get_a_message():
    make_report()
    at = AppTest.from_function(_downloads_script, args=("r1", "Sample48"), default_timeout=PAGE_S).run()
    assert not at.exception, at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Predictions (CSV)", "Per-class metrics (CSV)", "Whole report (JSON)"]
    assert not at.error
    at = AppTest.from_function(_downloads_script, args=("zz", "Nope"), default_timeout=PAGE_S).run()
    assert not at.exception, at.exception
    assert [e.value.split(";")[0] for e in at.error] == ["no report 'zz'", "no dataset named 'Nope'"]
    assert not at.get("download_button") and not at.button
