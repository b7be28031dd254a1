"""Test-time augmentation: the views, averaged probabilities, and the option in evaluate and predict."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

from app_support import router_mode  # noqa: F401 (AppTests through Home.py's router)
from cli_support import run_cli
from conftest import smooth_images
from core import runs
from core.analysis import prediction, reports
from core.analysis.evaluate_run import EvaluateRun
from core.data.images import encode_png, preprocess
from core.learning import models, registry, tta
from core.learning.inference import predict_proba
from tests.run_support import finished
from waits import PAGE_S

HOME = str(Path(__file__).resolve().parent.parent / "Home.py")


def _model(n: int = 48) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build_model("published", n).eval()


def test_views_keep_the_shape_and_the_identity_is_the_image():
    x = preprocess(smooth_images(3, 48))
    out = list(tta.views(x))
    assert len(out) == len(tta.VIEWS) and all(v.shape == x.shape for v in out)
    assert torch.equal(out[0], x)
    assert all(not torch.allclose(v, x) for v in out[1:])  # every other view changes the pixels
    rotated = tta.apply(x, tta.View("r", angle=90.0))
    assert torch.allclose(rotated[..., 1:-1, 1:-1], torch.rot90(x, 1, dims=(2, 3))[..., 1:-1, 1:-1], atol=1e-4)


def test_tta_probabilities_are_the_mean_over_the_views():
    model = _model()
    images = smooth_images(4, 48, seed=2)
    got = predict_proba(model, images, tta=True)
    x = preprocess(images)
    with torch.no_grad():
        want = torch.stack([torch.softmax(model(v), 1) for v in tta.views(x)]).mean(0).numpy()
    assert np.allclose(got, want, atol=1e-5) and np.allclose(got.sum(1), 1, atol=1e-5)
    assert not np.allclose(got, predict_proba(model, images), atol=1e-4)


def test_an_evaluation_with_tta_says_so_in_its_report_and_title():
    ck = models.make_checkpoint(_model(), architecture="published", class_ids=list(range(48)),
                                class_names=[f"c{i}" for i in range(48)], dataset="Sample48", dataset_fingerprint="x",
                                parent=None, mode="scratch", epochs=1, history=[], metrics={}, config={})
    registry.register("tiny", ck)
    plain = finished(runs.start("evaluate", EvaluateRun(model="tiny", dataset="Sample48", split="val")))
    cfg = EvaluateRun(model="tiny", dataset="Sample48", split="val", tta=True)
    assert cfg.title().endswith("with TTA")
    with_tta = finished(runs.start("evaluate", cfg))
    a, b = reports.load_report(plain["id"]).summary, reports.load_report(with_tta["id"]).summary
    assert a["tta_views"] == 1 and b["tta_views"] == len(tta.VIEWS) and a["n"] == b["n"]
    assert not np.array_equal(reports.load_report(plain["id"]).predictions.confidence,
                              reports.load_report(with_tta["id"]).predictions.confidence)


def test_predict_and_cli_take_the_option(tmp_path, data_root):
    ck = models.make_checkpoint(_model(), architecture="published", class_ids=list(range(48)),
                                class_names=[f"c{i}" for i in range(48)], dataset="Sample48", dataset_fingerprint="x",
                                parent=None, mode="scratch", epochs=1, history=[], metrics={}, config={})
    image = smooth_images(1, 48, seed=5)[0]
    plain = prediction.predict_images(ck, [("a.png", encode_png(image))])[0].top[0]["p"]
    more = prediction.predict_images(ck, [("a.png", encode_png(image))], tta=True)[0].top
    assert more[0]["p"] != plain
    path = tmp_path / "m.pt"
    models.save_checkpoint(ck, path)
    (tmp_path / "a.png").write_bytes(encode_png(image))
    out = run_cli("predict", "--model", str(path), str(tmp_path / "a.png"), "--tta", "--json", root=data_root)
    assert out.returncode == 0, out.stderr
    assert abs(json.loads(out.stdout)[0]["top"][0]["p"] - more[0]["p"]) < 1e-4
    refused = run_cli("evaluate", "--model", str(path), "--dataset", "Sample48", "--split", "val", "--tta", "--record",
                      root=data_root)
    assert refused.returncode == 2 and "drop --tta" in refused.stderr


def test_the_evaluate_page_starts_a_tta_evaluation_when_ticked(router_mode):
    ck = models.make_checkpoint(_model(), architecture="published", class_ids=list(range(48)),
                                class_names=[f"c{i}" for i in range(48)], dataset="Sample48", dataset_fingerprint="x",
                                parent=None, mode="scratch", epochs=1, history=[], metrics={}, config={})
    registry.register("tiny", ck)
    at = AppTest.from_file(HOME, default_timeout=PAGE_S)
    at.run()
    at.switch_page("pages/evaluate.py").run()
    at.checkbox(key="eval_tta").check().run()
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    (run,) = runs.list_runs("evaluate")
    assert run["config"]["tta"] is True and run["title"].endswith("with TTA")
    assert finished(run["id"])["status"] == "done"
