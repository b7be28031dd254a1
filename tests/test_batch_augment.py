"""The batch augmentation engine: each transform against albumentations / OpenCV, the group draws, the seeding."""
from __future__ import annotations

import math

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from albumentations.augmentations.blur import functional as blur_functional
from albumentations.augmentations.geometric import functional as geometric_functional

from core.data import augment, batch_augment, datasets
from core.data import batch_transforms as bt
from core.data.batch_augment import BATCHED, BatchAugmenter

SAMPLE = "Sample48"


@pytest.fixture(scope="module")
def signs() -> np.ndarray:
    """(240, 32, 32, 3) uint8 sample signs (Sample48 keeps GTSRB's 32 px sources)."""
    images = datasets.load_split(datasets.get_dataset(SAMPLE), "train").images
    return images[np.random.default_rng(0).choice(len(images), 240, replace=False)]


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float()


def _uint8(x: torch.Tensor) -> np.ndarray:
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_every_group_has_its_transforms_in_the_albumentations_order():
    assert tuple(BATCHED) == augment.list_groups() and batch_augment.unsupported() == []
    for name, (version, transforms) in BATCHED.items():
        assert version == augment.get_group(name).version
        assert len(transforms) == len(augment.get_group(name).build())


def _per_image(out: np.ndarray, src: np.ndarray) -> list[np.ndarray]:
    """Per image: mean absolute change, contrast against the source's, mean signed change."""
    out, src = out.astype(np.float64), src.astype(np.float64)
    return [np.abs(out - src).mean(axis=(1, 2, 3)), out.std(axis=(1, 2, 3)) / (src.std(axis=(1, 2, 3)) + 1e-6),
            (out - src).mean(axis=(1, 2, 3))]


@pytest.mark.parametrize("name,index", [(g, i) for g, (_, ts) in BATCHED.items() for i in range(len(ts))])
def test_each_transform_changes_images_as_albumentations_does(signs, name, index):
    """Same images, one draw each: the per-image distributions of change, contrast and shift agree with
    albumentations' (two-sample KS statistic <= 0.16; the right transforms measured 0.00-0.15, a contrast range of
    +-0.2 instead of +-0.35 measured 0.19, a gamma range of 0.8-1.3 instead of 0.6-1.6 0.40)."""
    ours = BATCHED[name][1][index](_tensor(signs), torch.Generator().manual_seed(0))
    assert ours.shape == (len(signs), 3, 32, 32) and ours.dtype == torch.float32
    assert float(ours.min()) >= 0 and float(ours.max()) <= 255
    theirs = A.Compose([augment.get_group(name).build()[index]], seed=0)
    reference = np.stack([theirs(image=im)["image"] for im in signs])
    mine = _per_image(_uint8(ours), signs)
    assert mine[0].mean() > 0.5
    for a, b in zip(mine, _per_image(reference, signs)):
        assert ks_2samp(a, b).statistic <= 0.16


@pytest.mark.parametrize("transform,ranges", [
    (bt.shift_rotate, dict(tx=(-3, 3), ty=(-3, 3), rotate=(-18, 18), scale_x=(0.9, 1.1), scale_y=(0.9, 1.1))),
    (bt.shear_scale, dict(shear_x=(-12, 12), shear_y=(-12, 12), scale_x=(0.85, 1.15), scale_y=(0.85, 1.15)))])
def test_the_affine_transforms_draw_albumentations_ranges(signs, monkeypatch, transform, ranges):
    drawn = {}
    real = bt.affine_matrix

    def record(n, h, w, **kw):
        drawn.update({k: np.broadcast_to(v, (n,)) for k, v in kw.items()})
        return real(n, h, w, **kw)

    monkeypatch.setattr(bt, "affine_matrix", record)
    transform(_tensor(signs), torch.Generator().manual_seed(0))
    for key, (low, high) in ranges.items():
        values = drawn[key]
        assert values.min() >= low and values.max() <= high, key
        assert values.min() < low + 0.1 * (high - low) and values.max() > high - 0.1 * (high - low), key
    if "tx" in ranges:
        assert np.array_equal(drawn["tx"], np.trunc(drawn["tx"]))  # whole pixels, as albumentations' int()


def test_the_affine_matrix_is_albumentations_and_the_warp_is_opencvs(signs):
    n, h, w = 6, 32, 32
    rng = np.random.default_rng(1)
    p = {k: rng.uniform(lo, hi, n) for k, (lo, hi) in dict(
        tx=(-5, 5), ty=(-5, 5), shear_x=(-12, 12), shear_y=(-12, 12), scale_x=(0.85, 1.15), scale_y=(0.85, 1.15),
        rotate=(-18, 18)).items()}
    matrices = bt.affine_matrix(n, h, w, **p)
    for i in range(n):
        expected = geometric_functional.create_affine_transformation_matrix(
            translate={"x": float(p["tx"][i]), "y": float(p["ty"][i])},
            shear={"x": float(p["shear_x"][i]), "y": float(p["shear_y"][i])},
            scale={"x": float(p["scale_x"][i]), "y": float(p["scale_y"][i])}, rotate=float(p["rotate"][i]),
            shift=(w / 2 - 0.5, h / 2 - 0.5))
        np.testing.assert_allclose(matrices[i], expected, atol=1e-9)
    warped = _uint8(bt.warp(_tensor(signs[:n]), matrices)).astype(int)
    for i in range(n):
        cv = cv2.warpAffine(signs[i], matrices[i, :2], (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(int)
        assert np.abs(warped[i] - cv).max() <= 1 and (warped[i] != cv).mean() < 0.01


def test_the_perspective_matrix_is_opencvs():
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 10, (4, 4, 2)) + np.array([[0, 0], [40, 0], [40, 40], [0, 40]])
    dst = np.broadcast_to(np.array([[0, 0], [48, 0], [48, 48], [0, 48]], np.float64), (4, 4, 2))
    ours = bt.perspective_matrix(src, dst)
    for i in range(4):
        expected = cv2.getPerspectiveTransform(src[i].astype(np.float32), dst[i].astype(np.float32))
        np.testing.assert_allclose(ours[i], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("size,angle,direction,sx,sy", [(3, 0.0, 0.0, 0.0, 0.0), (5, 37.0, -0.6, 0.3, -0.9),
                                                        (7, 200.0, 0.8, -1.0, 0.5), (7, 90.0, 1.0, 0.2, 0.2)])
def test_the_motion_kernel_is_albumentations(size, angle, direction, sx, sy):
    class Draws:  # albumentations draws the two shifts from its generator: hand it these
        def __init__(self):
            self.values = [sx, sy]

        def uniform(self, a, b):
            return self.values.pop(0)

    line = blur_functional.create_motion_kernel(size, angle, direction, True, Draws())
    expected = line / line.sum()  # MotionBlur divides the line by its length before filtering
    half = size // 2
    ours = bt.motion_kernel(size, angle, direction, sx * half / 2, sy * half / 2)
    pad = (7 - size) // 2
    np.testing.assert_allclose(ours[pad:pad + size, pad:pad + size], expected, atol=1e-6)
    assert ours.sum() == pytest.approx(1.0)


def test_hsv_follows_opencv_and_round_trips(signs):
    x = _tensor(signs[:40])
    h, s, v = bt.rgb_to_hsv(x)
    cv = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2HSV) for im in signs[:40]]).astype(np.float64)
    hue_gap = np.abs(h.round().numpy() - cv[..., 0]) % 180
    assert np.minimum(hue_gap, 180 - hue_gap).max() <= 1
    assert np.abs(s.round().numpy() - cv[..., 1]).max() <= 1 and np.abs(v.numpy() - cv[..., 2]).max() == 0
    back = bt.hsv_to_rgb(h, s, v)
    assert float((back - x).abs().max()) < 1e-3


def test_a_seeded_augmenter_repeats_and_its_state_restores(signs):
    a, b = BatchAugmenter(p=0.5, seed=3), BatchAugmenter(p=0.5, seed=3)
    first = a(signs[:64])
    assert np.array_equal(first, b(signs[:64])) and first.dtype == np.uint8 and first.shape == (64, 32, 32, 3)
    state = a.state()
    after = a(signs[64:128])
    assert not np.array_equal(after, a(signs[64:128]))  # the state runs on
    a.restore(state)
    assert np.array_equal(after, a(signs[64:128]))
    assert not np.array_equal(first, BatchAugmenter(p=0.5, seed=4)(signs[:64]))


def test_groups_fire_with_their_probability(signs):
    assert np.array_equal(BatchAugmenter(p=0.0, seed=0)(signs), signs)
    for p in (0.25, 1.0):
        out = BatchAugmenter(p=p, seed=0, groups=["dropout"])(signs)
        changed = (out != signs).any(axis=(1, 2, 3)).mean()
        assert abs(changed - p) < 0.08, (p, changed)
    every = BatchAugmenter(p=1.0, seed=0)(signs)
    assert (every != signs).any(axis=(1, 2, 3)).all()


def test_bad_input_and_unknown_groups_are_refused(signs, monkeypatch):
    with pytest.raises(ValueError, match="uint8 images"):
        BatchAugmenter()(signs.astype(np.float32))
    with pytest.raises(ValueError, match="probability"):
        BatchAugmenter(p=1.5)
    invert = augment.Group("invert", "Invert", lambda: [A.InvertImg(p=1)], "negative image")
    monkeypatch.setitem(augment.REGISTRY.table, "invert", invert)
    assert batch_augment.unsupported() == ["invert"]
    with pytest.raises(ValueError, match="albumentations engine"):
        BatchAugmenter(groups=["invert"])


def test_gaussian_blur_draws_kernels_of_3_and_5_and_keeps_flat_images_flat():
    flat = torch.full((50, 3, 20, 20), 100.0)
    assert torch.equal(bt.gaussian_blur(flat.clone(), torch.Generator().manual_seed(0)), flat)
    assert torch.equal(bt.motion_blur(flat.clone(), torch.Generator().manual_seed(0)), flat)
    assert math.isclose(float(bt.median_blur(flat.clone(), torch.Generator()).mean()), 100.0)
