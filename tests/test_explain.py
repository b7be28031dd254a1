"""Integrated Gradients and Anchors on a hand-made model whose decision rule is known exactly."""
import numpy as np
import pytest
import torch
from torch import nn

from core.analysis import evaluation, explain, reports
from core.data import datasets
from core.data.images import preprocess
from core.base.progress import Cancelled
from core.learning import models, registry
from core.learning.models import build_model, model_from_checkpoint

S = 48
BLOCK = 12  # the hand-made superpixel grid: 4 x 4 blocks of 12 x 12 px
# The decisive region spans blocks 0 and 1 (rows 0-11, cols 0-23). It is deliberately not square, so a
# transposed (H/W-swapped) attribution map fails the tests.
ROWS, COLS = slice(0, 12), slice(0, 24)
DECISIVE_BLOCKS = {0, 1}
BRIGHT, DARK = 255, 40
LEVEL = 200  # class 1 iff the region's mean is brighter than this grey (0-255)


class RegionModel(nn.Module):
    """Class 1 iff the decisive region of the preprocessed input is brighter than grey ``LEVEL``.

    logit_1 = 4 tanh(2 (mean(region) - t)) + 0.1 mean(image), logit_0 = 0. The small global term gives pixels
    outside the region a little (but known-small) attribution; tanh makes the completeness check non-trivial.
    """

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.register_buffer("t", preprocess(np.full((S, S, 3), LEVEL, np.uint8)).mean())

    def forward(self, x):
        region = x[:, :, ROWS, COLS].mean(dim=(1, 2, 3))
        z = 4 * torch.tanh(2 * (region - self.t)) + 0.1 * x.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(z), z], dim=1)


@pytest.fixture(scope="module")
def model():
    return RegionModel().eval()


@pytest.fixture(scope="module")
def image():
    img = np.full((S, S, 3), DARK, np.uint8)
    img[ROWS, COLS] = BRIGHT
    return img


def grid_segments():
    r, c = np.mgrid[0:S, 0:S]
    return (r // BLOCK) * (S // BLOCK) + c // BLOCK


def logits(model, img):
    with torch.no_grad():
        return model(preprocess(img))[0].numpy()


# ---------------------------------------------------------------- Integrated Gradients

def test_ig_attributions_concentrate_in_the_decisive_region_and_are_complete(model, image):
    res = explain.integrated_gradients(model, image)
    assert res.target == 1
    assert res.attributions.shape == (S, S, 3) and res.attributions.dtype == np.float32
    assert res.heatmap.shape == (S, S) and res.heatmap.dtype == np.float32
    assert res.heatmap.min() >= 0 and res.heatmap.max() == pytest.approx(1.0)
    mass = np.abs(res.attributions).sum(axis=2)
    inside = mass[ROWS, COLS].sum() / mass.sum()
    assert inside > 0.8
    assert mass.T[ROWS, COLS].sum() / mass.sum() < 0.6  # the transposed region is not the answer
    # Completeness: attributions add up to f(x) - f(baseline) for the target logit.
    gap = logits(model, image)[1] - logits(model, np.zeros_like(image))[1]
    assert res.attributions.sum() == pytest.approx(gap, rel=1e-3)
    assert abs(res.convergence_delta) < 1e-3 * abs(gap)
    assert res.attributions.sum() - gap == pytest.approx(res.convergence_delta, abs=1e-3)


def test_ig_blur_baseline_target_choice_and_inference_mode_caller(model, image):
    with torch.inference_mode():  # as a caller holding inference mode would
        res = explain.integrated_gradients(model, image, baseline="blur", steps=16)
    assert res.baseline == "blur" and res.steps == 16 and abs(res.convergence_delta) < 1e-2
    # logit 0 is constant, so explaining class 0 gives no attribution at all, and an all-zero heatmap.
    zero = explain.integrated_gradients(model, image, target=0)
    assert zero.target == 0 and not np.abs(zero.attributions).any() and not zero.heatmap.any()


def test_overlay_blends_red_yellow_by_heat(image):
    heat = np.zeros((S, S), np.float32)
    assert np.array_equal(explain.overlay(image, heat), image)  # no heat: the image unchanged
    full = explain.overlay(image, np.ones((S, S), np.float32), alpha=1.0)
    assert full.dtype == np.uint8 and (full == [255, 255, 0]).all()  # top of the colormap is yellow
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    assert explain.overlay(big, heat, size="image").shape == (2 * S, 2 * S, 3)
    assert explain.overlay(big, heat).shape == (S, S, 3)


# ---------------------------------------------------------------- Anchors

def fresh_precision(model, image, anchor_blocks, prediction, *, n=2000, seed=12345):
    """Precision re-measured from scratch: keep the anchor's blocks, each other block with prob. 1/2."""
    seg = grid_segments()
    rng = np.random.default_rng(seed)
    keep = rng.random((n, seg.max() + 1)) < 0.5
    keep[:, list(anchor_blocks)] = True
    fill = image.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)  # documented "absent" colour
    imgs = np.where(keep[:, seg][..., None], image, fill)
    with torch.no_grad():
        pred = model(preprocess(imgs)).argmax(1).numpy()
    return (pred == prediction).mean()


def test_anchor_contains_the_decisive_blocks_and_holds_on_fresh_samples(model, image):
    fractions = []
    res = explain.anchor_explanation(model, image, segments=grid_segments(), threshold=0.95, seed=0,
                                     progress=lambda f, message="", entry=None: fractions.append(f))
    assert res.prediction == 1 and res.met_threshold
    assert DECISIVE_BLOCKS <= set(res.anchor)
    assert res.mask.shape == (S, S) and res.mask.dtype == bool
    assert res.mask[ROWS, COLS].all()
    assert np.array_equal(res.mask, np.isin(grid_segments(), res.anchor))
    assert res.precision_lower_bound >= 0.95 and res.precision >= res.precision_lower_bound
    assert fresh_precision(model, image, res.anchor, res.prediction) >= res.threshold
    assert 0 < res.coverage <= 1
    assert res.num_samples >= 1000  # at least the coverage samples
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    shown = explain.anchor_overlay(image, res.mask)
    assert np.array_equal(shown[res.mask], image[res.mask])
    outside = shown[~res.mask]
    assert (outside[:, 0] == outside[:, 1]).all() and (outside[:, 1] == outside[:, 2]).all()  # greyed


def test_anchor_same_seed_same_anchor(model, image):
    a = explain.anchor_explanation(model, image, n_segments=16, seed=3, coverage_samples=300)
    b = explain.anchor_explanation(model, image, n_segments=16, seed=3, coverage_samples=300)
    assert a.anchor == b.anchor and a.precision == b.precision and a.num_samples == b.num_samples
    assert np.array_equal(a.segments, b.segments) and a.segments.shape == (S, S)


def test_anchor_unmet_threshold_returns_best_with_flag(model, image):
    # With anchors of one block at most, no anchor can pin the prediction down.
    res = explain.anchor_explanation(model, image, segments=grid_segments(), max_anchor_size=1, seed=0)
    assert not res.met_threshold and len(res.anchor) == 1 and res.precision < 0.95


def test_anchor_sample_budget_stops_the_search(model, image):
    # A budget of just the coverage samples leaves no room to grow anchors: the empty one comes back, flagged.
    res = explain.anchor_explanation(model, image, segments=grid_segments(), coverage_samples=200, max_samples=200)
    assert res.anchor == () and not res.met_threshold and res.num_samples < 300 and not res.mask.any()


def test_anchor_cancelled(model, image):
    with pytest.raises(Cancelled):
        explain.anchor_explanation(model, image, segments=grid_segments(), should_stop=lambda: True)
    calls = []

    def stop_later():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        explain.anchor_explanation(model, image, segments=grid_segments(), should_stop=stop_later)


@pytest.mark.parametrize("bad", [np.zeros((S, S, 3), np.float32), np.zeros((S, S), np.uint8),
                                 np.zeros((S, S, 4), np.uint8), [[0, 0, 0]]])
def test_bad_images_are_refused(model, bad):
    with pytest.raises(ValueError, match="image"):
        explain.integrated_gradients(model, bad)
    with pytest.raises(ValueError, match="image"):
        explain.anchor_explanation(model, bad)


@pytest.mark.parametrize("kwargs", [dict(threshold=0), dict(threshold=1), dict(threshold=1.5), dict(delta=0),
                                    dict(segments=np.zeros((32, 32), int)), dict(beam_size=0),
                                    dict(segmentation="watershed"), dict(fill="white"),
                                    dict(coverage_samples=500, max_samples=100)])
def test_bad_anchor_options_are_refused(model, image, kwargs):
    with pytest.raises(ValueError):
        explain.anchor_explanation(model, image, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(baseline="white"), dict(steps=1), dict(target=2)])
def test_bad_ig_options_are_refused(model, image, kwargs):
    with pytest.raises(ValueError):
        explain.integrated_gradients(model, image, **kwargs)


def test_bad_overlay_inputs_are_refused(image):
    with pytest.raises(ValueError, match="heatmap"):
        explain.overlay(image, np.full((S, S), 2.0))
    with pytest.raises(ValueError, match="alpha"):
        explain.overlay(image, np.zeros((S, S)), alpha=1.5)


def test_anchor_overlay_takes_the_mask_or_the_result(model, image):
    res = explain.anchor_explanation(model, image, segments=grid_segments(), seed=0)
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    for img, size in [(image, None), (big, "image"), (big, (30, 40))]:
        from_mask = explain.anchor_overlay(img, res.mask, size=size)
        assert np.array_equal(from_mask, explain.anchor_overlay(img, res, size=size))  # backward compatible
        assert np.array_equal(from_mask, explain.anchor_overlay(img, res.mask.astype(np.uint8), size=size))


@pytest.mark.parametrize("bad", [np.zeros((S, S, 1), bool), np.zeros((S, S, 3), bool), np.zeros(S, bool),
                                 np.full((S, S), 0.5), np.zeros((S, S), "U1"), [[True]]])
def test_anchor_overlay_refuses_a_mask_that_is_not_2d_boolean(image, bad):
    with pytest.raises(ValueError, match="mask must be"):
        explain.anchor_overlay(image, bad)


# ---------------------------------------------------------------- the real network

def test_smoke_on_the_published_network():
    torch.manual_seed(0)
    net = build_model("published", 43).eval()
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)  # not 48 x 48 on purpose
    ig = explain.integrated_gradients(net, img)
    assert ig.attributions.shape == (S, S, 3) and ig.heatmap.shape == (S, S) and 0 <= ig.target < 43
    assert explain.overlay(img, ig.heatmap).shape == (S, S, 3)
    assert explain.overlay(img, ig.heatmap, size="image").shape == (32, 32, 3)
    res = explain.anchor_explanation(net, img, coverage_samples=300)
    assert res.mask.shape == (S, S) and res.mask.dtype == bool and res.segments.shape == (S, S)
    assert 0 <= res.precision <= 1 and 0 < res.coverage <= 1 and 0 <= res.prediction < 43
    assert set(res.anchor) <= set(np.unique(res.segments).tolist())
    assert explain.anchor_overlay(img, res.mask, size="image").shape == (32, 32, 3)


# ---------------------------------------------------------------- classes and report images

@pytest.mark.parametrize("class_ids, class_id, expected", [([0, 1, 2], 2, 2), ([14, 3, 40], 3, 1), ((7,), 7, 0)])
def test_output_index_maps_a_class_id_to_the_network_output(class_ids, class_id, expected):
    assert explain.output_index(class_ids, class_id) == expected


def test_output_index_refuses_a_class_the_model_does_not_predict():
    with pytest.raises(ValueError, match=r"does not predict class 5; its 3 classes are 14, 3, 40"):
        explain.output_index([14, 3, 40], 5)


def test_explain_class_explains_the_output_of_that_class(model, image):
    res = explain.explain_class(model, image, class_ids=[30, 14], class_id=14)  # output 1 is class 14
    assert res.target == 1
    assert np.array_equal(res.attributions, explain.integrated_gradients(model, image, target=1).attributions)
    assert explain.explain_class(model, image, class_ids=[30, 14]).target == 1  # default: the predicted class


def _report_on_sample(name: str = "tiny", n_images: int = 6) -> tuple:
    """A tiny registered 48-class model and a real report of it on a few Sample48 test images."""
    torch.manual_seed(0)
    ckpt = models.make_checkpoint(build_model("published", 48), architecture="published", class_ids=list(range(48)),
                                  class_names=[f"c{i}" for i in range(48)], dataset="Sample48",
                                  dataset_fingerprint="x", parent=None, mode="scratch", epochs=1, history=[],
                                  metrics={}, config={})
    info = registry.register(name, ckpt)
    sample = datasets.get_dataset("Sample48")
    split = datasets.load_split(sample, "test")
    summary, preds = evaluation.evaluate_checkpoint(ckpt, split.images[:n_images], split.labels[:n_images],
                                                    files=split.files[:n_images])
    reports.save_report("r-tiny", summary, preds, model=name, model_version=registry.file_version(info.path),
                        dataset=sample, split="test")
    return reports.load_report("r-tiny"), ckpt


def test_explain_report_image_explains_the_reported_prediction_with_the_report_model():
    report, ckpt = _report_on_sample()
    loads = []

    def load(path):  # a page passes its cached loader; the file must be the report's model
        loads.append(path)
        return ckpt, model_from_checkpoint(ckpt)

    got = explain.explain_report_image(report, 2, load=load)
    (image,) = reports.report_images(report, [2])
    assert loads and loads[0].endswith("tiny.pt")
    assert np.array_equal(got.image, image) and got.class_id == int(report.predictions.y_pred[2])
    assert got.model_version == report.summary["model_version"]
    assert got.ig.heatmap.shape == (S, S) and got.ig.target == got.class_id  # class ids 0-47 in output order
    same = explain.explain_class(model_from_checkpoint(ckpt), image, class_ids=ckpt["class_ids"], class_id=got.class_id)
    assert np.allclose(got.ig.attributions, same.attributions)
    other = (got.class_id + 1) % 48
    assert explain.explain_report_image(report, 2, class_id=other).class_id == other  # default loader: the file


def test_explain_report_image_refuses_a_model_file_changed_since_the_report():
    report, ckpt = _report_on_sample()
    torch.manual_seed(1)
    retrained = {**ckpt, "weights": build_model("published", 48).state_dict()}
    registry.register("tiny", retrained, overwrite=True)  # same name, other weights: another file version
    with pytest.raises(ValueError, match=r"made by version \w+ of model 'tiny'.*Evaluate the model again"):
        explain.explain_report_image(report, 0)
    (registry.get_model("tiny").path).unlink()
    with pytest.raises(ValueError, match="no longer exists"):
        explain.explain_report_image(report, 0)


@pytest.mark.parametrize("index", [-1, 6, 2.0, True])
def test_explain_report_image_refuses_an_index_outside_the_report(index):
    report, _ = _report_on_sample()
    with pytest.raises(ValueError, match="is not one of report r-tiny's 6 images"):
        explain.explain_report_image(report, index)
