"""The seven augmentation groups: selectable, combinable, permutable, seeded."""
from __future__ import annotations

import dataclasses

import albumentations as A
import numpy as np
import pytest

from conftest import smooth_images
from core.data import augment
from core.data.augment import augment_images, build_pipeline, get_group, list_groups
from core.base.registries import set_version

GROUPS = list_groups()


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_there_are_seven_groups_each_one_complete_record():
    assert GROUPS == ("brightness_contrast", "shift_rotate", "blur_distortion", "noise", "colour", "dropout",
                      "affine_perspective")
    for g in GROUPS:
        rec = get_group(g)
        assert rec.name == g and rec.label and rec.description and rec.build()
    with pytest.raises(ValueError, match="unknown augmentation group 'sparkle'; valid: brightness_contrast"):
        get_group("sparkle")


def test_the_group_set_version_follows_the_registry(monkeypatch):
    assert augment.groups_version() == set_version((g, 1) for g in GROUPS) == augment.UNSTAMPED_VERSION
    noise = get_group("noise")
    monkeypatch.setitem(augment.REGISTRY.table, "noise", dataclasses.replace(noise, version=2))
    assert augment.groups_version() != set_version((g, 1) for g in GROUPS)


def test_a_registered_group_is_offered_and_applied(monkeypatch):
    invert = augment.Group("invert", "Invert", lambda: [A.InvertImg(p=1)], "negative image")
    monkeypatch.setitem(augment.REGISTRY.table, "invert", invert)
    assert list_groups()[-1] == "invert"
    x = smooth_images(2, 32)
    assert np.array_equal(augment_images(x, groups=["invert"], p=1.0), 255 - x)


@pytest.mark.parametrize("size", [32, 48])
@pytest.mark.parametrize("group", GROUPS)
def test_each_group_runs_keeps_shape_and_dtype_and_changes_images(group, size):
    x = smooth_images(6, size, seed=size)
    before = x.copy()
    y = augment_images(x, groups=[group], p=1.0, seed=0)
    assert y.shape == x.shape and y.dtype == np.uint8
    assert y is not x and np.array_equal(x, before)  # input untouched, a new array returned
    changed = (y != x).any(axis=(1, 2, 3))
    assert changed.all(), f"{group} at p=1 left {np.flatnonzero(~changed)} unchanged"


def test_same_seed_same_output_different_seed_different_output():
    x = smooth_images(8, 32, seed=1)
    a = augment_images(x, p=0.5, seed=123)
    b = augment_images(x, p=0.5, seed=123)
    c = augment_images(x, p=0.5, seed=124)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # the pipeline also reproduces its sequence when rebuilt with the seed
    p1, p2 = build_pipeline(p=0.7, seed=5), build_pipeline(p=0.7, seed=5)
    for im in x[:3]:
        assert np.array_equal(p1(image=im)["image"], p2(image=im)["image"])


def test_images_in_a_batch_get_different_draws():
    x = np.repeat(smooth_images(1, 32, seed=2), 6, axis=0)
    y = augment_images(x, groups=["shift_rotate"], p=1.0, seed=0)
    assert len({im.tobytes() for im in y}) > 1


@pytest.mark.parametrize("groups", [GROUPS, ["noise"], ["dropout", "colour"]], ids=["all", "noise", "two"])
def test_probability_zero_leaves_images_unchanged(groups):
    x = smooth_images(5, 32, seed=3)
    assert np.array_equal(augment_images(x, groups=groups, p=0.0, seed=9), x)
    assert np.array_equal(augment_images(x, groups=groups, p=0.0, permute=False, seed=9), x)


def test_per_group_probabilities():
    x = smooth_images(5, 32, seed=4)
    only_second_off = augment_images(x, groups=["noise", "dropout"], p=[0.0, 0.0], seed=0)
    assert np.array_equal(only_second_off, x)
    noise_only = augment_images(x, groups=["noise", "dropout"], p=[1.0, 0.0], seed=0, permute=False)
    assert not np.array_equal(noise_only, x)


def test_combining_groups_changes_images_more_than_any_single_group():
    x = smooth_images(16, 32, seed=0)
    seeds = range(3)
    combined = np.mean([_mad(augment_images(x, groups=GROUPS, p=1.0, seed=s), x) for s in seeds])
    singles = {g: np.mean([_mad(augment_images(x, groups=[g], p=1.0, seed=s), x) for s in seeds]) for g in GROUPS}
    assert combined > max(singles.values()), (combined, singles)
    three = np.mean([_mad(augment_images(x, groups=["brightness_contrast", "noise", "dropout"], p=1.0, seed=s), x)
                     for s in seeds])
    assert three > max(singles[g] for g in ("brightness_contrast", "noise", "dropout"))


def _order_recording_groups(monkeypatch) -> list[str]:
    """Replace each group by a marker transform that records when it runs (order is what we test)."""
    applied: list[str] = []

    def fake_group(record: augment.Group, p: float):
        if record.name not in GROUPS:
            raise ValueError(record.name)

        def mark(img, **kw):
            applied.append(record.name)
            return img
        return A.Lambda(image=mark, p=p)

    monkeypatch.setattr(augment, "_group", fake_group)
    return applied


def _orders(applied: list[str], n_groups: int) -> list[tuple[str, ...]]:
    return [tuple(applied[i:i + n_groups]) for i in range(0, len(applied), n_groups)]


def test_permute_false_keeps_the_given_order(monkeypatch):
    applied = _order_recording_groups(monkeypatch)
    groups = ["noise", "brightness_contrast", "dropout", "colour"]
    augment_images(smooth_images(10, 32), groups=groups, p=1.0, permute=False, seed=0)
    assert set(_orders(applied, len(groups))) == {tuple(groups)}


def test_permute_true_draws_a_new_order_per_image(monkeypatch):
    applied = _order_recording_groups(monkeypatch)
    groups = ["noise", "brightness_contrast", "dropout", "colour"]
    augment_images(smooth_images(20, 32), groups=groups, p=1.0, permute=True, seed=0)
    orders = _orders(applied, len(groups))
    assert len(orders) == 20 and all(sorted(o) == sorted(groups) for o in orders)  # every group, once each
    assert len(set(orders)) > 1


def test_permute_true_still_applies_every_group_once(monkeypatch):
    applied = _order_recording_groups(monkeypatch)
    augment_images(smooth_images(6, 32), groups=GROUPS, p=1.0, permute=True, seed=1)
    assert len(applied) == 6 * len(GROUPS)
    assert all(sorted(o) == sorted(GROUPS) for o in _orders(applied, len(GROUPS)))


@pytest.mark.parametrize("kwargs,match", [
    ({"groups": ["nope"]}, "unknown augmentation group 'nope'"),
    ({"groups": ["noise", "Noise"]}, "unknown augmentation group 'Noise'"),
    ({"groups": []}, "at least one"),
    ({"p": 1.5}, r"\[0, 1\]"),
    ({"p": -0.1}, r"\[0, 1\]"),
    ({"groups": ["noise", "colour"], "p": [0.5, 2.0]}, r"\[0, 1\]"),
    ({"groups": ["noise", "colour"], "p": [0.5]}, "1 probabilities for 2 groups"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_pipeline(**kwargs)
    with pytest.raises(ValueError, match=match):
        augment_images(smooth_images(1, 32), **kwargs)


# -- hardening (training only) --------------------------------------------------------------------------------------

def test_hardening_groups_are_training_only_and_leave_the_seven_and_their_version_alone():
    assert augment.hardening_groups() == ("compression", "heavy_noise", "erasing", "exposure")
    assert not set(augment.hardening_groups()) & set(GROUPS)
    assert augment.pipeline_version(0.0) == augment.groups_version() == augment.UNSTAMPED_VERSION
    assert augment.pipeline_version(0.3).startswith(augment.groups_version() + "+")
    imgs = smooth_images(8, size=32, seed=3)
    # harden_p=0 is the plain pipeline, draw for draw (dataset builds and old trainings are unchanged)
    plain = build_pipeline(p=0.3, seed=4)
    same = build_pipeline(p=0.3, seed=4, harden_p=0.0)
    assert all(np.array_equal(plain(image=im)["image"], same(image=im)["image"]) for im in imgs)


@pytest.mark.parametrize("group", ["compression", "heavy_noise", "erasing", "exposure"])
def test_each_hardening_group_changes_images_and_keeps_shape(group, monkeypatch):
    imgs = smooth_images(6, size=32, seed=5)
    for other in augment.hardening_groups():  # this group alone
        if other != group:
            monkeypatch.delitem(augment.HARDENING.table, other)
    out = np.stack([build_pipeline(p=0.0, seed=1, harden_p=1.0)(image=im)["image"] for im in imgs])
    assert out.shape == imgs.shape and out.dtype == np.uint8
    assert _mad(out, imgs) > 1.0


def _block_edges(batch: np.ndarray) -> float:
    """How much larger the jumps between columns 8k-1 and 8k are than the others: JPEG's 8x8 block edges."""
    d = np.abs(np.diff(batch.astype(np.float64), axis=2)).mean(axis=(0, 1, 3))
    return float(d[7::8].mean() / np.delete(d, np.s_[7::8]).mean())


def test_hardening_at_the_input_size_compresses_the_image_the_network_sees(monkeypatch):
    from core.data.images import resize_batch
    for other in augment.hardening_groups():  # JPEG at quality 5 alone
        if other != "compression":
            monkeypatch.delitem(augment.HARDENING.table, other)
    jpeg_only = dataclasses.replace(augment.HARDENING.table["compression"], build=lambda: [
        augment.RgbJpeg(compression_type="jpeg", quality_range=(5, 5), p=1)])
    monkeypatch.setitem(augment.HARDENING.table, "compression", jpeg_only)
    imgs = smooth_images(6, size=32, seed=5)
    at_source = build_pipeline(p=0.0, seed=1, harden_p=1.0)
    at_input = build_pipeline(p=0.0, seed=1, harden_p=1.0, harden_at="input")
    source = resize_batch(np.stack([at_source(image=im)["image"] for im in imgs]))
    inp = np.stack([at_input(image=im)["image"] for im in imgs])
    assert inp.shape == (6, 48, 48, 3) and inp.dtype == np.uint8
    # compressed at 32 px and enlarged, the blocks are 12 px wide and soft; at 48 px they sit on the 8 px grid
    assert _block_edges(inp) > 3.0 > 2.0 > _block_edges(source)
    assert _block_edges(resize_batch(imgs)) < 1.3


def test_hardening_jpeg_is_the_jpeg_of_the_rgb_image():
    import cv2
    imgs = smooth_images(3, size=48, seed=7)
    jpeg = augment.RgbJpeg(compression_type="jpeg", quality_range=(10, 10), p=1)
    for im in imgs:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(im, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 10])
        expected = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        got = jpeg(image=im)["image"]
        assert got.shape == im.shape and got.flags.c_contiguous and np.array_equal(got, expected)
        # albumentations' own reads the RGB array as BGR: another image (red weighs 0.114 in its luminance)
        swapped = A.ImageCompression(compression_type="jpeg", quality_range=(10, 10), p=1)(image=im)["image"]
        assert _mad(swapped, expected) > 0.5
    assert augment.HARDENING.table["compression"].version == 2


def test_where_hardening_acts_is_part_of_the_version_and_is_checked():
    assert augment.pipeline_version(0.3, "input") != augment.pipeline_version(0.3, "source")
    assert augment.pipeline_version(0.3, "source") == augment.pipeline_version(0.3)
    assert augment.pipeline_version(0.0, "input") == augment.groups_version()  # no hardening: nothing moves
    imgs = smooth_images(4, size=32, seed=2)
    plain, same = build_pipeline(p=0.4, seed=3), build_pipeline(p=0.4, seed=3, harden_at="input")
    assert all(np.array_equal(plain(image=im)["image"], same(image=im)["image"]) for im in imgs)
    with pytest.raises(ValueError, match="harden_at must be one of source, input"):
        build_pipeline(harden_p=0.2, harden_at="middle")


def test_hardening_probability_must_be_a_probability():
    with pytest.raises(ValueError, match="hardening probability must lie in"):
        build_pipeline(harden_p=1.5)
