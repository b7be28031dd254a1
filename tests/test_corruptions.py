"""The corruption benchmark: seeded, graded by severity, measured the same way for every model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.analysis import corruptions
from core.learning import models
from tests.test_cli import model_path, run_cli  # noqa: F401  (fixture)


def _signs(n: int = 12, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth coloured discs on a varied background: enough structure for blur and noise to change."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        bg = rng.integers(40, 200, 3)
        disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size * rng.uniform(0.25, 0.4)) ** 2
        out[i] = bg
        out[i][disc] = rng.integers(0, 256, 3)
        out[i][size // 2 - 2:size // 2 + 2] = 255
    return out


@pytest.mark.parametrize("name", list(corruptions.CORRUPTIONS))
def test_each_corruption_is_seeded_and_grows_with_severity(name):
    images = _signs()
    base = corruptions.corrupt(images, name, 1)  # at the network input size, whatever the source size
    assert base.shape == (12, 48, 48, 3) and base.dtype == np.uint8
    assert np.array_equal(base, corruptions.corrupt(images, name, 1, seed=0))  # same seed, same images
    clean = corruptions.resize_batch(images, 48).astype(float)
    change = [np.abs(corruptions.corrupt(images, name, s).astype(float) - clean).mean() for s in (1, 3, 5)]
    assert change[0] > 0, "severity 1 must change the images"
    assert change[0] < change[1] < change[2], f"{name}: change by severity {change}"


def test_the_random_corruptions_depend_on_the_seed():
    images = _signs()
    for name in ("gaussian_noise", "occlusion", "rotate", "colour_shift"):
        assert not np.array_equal(corruptions.corrupt(images, name, 3, seed=0),
                                  corruptions.corrupt(images, name, 3, seed=1)), name


def test_bad_requests_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown corruption"):
        corruptions.corrupt(_signs(2), "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        corruptions.corrupt(_signs(2), "jpeg", 6)
    assert corruptions.corrupt(np.zeros((0, 32, 32, 3), np.uint8), "jpeg", 2).shape == (0, 48, 48, 3)
    with pytest.raises(ValueError, match="no images"):
        corruptions.robustness(models.build_model("published", 3), _signs(0), np.zeros(0, int))


def test_robustness_reports_every_cell_and_their_means():
    torch.manual_seed(0)
    model = models.build_model("published", 5).eval()
    images = _signs(40)
    from core.learning.inference import predict_proba
    targets = predict_proba(model, images).argmax(1)  # the model's own clean answers: clean accuracy 1
    names = ("gaussian_noise", "jpeg", "occlusion")
    r = corruptions.robustness(model, images, targets, names=names, severities=(1, 5))
    assert r["clean"] == 1.0 and r["n"] == 40
    assert set(r["by_corruption"]) == set(names) and all(set(v) == {1, 5} for v in r["by_corruption"].values())
    cells = [a for v in r["by_corruption"].values() for a in v.values()]
    assert r["mca"] == pytest.approx(np.mean(cells)) and r["relative_mca"] == pytest.approx(r["mca"])
    assert set(r["mean_by_family"]) == {"noise", "compression", "geometry and occlusion"}
    assert r["by_corruption"]["gaussian_noise"][5] < 1.0  # heavy noise moves an untrained network's answers


def test_cli_robustness_writes_the_documented_json(data_root, model_path, tmp_path):  # noqa: F811
    out_file = tmp_path / "rob.json"
    out = run_cli("robustness", "--model", str(model_path), "--dataset", "Sample48", "--split", "val",
                  "--limit", "30", "--corruptions", "jpeg,rotate", "--severities", "1", "5", "--json",
                  "--out", str(out_file), root=data_root)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["n"] == 30 and r["split"] == "val" and set(r["by_corruption"]) == {"jpeg", "rotate"}
    assert json.loads(out_file.read_text())["mca"] == r["mca"]
    bad = run_cli("robustness", "--model", str(model_path), "--dataset", "Sample48", "--corruptions", "fog",
                  root=data_root)
    assert bad.returncode != 0 and "unknown corruption" in bad.stderr
