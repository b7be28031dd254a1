"""The command line, run as a user would: ``python -m core ...`` in a subprocess."""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_support import run_cli
from core.learning import models

PROJECT = Path(__file__).resolve().parent.parent



@pytest.fixture
def model_path(tmp_path) -> Path:
    torch.manual_seed(0)
    m = models.build_model("published", 48)
    ck = models.make_checkpoint(m, architecture="published", class_ids=list(range(48)),
                                class_names=[f"sign {i}" for i in range(48)], dataset="Sample48",
                                dataset_fingerprint="x", parent=None, mode="scratch", epochs=1, history=[],
                                metrics={}, config={})
    return models.save_checkpoint(ck, tmp_path / "m.pt")


def huge_png(path: Path, w: int = 20_000, h: int = 20_000) -> None:
    """A tiny file whose PNG header claims w x h pixels (a decompression bomb shape)."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", w, h) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def test_datasets_list_json_includes_the_embedded_sample(data_root):
    out = run_cli("datasets", "list", "--json", root=data_root)
    assert out.returncode == 0, out.stderr
    items = {d["name"]: d for d in json.loads(out.stdout)}
    s = items["Sample48"]
    assert s["num_classes"] == 48 and set(s["splits"]) == {"train", "val", "test"} and s["splits"]["test"] > 0


def test_evaluate_prints_the_documented_json(data_root, model_path):
    out = run_cli("evaluate", "--model", str(model_path), "--dataset", "Sample48", "--split", "test", "--json",
                  root=data_root)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert {"n", "accuracy", "macro_f1", "images_per_s", "metrics", "per_class", "confusion"} <= set(d)
    assert d["n"] == sum(v["support"] for v in d["per_class"].values())
    assert {"accuracy", "macro_f1", "mcc", "macro_specificity", "macro_plr"} <= set(d["metrics"])
    assert len(d["confusion"]) == 48 and np.asarray(d["confusion"]).sum() == d["n"]
    assert {"f1", "precision", "recall", "specificity", "plr", "nlr", "bcr", "ber", "mcc", "support"} <= set(d["per_class"]["14"])


def test_a_cli_evaluation_is_a_run_whose_report_the_app_lists(data_root, model_path):
    out = run_cli("evaluate", "--model", str(model_path), "--dataset", "Sample48", "--split", "val", "--classes",
                  "model", "--json", root=data_root)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    from core.analysis import reports
    from core import runs
    (listed,) = reports.list_reports()                      # the list the Evaluate page reads
    assert listed["id"] == d["report"] and listed["split"] == "val" and listed["n"] == d["n"]
    report = reports.load_report(d["report"])
    assert report.stale is None and report.summary["accuracy"] == d["accuracy"]
    assert report.summary["model"] == str(model_path) and report.summary["classes"] == "model"
    (run,) = runs.list_runs("evaluate")
    assert run["id"] == d["report"] and run["status"] == "done" and run["result"]["report"] == d["report"]


def test_evaluate_on_an_npz_file(data_root, model_path, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", images=rng.integers(0, 255, (20, 32, 32, 3), dtype=np.uint8),
             labels=rng.integers(0, 48, 20))
    out = run_cli("evaluate", "--model", str(model_path), "--npz", str(tmp_path / "t.npz"), "--json", root=data_root)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n"] == 20
    from core.analysis import reports
    assert reports.list_reports() == []  # an npz is no dataset of the app: no version, no images, so no report


def test_evaluate_record_keeps_the_result_in_the_checkpoint(data_root, model_path):
    out = run_cli("evaluate", "--model", str(model_path), "--dataset", "Sample48", "--split", "test", "--record",
                  "--json", root=data_root)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    metrics = models.load_checkpoint(model_path)["metrics"]
    assert metrics["test_acc"] == d["accuracy"] and metrics["test_set"] == "Sample48/test" and metrics["test_n"] == d["n"]
    from core.analysis import explain, reports
    from core.learning import registry
    report = reports.load_report(d["report"])  # the checkpoint changed on disk, its weights did not
    assert report.summary["model_version"] == registry.file_version(model_path)
    assert explain.report_model_file(report) == str(model_path)  # the report's images can still be explained
    assert [r["model_version"] for r in reports.list_reports()] == [registry.file_version(model_path)]


def test_evaluate_with_a_corrupt_model_gives_one_clear_error(data_root, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    out = run_cli("evaluate", "--model", str(bad), "--dataset", "Sample48", "--json", root=data_root)
    assert out.returncode == 2 and "bad.pt" in out.stderr and "Traceback" not in out.stderr


def test_predict_json_with_good_and_bad_files(data_root, model_path, tmp_path):
    good = tmp_path / "good sign (1).ppm"
    Image.new("RGB", (50, 40), (200, 0, 0)).save(good, format="PPM")
    webp = tmp_path / "sign.webp"
    Image.new("RGBA", (30, 30), (0, 0, 200, 128)).save(webp, format="WEBP")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    huge = tmp_path / "huge.png"
    huge_png(huge)
    out = run_cli("predict", "--model", str(model_path), str(good), str(webp), str(text), str(huge), "--json",
                  root=data_root)
    assert out.returncode == 1  # some files were refused
    res = json.loads(out.stdout)
    assert [Path(r["file"]).name for r in res] == [good.name, webp.name, text.name, huge.name]
    for r in res[:2]:
        assert len(r["top"]) == 5 and {"class_id", "name", "p"} <= set(r["top"][0])
        ps = [t["p"] for t in r["top"]]
        assert ps == sorted(ps, reverse=True) and 0 < sum(ps) <= 1.0001
    assert "not an image" in res[2]["error"]
    assert "too large" in res[3]["error"] and "limit" in res[3]["error"]


def test_train_help_documents_every_mode(data_root):
    out = run_cli("train", "--help", root=data_root)
    for mode in ("scratch", "resume", "transfer_freeze", "incremental"):
        assert mode in out.stdout


def test_train_one_epoch_on_the_sample_writes_a_checkpoint(data_root, tmp_path):
    out = run_cli("train", "--dataset", "Sample48", "--epochs", "1", "--out", str(tmp_path / "x.pt"), "--quiet",
                  root=data_root)
    assert out.returncode == 0, out.stderr
    ck = models.load_checkpoint(tmp_path / "x.pt")
    assert ck["dataset"] == "Sample48" and len(ck["history"]) == 1


def test_train_distils_from_a_teacher_checkpoint(data_root, tmp_path):
    teacher = tmp_path / "teacher.pt"
    out = run_cli("train", "--dataset", "Sample48", "--epochs", "1", "--out", str(teacher), "--quiet", root=data_root)
    assert out.returncode == 0, out.stderr
    out = run_cli("train", "--dataset", "Sample48", "--epochs", "1", "--teacher", str(teacher), "--distill-weight",
                  "2", "--out", str(tmp_path / "s.pt"), "--quiet", root=data_root)
    assert out.returncode == 0, out.stderr
    cfg = models.load_checkpoint(tmp_path / "s.pt")["config"]
    assert cfg["teachers"] == (str(teacher),) and cfg["distill_weight"] == 2.0


def test_import_official_layout_splits_by_track(data_root, tmp_path):
    src = tmp_path / "GTSRB"
    for cid in (0, 1):
        d = src / "Final_Training" / "Images" / f"{cid:05d}"
        d.mkdir(parents=True)
        rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for track in range(3):
            for frame in range(2):
                name = f"{track:05d}_{frame:05d}.ppm"
                Image.new("RGB", (30 + track, 31), (cid * 100, track * 50, frame * 90)).save(d / name, format="PPM")
                rows.append(f"{name};{30 + track};31;1;1;20;20;{cid}")
        (d / f"GT-{cid:05d}.csv").write_text("\n".join(rows) + "\n")
    out = run_cli("datasets", "import", "--layout", "official", "--path", str(src), "--name", "MyGTSRB",
                  root=data_root)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["num_classes"] == 2 and d["splits"]["train"] + d["splits"]["val"] == 12 and d["splits"]["val"] == 4
    from core.data import datasets
    os.environ["TSW_DATA_ROOT"] = str(data_root)
    rows = datasets.read_index(datasets.get_dataset("MyGTSRB"))
    val_tracks = {r["track"] for r in rows if r["split"] == "val"}
    train_tracks = {r["track"] for r in rows if r["split"] == "train"}
    assert val_tracks and not (val_tracks & train_tracks)


def test_import_with_a_csv_missing_columns_names_the_file(data_root, tmp_path):
    src = tmp_path / "K"
    src.mkdir()
    (src / "Train.csv").write_text("Foo,Bar\n1,2\n")
    out = run_cli("datasets", "import", "--layout", "kaggle", "--path", str(src), "--name", "K", root=data_root)
    assert out.returncode == 2 and "Train.csv" in out.stderr and "ClassId" in out.stderr


def test_train_help_lists_every_train_config_field(data_root):
    import dataclasses
    from core.learning.training import TrainConfig
    out = run_cli("train", "--help", root=data_root)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
        assert " ".join(f.metadata["help"].split())[:40] in text, f.name
    assert "--arch" in text and "--teacher" in text and "--no-augment" in text


def test_runs_list_and_models_list_print_json_newest_first(data_root):
    assert run_cli("datasets", "derive", "--from", "Sample48", "--name", "Main", root=data_root).returncode == 0
    out = run_cli("images", "add", "--dataset", "Main", "--class", "extra", str(PROJECT / "data" / "sample" /
                  "pictograms" / "14.png"), "--json", root=data_root)
    assert out.returncode == 0, out.stderr
    runs_out = run_cli("runs", "list", "--json", root=data_root)
    assert runs_out.returncode == 0, runs_out.stderr
    (rec,) = json.loads(runs_out.stdout)
    assert rec["kind"] == "import" and rec["status"] == "done" and rec["id"].startswith("import-")
    assert json.loads(run_cli("runs", "list", "--kind", "train", "--json", root=data_root).stdout) == []
    models_out = json.loads(run_cli("models", "list", "--json", root=data_root).stdout)
    names = [m["name"] for m in models_out]
    assert "benchmark" in names and all(len(m["version"]) == 16 for m in models_out)


def test_flags_that_would_be_ignored_are_refused(data_root):
    out = run_cli("train", "--resume-run", "train-x", "--dataset", "Sample48", root=data_root)
    assert out.returncode == 2 and "its own settings" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("evaluate", "--model", "artifacts/benchmark.pt", "--dataset", "Sample48", "--classes", "model",
                  "--record", root=data_root)
    assert out.returncode == 2 and "drop --classes model" in out.stderr
