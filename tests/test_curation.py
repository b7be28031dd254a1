"""Curation: imports (variants, duplicates, leakage, smart segregation, provenance), the Extra bucket, classes,
added-image listing, edits, trash and undo, the import run and the CLI."""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import smooth_images
from core.data import datasets, uploads, workspace_changes, workspaces
from core.learning import models, registry
from core.curation import added as curation_added, importing as curation
from core import runs
from core.cli.config_flags import add_config_flags
from core.cli.main import build_parser
from core.curation.import_run import ImportRun, stage_uploads
from core.data.images import encode_png
from cli_support import run_cli  # noqa: E402
from tests.run_support import finished
from waits import PAGE_S

PROJECT = Path(__file__).resolve().parent.parent
SAMPLE = "Sample48"


def png(image: np.ndarray) -> bytes:
    return encode_png(np.ascontiguousarray(image))


def jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def ups(images, prefix: str = "up") -> list[uploads.Upload]:
    return [u for k, im in enumerate(images) for u in uploads.read_bytes(f"{prefix}{k}.png", png(im))]


@pytest.fixture
def ws():
    workspaces.derive(SAMPLE, "Main")
    return workspace_changes.add_class("Main", "Chinese sign")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return models.build_model("published", 48)


def settings(cid: int, **kw) -> curation.ImportSettings:
    return curation.ImportSettings(**{"dataset": "Main", "class_id": cid, **kw})


@pytest.mark.parametrize("kw, msg", [({"to": "nowhere"}, "unknown destination"),
                                     ({"variants": 2}, "at least one augmentation group"),
                                     ({"variants": 2, "groups": ("sparkle",)}, "unknown augmentation groups"),
                                     ({"val_ratio": 1.0}, r"val ratio must lie in \[0, 1\)"),
                                     ({"on_leak": "ignore"}, "unknown on_leak"),
                                     ({"to": "extra"}, "Extra bucket takes unlabelled images")])
def test_bad_import_settings_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        curation.ImportSettings(dataset="Main", class_id=48, **kw).validate()


def test_variants_are_seeded_per_upload_and_preview_is_what_gets_written(ws):
    u = ups(smooth_images(2, 40, seed=1))
    a = curation.variants(u[0], groups=("noise", "shift_rotate"), n=3, seed=5)
    b = curation.variants(u[0], groups=("noise", "shift_rotate"), n=3, seed=5)
    assert len(a) == 3 and all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    assert not np.array_equal(a[0][0], a[1][0]) and not np.array_equal(a[0][0], u[0].image)
    assert a[0][1]["groups"] == ["noise", "shift_rotate"] and a[2][1]["variant"] == 3
    other = curation.variants(u[1], groups=("noise", "shift_rotate"), n=1, seed=5)
    assert other[0][1]["seed"] != a[0][1]["seed"]
    s = settings(ws, to="test", groups=("noise", "shift_rotate"), variants=3, seed=5)
    shown = curation.preview(u, s)
    result = curation.import_images(u, s)
    records = {r["id"]: r for r in workspaces.current_added(datasets.get_dataset("Main"))}
    info = datasets.get_dataset("Main")
    written = [np.asarray(Image.open(info.image_path(records[i]["file"]))) for i in result["ids"][:4]]
    assert all(np.array_equal(x, y) for x, y in zip(shown[0][1], written))


def test_import_to_test_keeps_uploads_plus_variants_with_provenance_and_refuses_bad_files(ws):
    good = ups(smooth_images(3, 40, seed=2))
    bad = uploads.read_bytes("broken.png", b"not an image at all")
    s = settings(ws, to="test", groups=("noise", "colour"), variants=2)
    before = datasets.get_dataset("Main")
    result = curation.import_images(good + bad, s)
    assert result["added"] == 9 and result["by_split"] == {"train": 0, "val": 0, "test": 9}
    assert [e["file"] for e in result["errors"]] == ["broken.png"] and result["leaks"] == []
    info = datasets.get_dataset("Main")
    assert info.split_size("test") == before.split_size("test") + 9 and info.counts["test"][ws] == 9
    recs = {r["id"]: r for r in workspaces.current_added(info)}
    originals = [r for r in recs.values() if r["parent"] is None]
    assert sorted(r["upload"] for r in originals) == ["up0.png", "up1.png", "up2.png"]
    for r in recs.values():
        assert r["upload_sha256"] and r["batch"] and r["added"] > 0 and r["class_id"] == ws
        if r["parent"] is not None:
            parent = recs[r["parent"]]
            assert parent["parent"] is None and parent["upload"] == r["upload"]
            assert r["recipe"]["groups"] == ["noise", "colour"] and r["recipe"]["seed"] > 0
    assert sum(curation_added.is_augmented(r) for r in recs.values()) == 6


def test_exact_duplicates_of_workspace_images_and_within_the_batch_are_refused_per_file(ws):
    base = datasets.load_split(SAMPLE, "train")
    dup_of_base = uploads.read_bytes("copy.png", png(base.images[3]))
    new = smooth_images(1, 40, seed=3)[0]
    batch = dup_of_base + uploads.read_bytes("a.png", png(new)) + uploads.read_bytes("again.png", png(new))
    result = curation.import_images(batch, settings(ws, to="test"))
    assert result["added"] == 1
    errors = {e["file"]: e["error"] for e in result["errors"]}
    cid = int(base.labels[3])
    name = datasets.get_dataset("Main").classes[cid]
    assert f"already in the workspace ({cid}: {name} in train)" in errors["copy.png"]
    assert base.files[3] not in errors["copy.png"]  # no internal paths in front of a user
    assert "the same image as a.png in this batch" in errors["again.png"]
    again = curation.import_images(uploads.read_bytes("b.png", png(new)), settings(ws, to="test"))
    assert again["added"] == 0 and "uploaded as a.png" in again["errors"][0]["error"]


@pytest.mark.parametrize("on_leak, added", [("report", 1), ("skip", 0)])
def test_near_duplicates_in_other_splits_are_reported_or_skipped(ws, on_leak, added):
    base = datasets.load_split(SAMPLE, "train")
    big = np.asarray(Image.fromarray(base.images[0]).resize((64, 64)))  # re-encoded, resized copy
    leak = uploads.read_bytes("resized_copy.jpg", jpeg(big))
    result = curation.import_images(leak, settings(ws, to="test", on_leak=on_leak))
    assert result["added"] == added
    (hit,) = result["leaks"]
    assert hit["file"] == "resized_copy.jpg" and hit["split"] == "test" and hit["near_split"] == "train"
    cid = int(base.labels[0])
    assert hit["near"] == f"{cid}: {datasets.get_dataset('Main').classes[cid]} in train"
    assert hit["similarity"] >= curation.NEAR_DUPLICATE


def test_smart_segregation_keeps_groups_together_and_follows_the_ratio(ws, model):
    images = smooth_images(20, 40, seed=4)
    near = np.asarray(Image.open(io.BytesIO(jpeg(images[0], 95))))  # a near-duplicate of upload 0
    batch = ups(images) + uploads.read_bytes("near0.jpg", jpeg(near, 95))
    result = curation.import_images(batch, settings(ws, groups=("noise",), variants=2, val_ratio=0.25), model=model)
    assert result["added"] == 63 and result["by_split"]["test"] == 0
    assert 0.1 <= result["by_split"]["val"] / 63 <= 0.4
    recs = workspaces.current_added(datasets.get_dataset("Main"))
    split_of_upload = {}
    for r in recs:
        split_of_upload.setdefault(r["upload"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of_upload.values())  # an upload and its variants: one split
    assert split_of_upload["up0.png"] == split_of_upload["near0.jpg"]  # near-duplicates: one split


def test_a_small_batch_still_gets_a_val_group_and_trainval_needs_a_model(ws, model):
    result = curation.import_images(ups(smooth_images(2, 40, seed=6)), settings(ws, val_ratio=0.2), model=model)
    assert result["by_split"]["val"] == 1 and result["by_split"]["train"] == 1
    with pytest.raises(ValueError, match="needs a model"):
        curation.import_images(ups(smooth_images(1, 40, seed=7)), settings(ws))


def test_the_extra_bucket_holds_unlabelled_images_outside_every_split(ws):
    s = curation.ImportSettings(dataset="Main", class_id=workspaces.EXTRA_CLASS, to=workspaces.EXTRA)
    result = curation.import_images(ups(smooth_images(2, 40, seed=8)), s)
    assert result["by_split"][workspaces.EXTRA] == 2
    info = datasets.get_dataset("Main")
    assert info.split_size(workspaces.EXTRA) == 2
    assert all(len(datasets.load_split(info, sp)) == datasets.get_dataset(SAMPLE).split_size(sp)
               for sp in datasets.SPLITS)
    with pytest.raises(ValueError, match="give it a class"):
        workspace_changes.move_images("Main", result["ids"][:1], split="train")
    workspace_changes.move_images("Main", result["ids"][:1], split="train", class_id=ws)
    info = datasets.get_dataset("Main")
    assert info.split_size(workspaces.EXTRA) == 1 and info.counts["train"][ws] == 1


def test_classes_rename_and_remove_only_when_empty(ws):
    workspace_changes.rename_class("Main", ws, "  China sign  ")
    assert datasets.get_dataset("Main").classes[ws] == "China sign"
    with pytest.raises(ValueError, match="has a class named 'Stop' already"):
        workspace_changes.rename_class("Main", ws, "stop")
    with pytest.raises(ValueError, match=r"still has \d+ image"):
        workspace_changes.remove_class("Main", 14)
    workspace_changes.remove_class("Main", ws)
    assert ws not in datasets.get_dataset("Main").classes
    with pytest.raises(ValueError, match="has no class"):
        workspace_changes.rename_class("Main", ws, "x")
    for bad in ["", "   ", "x" * 81, "bell\x07"]:
        with pytest.raises(ValueError, match="class name"):
            workspace_changes.add_class("Main", bad)


def test_a_class_pictogram_is_kept_and_shown_as_the_reference(ws):
    pic = smooth_images(1, 50, seed=9)[0]
    cid = workspace_changes.add_class("Main", "With picture", pictogram=pic)
    p = workspaces.pictogram(datasets.get_dataset("Main"), cid)
    assert p is not None and np.array_equal(np.asarray(Image.open(p)), pic)
    assert workspaces.pictogram(datasets.get_dataset("Main"), ws) is None


def test_smart_segregation_uses_the_benchmark_when_registered_else_the_first_model():
    assert curation.default_segregation_model(["a", curation.SEGREGATION_MODEL]) == curation.SEGREGATION_MODEL
    assert curation.default_segregation_model(["a", "b"]) == "a"
    assert curation.default_segregation_model([]) is None


def test_images_add_flags_take_their_defaults_choices_and_help_from_the_import_settings():
    wanted = ("variants", "val_ratio", "seed", "on_leak")
    fields = {f.name: f for f in dataclasses.fields(curation.ImportSettings)}
    args = build_parser().parse_args(["images", "add", "x.png", "--dataset", "Main"])
    assert {k: getattr(args, k) for k in wanted} == {k: fields[k].default for k in wanted}
    parser = argparse.ArgumentParser()
    add_config_flags(parser, curation.ImportSettings, only=wanted, help_prefix="add: ")
    text = " ".join(parser.format_help().split())
    assert all(f"add: {' '.join(fields[k].metadata['help'].split())}" in text for k in wanted)
    assert parser.parse_args(["--val-ratio", "0.3", "--on-leak", "skip"]).val_ratio == 0.3
    with pytest.raises(SystemExit):
        parser.parse_args(["--on-leak", "ignore"])  # choices from the field: report, skip
    with pytest.raises(ValueError, match="no fields"):
        add_config_flags(argparse.ArgumentParser(), curation.ImportSettings, only=("vibes",))


def test_list_added_filters_and_pages_newest_first(ws):
    curation.import_images(ups(smooth_images(5, 40, seed=10)), settings(ws, to="test", groups=("noise",), variants=1))
    recs = workspaces.current_added(datasets.get_dataset("Main"))
    page = curation_added.list_added(recs, page=2, page_size=4)
    assert (page.total, page.pages, page.page, len(page.records)) == (10, 3, 2, 4)
    assert [r["seq"] for r in curation_added.list_added(recs, page_size=3).records] == [10, 9, 8]
    assert curation_added.list_added(recs, augmented=True).total == 5
    assert curation_added.list_added(recs, augmented=False, split="test", class_id=ws).total == 5
    assert curation_added.list_added(recs, split="train").total == 0
    assert curation_added.list_added(recs, page=99, page_size=4).page == 3


def test_move_delete_edit_and_undo_restore_exact_versions(ws):
    result = curation.import_images(ups(smooth_images(3, 40, seed=11)), settings(ws, to="test"))
    a, b, c = result["ids"]
    v0 = datasets.get_dataset("Main").fingerprint
    workspace_changes.move_images("Main", [a], split="val")
    assert datasets.get_dataset("Main").counts["val"][ws] == 1
    workspace_changes.delete_images("Main", [b])
    info = datasets.get_dataset("Main")
    assert b not in {r["id"] for r in workspaces.current_added(info)} and info.counts["test"][ws] == 1
    new = curation_added.edit_image("Main", c, crop=(5, 5, 35, 30), rotate=90, flip="horizontal")
    info = datasets.get_dataset("Main")
    recs = {r["id"]: r for r in workspaces.current_added(info)}
    assert c not in recs and recs[new]["parent"] == c and recs[new]["recipe"]["edit"]["rotate"] == 90
    img = np.asarray(Image.open(info.image_path(recs[new]["file"])))
    assert img.shape == (30, 25, 3)  # 30 wide x 25 high, rotated
    assert workspace_changes.undo_list("Main")[-3:] == ["move 1 image to val", "delete 1 image",
                                                        f"edit image {c}"]
    assert workspace_changes.undo("Main") == f"edit image {c}"
    workspace_changes.undo("Main")
    workspace_changes.undo("Main")
    assert datasets.get_dataset("Main").fingerprint == v0
    assert {a, b, c} <= {r["id"] for r in workspaces.current_added(datasets.get_dataset("Main"))}


@pytest.mark.parametrize("kw, msg", [({"crop": (0, 0, 99, 10)}, "does not fit"), ({"crop": (5, 5, 5, 9)}, "does not fit"),
                                     ({"rotate": 45}, "rotate must be one of"), ({"flip": "diagonal"}, "flip must")])
def test_bad_edits_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        curation_added.apply_edit(smooth_images(1, 40)[0], **kw)


def test_a_crash_or_cancel_mid_import_leaves_the_previous_version(ws, monkeypatch):
    v0 = datasets.get_dataset("Main").fingerprint
    batch = ups(smooth_images(3, 40, seed=12))
    from core.base import progress
    with pytest.raises(progress.Cancelled):
        curation.import_images(batch, settings(ws, to="test"), should_stop=lambda: True)
    real = os.replace

    def crash(src, dst):
        if str(dst).endswith(workspaces.HEADER):
            raise OSError("killed (simulated)")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        curation.import_images(batch, settings(ws, to="test"))
    monkeypatch.setattr(os, "replace", real)
    info = datasets.get_dataset("Main")
    assert info.fingerprint == v0 and workspaces.current_added(info) == []


def test_an_import_run_stages_uploads_inside_the_data_root_and_removes_them(ws, data_root):
    items = [("../../escape.png", png(smooth_images(1, 40, seed=13)[0])), ("bad.png", b"\x89PNG broken")]
    paths = stage_uploads(items)
    assert all(Path(p).resolve().is_relative_to(data_root.resolve()) for p in paths)
    assert Path(paths[0]).name == "escape.png"
    cfg = ImportRun(settings(ws, to="test"), paths=tuple(paths), staged=True)
    run = finished(runs.start("import", cfg))
    assert run["status"] == "done", run.get("error")
    assert run["result"]["added"] == 1 and run["result"]["errors"][0]["file"] == "bad.png"
    assert not any(Path(p).exists() for p in paths)
    assert run["inputs"]["dataset"]["name"] == "Main"
    assert runs.config_from_json("import", run["config"]) == cfg  # one settings type, through the record and back
    with pytest.raises(ValueError, match="built dataset and never changes"):
        runs.start("import", ImportRun(curation.ImportSettings(dataset=SAMPLE, class_id=1, to="test"), paths=("x",)))


def _cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    return run_cli(*args, root=root)


def test_cli_classes_and_images_commands_as_documented(data_root, tmp_path):
    assert _cli("datasets", "derive", "--from", SAMPLE, "--name", "Main", root=data_root).returncode == 0
    out = _cli("classes", "add", "--dataset", "Main", "--name", "New sign", "--json", root=data_root)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"class_id": 48, "name": "New sign"}
    folder = tmp_path / "in"
    folder.mkdir()
    for k, im in enumerate(smooth_images(3, 40, seed=14)):
        (folder / f"s{k}.png").write_bytes(png(im))
    (folder / "junk.png").write_bytes(b"")
    torch.manual_seed(0)
    m = models.build_model("published", 48)
    ck = models.make_checkpoint(m, architecture="published", class_ids=list(range(48)),
                                class_names=[str(i) for i in range(48)], dataset=SAMPLE, dataset_fingerprint="x",
                                parent=None, mode="scratch", epochs=1, history=[], metrics={}, config={})
    models.save_checkpoint(ck, data_root / "models" / "feat.pt")
    registry.register("feat", ck, overwrite=True)
    out = _cli("images", "add", "--dataset", "Main", "--class", "48", str(folder), "--augment", "noise,colour",
               "--variants", "2", "--to", "trainval", "--val-ratio", "0.3", "--model", "feat", "--json",
               root=data_root)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert set(res) == {"added", "by_split", "ids", "errors", "leaks", "duplicates"} and res["added"] == 9
    assert set(res["by_split"]) == {"train", "val", "test"} and res["by_split"]["val"] >= 3
    assert len(res["errors"]) == 1 and "junk.png" in res["errors"][0]["file"]
    listed = json.loads(_cli("images", "list", "--dataset", "Main", "--json", root=data_root).stdout)
    assert {"id", "class_id", "split", "parent", "recipe", "file"} <= set(listed[0]) and len(listed) == 9
    first = res["ids"][0]
    assert _cli("images", "move", "--dataset", "Main", "--to", "test", first, root=data_root).returncode == 0
    assert _cli("images", "delete", "--dataset", "Main", res["ids"][1], root=data_root).returncode == 0
    assert len(json.loads(_cli("images", "list", "--dataset", "Main", "--json", root=data_root).stdout)) == 8
    undo = _cli("images", "undo", "--dataset", "Main", root=data_root)
    assert undo.returncode == 0 and "delete 1 image" in undo.stdout
    assert len(json.loads(_cli("images", "list", "--dataset", "Main", "--json", root=data_root).stdout)) == 9
    bad = _cli("images", "add", "--dataset", SAMPLE, "--class", "1", str(folder), "--to", "test", root=data_root)
    assert bad.returncode == 2 and "never changes" in bad.stderr and "Traceback" not in bad.stderr


def test_killing_the_process_at_the_commit_of_an_import_leaves_the_previous_version(ws, data_root):
    v0 = datasets.get_dataset("Main").fingerprint
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(PROJECT)!r}); sys.path.insert(0, {str(PROJECT / 'tests')!r})
from conftest import smooth_images
from core.data import uploads, workspaces
from core.curation import importing as curation
from core.data.images import encode_png
real = workspaces.atomic_write_json
def die_at_commit(path, value):
    if path.name == workspaces.HEADER:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 with the images and the new state on disk
    real(path, value)
workspaces.atomic_write_json = die_at_commit
batch = [u for k, im in enumerate(smooth_images(3, 40, seed=30)) for u in uploads.read_bytes(f"k{{k}}.png", encode_png(im))]
curation.import_images(batch, curation.ImportSettings(dataset="Main", class_id={ws}, to="test"))
"""
    env = dict(os.environ, TSW_DATA_ROOT=str(data_root), NO_ALBUMENTATIONS_UPDATE="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=PAGE_S)
    assert out.returncode == -9, out.stderr
    info = datasets.get_dataset("Main")
    assert info.fingerprint == v0 and workspaces.current_added(info) == []
    assert len(datasets.load_split(info, "test")) == datasets.get_dataset(SAMPLE).split_size("test")
    # the dead process's lock is gone: the same import now goes through
    again = curation.import_images(ups(smooth_images(3, 40, seed=30), prefix="k"), settings(ws, to="test"))
    assert again["added"] == 3
