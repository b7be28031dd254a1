"""Make more like these (core/feedback): the methods, the generator, sources, caps, adding with provenance, the
test-split guard, the run kind, quality measures and the CLI."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from cli_support import run_cli
from conftest import smooth_images
from core import runs
from core.analysis import reports
from core.analysis.evaluate_run import EvaluateRun
from core.data import augment, datasets, workspace_changes, workspaces
from core.data.export import provenance_text
from core.feedback import generate as generation
from core.feedback import generator as gen
from core.feedback import methods, sources
from core.feedback.generate_run import GenerateRun, load_preview
from core.feedback.generator_training import GeneratorTrainConfig, train_generator
from core.feedback.quality import fid, kid
from core.learning import models, registry
from core.learning.inference import predict_proba
from tests.run_support import finished

SAMPLE = "Sample48"


def _register(name: str = "tiny", n: int = 48) -> str:
    torch.manual_seed(0)
    ck = models.make_checkpoint(models.build_model("published", n), architecture="published",
                                class_ids=list(range(n)), class_names=[f"class {i}" for i in range(n)],
                                dataset=SAMPLE, dataset_fingerprint="x", parent=None, mode="scratch", epochs=1,
                                history=[], metrics={}, config={})
    registry.register(name, ck)
    return name


def _report(model: str) -> str:
    run = finished(runs.start("evaluate", EvaluateRun(model=model, dataset=SAMPLE, split="val")))
    assert run["status"] == "done", run.get("error")
    return run["id"]


def _mistakes(k: int = 2, size: int = 32) -> list[sources.Mistake]:
    images = smooth_images(k, size, seed=3)
    return [sources.Mistake(images[i], 14, 1, 0.7, SAMPLE, f"val/14/x{i}.png", None) for i in range(k)]


@pytest.fixture
def generator_file(tmp_path):
    out = tmp_path / "gen.pt"
    train_generator(GeneratorTrainConfig(dataset=SAMPLE, epochs=1, max_images=64, batch_size=32, feature_weight=0,
                                         out=str(out)), log=lambda m: None)
    return out


def test_every_method_makes_n_images_of_the_sources_size_and_seeds_repeat(generator_file):
    model = _register()
    for size in (32, 48):
        ms = _mistakes(2, size)
        for name in methods.list_methods():
            made = generation.generate(ms, method=name, per_image=3, seed=5, model=model,
                                       generator_path=generator_file)
            assert made.images.shape == (6, size, size, 3) and made.images.dtype == np.uint8, name
            assert made.class_ids.tolist() == [14] * 6 and made.source.tolist() == [0, 0, 0, 1, 1, 1]
            again = generation.generate(ms, method=name, per_image=3, seed=5, model=model,
                                        generator_path=generator_file)
            assert np.array_equal(made.images, again.images), f"{name} is not deterministic for a seed"
            if name != "copies":  # a method changes the image; the control repeats it
                assert not np.array_equal(made.images[0], ms[0].image), name
            else:
                assert all(np.array_equal(im, ms[0].image) for im in made.images[:3])
    assert set(methods.list_methods()) == {"augment", "latent", "patch", "copies"}


def test_augment_keeps_the_candidates_the_model_finds_hardest():
    model = _register()
    ms = _mistakes(1)
    made = generation.generate(ms, method="augment", per_image=2, seed=0, model=model)
    net = models.model_from_checkpoint(models.load_checkpoint(registry.model_path(model)))
    cands = augment.augment_images(np.repeat(ms[0].image[None], 2 * methods.CANDIDATES_PER_IMAGE, 0),
                                   p=methods.SEARCH_P, seed=generation.image_seed(0, 0))
    p_true = predict_proba(net, cands)[:, 14]
    kept = predict_proba(net, made.images)[:, 14]
    assert np.allclose(np.sort(kept), np.sort(p_true)[:2], atol=1e-5)


def test_patch_changes_only_a_square_and_raises_the_confused_class():
    model = _register()
    ms = _mistakes(1, 48)
    made = generation.generate(ms, method="patch", per_image=2, seed=0, model=model)
    changed = np.abs(made.images[0].astype(int) - ms[0].image.astype(int)).max(axis=2) > 2
    ys, xs = np.nonzero(changed)
    side = int(round(methods.PATCH_SHARE * 48))
    assert ys.max() - ys.min() < side + 1 and xs.max() - xs.min() < side + 1
    net = models.model_from_checkpoint(models.load_checkpoint(registry.model_path(model)))
    before, after = predict_proba(net, ms[0].image[None])[0], predict_proba(net, made.images)
    assert (after[:, 1] - after[:, 14]).max() > before[1] - before[14]


def test_a_request_for_10000_per_image_is_capped_with_a_message():
    model = _register()
    made = generation.generate(_mistakes(1), method="copies", per_image=10_000, seed=0, model=model)
    assert len(made.class_ids) == generation.MAX_PER_IMAGE
    assert "asked for 10,000" in made.message and str(generation.MAX_PER_IMAGE) in made.message
    with pytest.raises(ValueError, match="at least 1"):
        generation.generate(_mistakes(1), method="copies", per_image=0, model=model)
    with pytest.raises(ValueError, match="augment"):
        generation.generate(_mistakes(1), method="stylegan", per_image=1, model=model)


def test_generator_checkpoints_refuse_another_class_set_and_model_files(generator_file, tmp_path):
    g = gen.load_generator(generator_file, class_ids=list(range(48)))
    assert len(g.version) == 12 and g.ckpt["dataset"] == SAMPLE
    with pytest.raises(ValueError, match="other classes"):
        gen.load_generator(generator_file, class_ids=list(range(43)))
    model43 = _register("m43", 43)
    with pytest.raises(ValueError, match="other classes"):
        generation.generate(_mistakes(1), method="latent", per_image=1, model=model43, generator_path=generator_file)
    with pytest.raises(ValueError, match="not a generator checkpoint"):
        gen.load_generator(registry.model_path(model43))
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not torch")
    with pytest.raises(ValueError, match="not a readable generator"):
        gen.load_generator(bad)
    with pytest.raises(ValueError, match="no such generator"):
        gen.load_generator(tmp_path / "none.pt")


def test_generator_training_writes_a_checkpoint_with_its_command_and_history(generator_file):
    ck = torch.load(generator_file, weights_only=True)
    assert ck["kind"] == "cvae" and ck["epochs"] == 1 and len(ck["history"]) == 1
    assert ck["command"].startswith("python -m core generator train") and ck["class_ids"] == list(range(48))
    assert os.path.getsize(generator_file) < 20 * 2 ** 20


def test_add_generated_records_provenance_as_one_change_and_guards_the_test_split():
    model = _register()
    ws = workspaces.derive(SAMPLE, "ws1")
    made = generation.generate(_mistakes(2), method="augment", per_image=2, seed=4, model=model)
    with pytest.raises(ValueError, match="derive a workspace|built"):
        generation.add_generated(SAMPLE, made)
    with pytest.raises(ValueError, match="test split"):
        generation.add_generated("ws1", made, split="test")
    assert workspaces.current_added(datasets.get_dataset("ws1")) == []  # nothing written
    done = generation.add_generated("ws1", made, keep=[0, 1, 3])
    assert len(done.ids) == 3 and "added 3 images" in done.message and "train of ws1" in done.message
    info = datasets.get_dataset("ws1")
    assert info.counts["train"][14] == ws.counts["train"][14] + 3
    rec = {r["id"]: r for r in workspaces.current_added(info)}[done.ids[2]]
    assert rec["origin"] == "generated" and rec["method"] == "augment" and rec["seed"] == 4
    assert rec["source_file"] == "val/14/x1.png" and rec["source_dataset"] == SAMPLE
    assert rec["generator_version"] == "augment v1" and rec["model"] == model and len(rec["model_version"]) == 16
    assert "generated" in provenance_text(rec) and "x1.png" in provenance_text(rec)
    forced = generation.add_generated("ws1", made, split="test", force_test=True)
    assert "warning" in forced.message


def test_from_report_takes_mistakes_and_refuses_a_report_whose_model_is_gone(tmp_path):
    model = _register()
    report = _report(model)
    ms = sources.from_report(report, limit=3)
    assert 1 <= len(ms) <= 3 and all(m.wrong and m.report == report for m in ms)
    assert ms[0].confidence >= ms[-1].confidence  # most confident mistakes first
    with pytest.raises(ValueError, match="row 99999"):
        sources.from_report(report, indices=[99999])
    registry.delete_model(model)
    with pytest.raises(ValueError, match="no longer exists"):
        sources.from_report(report)


def test_from_images_classifies_the_named_files_and_refuses_unknown_ones():
    model = _register()
    rows = datasets.read_index(datasets.get_dataset(SAMPLE), "val")[:2]
    ms = sources.from_images(SAMPLE, [r["file"] for r in rows], model=model)
    assert [m.class_id for m in ms] == [r["class_id"] for r in rows] and all(m.predicted_id is not None for m in ms)
    with pytest.raises(ValueError, match="not in Sample48"):
        sources.from_images(SAMPLE, ["val/nope.png"], model=model)


def test_the_generate_run_saves_a_preview_the_page_can_add():
    model = _register()
    report = _report(model)
    rows = tuple(int(i) for i in sources.report_rows(reports.load_report(report))[:2])
    run = finished(runs.start("generate", GenerateRun(method="copies", per_image=3, report=report, indices=rows)))
    assert run["status"] == "done", run.get("error")
    preview = load_preview(run["id"])
    assert len(preview.class_ids) == 6 and [m.file for m in preview.mistakes] == \
        [m.file for m in sources.from_report(report, indices=rows)]
    workspaces.derive(SAMPLE, "ws2")
    assert len(generation.add_generated("ws2", preview).ids) == 6
    with pytest.raises(ValueError, match="either a report"):
        runs.start("generate", GenerateRun(method="copies"))


def test_fid_and_kid_are_near_zero_for_one_distribution_and_grow_with_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    assert fid(a, a) < 1e-6 and fid(a, b) < 0.5 and fid(a, b + 1.0) > 7.0
    k_same, k_shift = kid(a, b, subsets=10)[0], kid(a, b + 1.0, subsets=10)[0]
    assert abs(k_same) < 0.05 and k_shift > 10 * max(abs(k_same), 1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        fid(a[:1], b)


def test_cli_generate_from_a_report_into_a_workspace_and_refusals(data_root):
    model = _register()
    report = _report(model)
    workspaces.derive(SAMPLE, "ws3")
    out = run_cli("generate", "--from-report", report, "--method", "copies", "--per-image", "2", "--to", "ws3",
                  "--limit", "2", "--json", root=data_root)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["workspace"] == "ws3" and len(doc["added"]) == 4 and doc["method"] == "copies"
    built = run_cli("generate", "--from-report", report, "--method", "copies", "--to", SAMPLE, root=data_root)
    assert built.returncode == 2 and "derive" in built.stderr.lower()
    test = run_cli("generate", "--from-report", report, "--method", "copies", "--to", "ws3", "--split", "test",
                   root=data_root)
    assert test.returncode == 2 and "test split" in test.stderr
    assert len(workspaces.current_added(datasets.get_dataset("ws3"))) == 4  # the refusals wrote nothing


def test_cli_switches_generated_images_off_and_on_and_guards_moves_to_test(data_root):
    model = _register()
    workspaces.derive(SAMPLE, "ws4")
    before = datasets.get_dataset("ws4")
    ids = generation.add_generated("ws4", generation.generate(_mistakes(1), method="copies", per_image=2,
                                                              model=model)).ids
    off = run_cli("images", "generated", "--dataset", "ws4", "off", root=data_root)
    assert off.returncode == 0, off.stderr
    info = datasets.get_dataset("ws4")
    assert info.counts["train"][14] == before.counts["train"][14]
    assert not any(r.get("generated") for r in datasets.read_index(info))
    assert run_cli("images", "generated", "--dataset", "ws4", "on", root=data_root).returncode == 0
    moved = run_cli("images", "move", "--dataset", "ws4", "--to", "test", ids[0], root=data_root)
    assert moved.returncode == 2 and "generator" in moved.stderr
    forced = run_cli("images", "move", "--dataset", "ws4", "--to", "test", "--force-test", ids[0], root=data_root)
    assert forced.returncode == 0, forced.stderr
    assert {r["id"]: r for r in workspaces.current_added(datasets.get_dataset("ws4"))}[ids[0]]["split"] == "test"


def test_cli_generate_from_named_images_of_the_target_workspace(data_root):
    model = _register()
    workspaces.derive(SAMPLE, "ws5")
    files = [r["file"] for r in datasets.read_index(datasets.get_dataset("ws5"), "val")[:2]]
    out = run_cli("generate", "--images", *files, "--model", model, "--method", "augment", "--per-image", "3",
                  "--to", "ws5", "--seed", "2", "--json", root=data_root)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert len(doc["added"]) == 6 and doc["sources"] == 2 and doc["generator_version"] == "augment v1"
    recs = workspaces.current_added(datasets.get_dataset("ws5"))
    assert sorted({r["source_file"] for r in recs}) == sorted(files) and {r["seed"] for r in recs} == {2}


def test_adding_while_generated_images_are_switched_off_says_they_are_kept_unused():
    model = _register()
    workspaces.derive(SAMPLE, "ws6")
    made = generation.generate(_mistakes(1), method="copies", per_image=1, model=model)
    generation.add_generated("ws6", made)
    workspace_changes.use_generated("ws6", False)
    done = generation.add_generated("ws6", made)
    assert "switched off" in done.message and "not used in training or evaluation" in done.message
    assert not any(r.get("generated") for r in datasets.read_index(datasets.get_dataset("ws6")))


def test_cli_generator_train_records_its_own_command(tmp_path, data_root):
    out_file = tmp_path / "g.pt"
    out = run_cli("generator", "train", "--dataset", SAMPLE, "--epochs", "1", "--max-images", "32", "--batch-size",
                  "16", "--feature-weight", "0", "--out", str(out_file), root=data_root)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["version"] == gen.file_version(out_file)
    ck = torch.load(out_file, weights_only=True)
    assert ck["command"].startswith(f"python -m core generator train --dataset {SAMPLE} --epochs 1")
    assert ck["config"]["max_images"] == 32 and len(ck["history"]) == 1
