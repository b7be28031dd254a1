import numpy as np
import pytest
import torch

from core.data import datasets
from core.learning import outliers
from core.data.images import normalise, resize_batch

MAKERS = (outliers._centre_swap, outliers._channel_swap, outliers._jigsaw, outliers._halves)


def _batch(n=64, seed=0):
    """Real sample images (48 px, normalised) and their labels."""
    split = datasets.load_split("Sample48", "train")
    idx = np.random.default_rng(seed).choice(len(split), n, replace=False)
    return normalise(resize_batch(split.images[idx])), torch.from_numpy(split.labels[idx].astype(np.int64))


def test_outliers_are_seeded_shaped_and_at_most_n():
    x, y = _batch()
    a = outliers.synthesize(x, y, n=40, generator=torch.Generator().manual_seed(1))
    b = outliers.synthesize(x, y, n=40, generator=torch.Generator().manual_seed(1))
    c = outliers.synthesize(x, y, n=40, generator=torch.Generator().manual_seed(2))
    assert 20 <= len(a) <= 40 and a.shape[1:] == x.shape[1:]
    assert torch.equal(a, b) and not (len(a) == len(c) and torch.equal(a, c))


def test_every_outlier_differs_from_every_real_image():
    x, y = _batch()
    o = outliers.synthesize(x, y, n=64, generator=torch.Generator().manual_seed(0))
    change = (o[:, None] - x[None]).abs().mean((2, 3, 4))  # (outliers, images)
    # the smallest guaranteed change: MIN_CHANGE over the swapped centre disk, 18 % of the image
    assert float(change.min()) > outliers.MIN_CHANGE * np.pi * outliers.CENTRE_RADIUS ** 2 * 0.95


def test_images_no_transform_can_change_give_no_outliers():
    # Grey, blank images: swapped colours, a turned centre and shuffled tiles all equal the image itself.
    x = torch.full((16, 3, 48, 48), 0.3)
    assert len(outliers.synthesize(x, torch.arange(16), n=32, generator=torch.Generator().manual_seed(0))) == 0


def test_a_turned_centre_that_looks_the_same_is_dropped():
    # A sign whose centre is a plus: every quarter turn and the upside-down flip give the same picture.
    x = torch.full((8, 3, 48, 48), -1.0)
    x[:, :, 20:28, 8:40] = 1.5
    x[:, :, 8:40, 20:28] = 1.5
    _, keep = outliers._centre_swap(x, x.roll(1, 0), None, torch.Generator().manual_seed(0))
    assert not keep.any()
    bar = x.clone()
    bar[:, :, 8:40, 20:28] = -1.0  # a horizontal bar: a quarter turn makes it vertical, upside down keeps it
    _, keep = outliers._centre_swap(bar, bar.roll(1, 0), None, torch.Generator().manual_seed(0))
    assert 0 < int(keep.sum()) < 8


@pytest.mark.parametrize("kind", range(len(outliers.KINDS)))
def test_each_kind_makes_outliers_from_real_signs(kind):
    x, y = _batch(32)
    out, keep = MAKERS[kind](x, x.roll(1, 0), y != y.roll(1, 0), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and int(keep.sum()) >= 8


def test_bad_input_is_refused_and_tiny_batches_give_nothing():
    with pytest.raises(ValueError, match="square RGB"):
        outliers.synthesize(torch.zeros(4, 1, 48, 48), torch.zeros(4), n=2, generator=torch.Generator())
    with pytest.raises(ValueError, match="one label each"):
        outliers.synthesize(torch.zeros(4, 3, 48, 48), torch.zeros(3), n=2, generator=torch.Generator())
    one = torch.zeros(1, 3, 48, 48)
    assert len(outliers.synthesize(one, torch.zeros(1), n=4, generator=torch.Generator())) == 0
    assert len(outliers.synthesize(*_batch(4), n=0, generator=torch.Generator())) == 0


def test_two_halves_of_the_same_class_are_not_an_outlier():
    x, _ = _batch(8)
    same = torch.zeros(8, dtype=torch.bool)
    assert not outliers._halves(x, x.flip(0), same, None)[1].any()
    assert outliers._halves(x, x.flip(0), ~same, None)[1].any()
