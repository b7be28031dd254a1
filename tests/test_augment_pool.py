"""The augmentation pool: batches augmented in worker processes, by a per-batch seed, whatever the worker count."""
import numpy as np
import pytest

from core.base import config
from core.learning.augment_pool import AugmentPool, augment_batch, batch_seed


def _batches(n=3, size=10, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_a_batch_depends_on_its_seed_only():
    (imgs,) = _batches(1)
    a, b = augment_batch(imgs, 5, 0.9), augment_batch(imgs, 5, 0.9)
    assert a.shape == (10, config.INPUT_SIZE, config.INPUT_SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, augment_batch(imgs, 6, 0.9))


def test_batch_seeds_differ_by_every_part():
    seeds = {batch_seed(s, r, e, b) for s in (0, 1) for r in (0, 1) for e in (1, 2) for b in (0, 1)}
    assert len(seeds) == 16


def test_the_pool_gives_the_same_batches_for_any_number_of_workers():
    chunks = _batches(5)
    expected = [augment_batch(c, batch_seed(3, 0, 2, b), 0.8, 0.3) for b, c in enumerate(chunks)]
    for workers in (1, 2):
        pool = AugmentPool(workers, p=0.8, harden_p=0.3, seed=3, ahead=2)
        try:
            got = list(pool.batches(2, iter(chunks)))
        finally:
            pool.close()
        assert len(got) == len(expected)
        assert all(np.array_equal(g, e) for g, e in zip(got, expected)), workers


def test_the_pool_hardens_where_it_is_told():
    chunks = _batches(2, seed=2)
    expected = [augment_batch(c, batch_seed(1, 0, 0, b), 0.3, 0.9, harden_at="input") for b, c in enumerate(chunks)]
    source = [augment_batch(c, batch_seed(1, 0, 0, b), 0.3, 0.9) for b, c in enumerate(chunks)]
    pool = AugmentPool(1, p=0.3, harden_p=0.9, seed=1, harden_at="input")
    try:
        got = list(pool.batches(0, iter(chunks)))
    finally:
        pool.close()
    assert all(np.array_equal(g, e) for g, e in zip(got, expected))
    assert not all(np.array_equal(g, s) for g, s in zip(got, source))


def test_a_pool_needs_a_worker():
    with pytest.raises(ValueError, match="at least 1 worker"):
        AugmentPool(0, p=0.5)


def test_workers_build_the_owner_s_pipeline_even_when_its_registries_changed(monkeypatch):
    # a fresh worker process has the registries as imported; this one reorders the hardening groups
    from core.data import augment
    first, *rest = augment.hardening_groups()
    record = augment.HARDENING.table[first]
    monkeypatch.delitem(augment.HARDENING.table, first)
    monkeypatch.setitem(augment.HARDENING.table, first, record)
    assert list(augment.hardening_groups()) == [*rest, first]
    chunks = _batches(4, seed=1)
    expected = [augment_batch(c, batch_seed(0, 0, 1, b), 0.5, 0.9) for b, c in enumerate(chunks)]
    pool = AugmentPool(1, p=0.5, harden_p=0.9, seed=0)
    try:
        got = list(pool.batches(1, iter(chunks)))
    finally:
        pool.close()
    assert all(np.array_equal(g, e) for g, e in zip(got, expected))
