"""Shared fixtures: every test gets its own empty data root, so no test touches ``data/``."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
#: Runs in threads of the test process, where a test can patch what they call; tests that start a real server,
#: and tests/test_workers.py, use the product's default (worker processes).
os.environ.setdefault("TSW_RUN_WORKERS", "thread")
#: Under pytest-xdist (pytest.ini runs two workers) each worker computes with its share of the cores, and so do the
#: processes it starts (the CLI, servers): more torch threads than cores only makes everyone wait.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                     // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # browser_support

import core.kinds  # noqa: E402,F401  (every run kind registered, as in the app and the CLI)


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    """A fresh, empty data root (``TSW_DATA_ROOT``) for every test."""
    root = tmp_path / "data-root"
    monkeypatch.setenv("TSW_DATA_ROOT", str(root))
    return root


@pytest.fixture(autouse=True)
def main_module():
    """Put ``sys.modules["__main__"]`` back after each test: Streamlit's AppTest runs a page as ``__main__`` and
    leaves it there, and a later test's spawned worker processes (``AugmentPool``) then re-run that page's
    temporary script as their main module and die (seen as BrokenProcessPool when test_export.py and
    test_augment_pool.py shared a pytest worker)."""
    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main


def random_images(n: int, size: int | tuple[int, int] = 32, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8 random RGB noise; ``size`` is a side or (h, w)."""
    h, w = (size, size) if np.isscalar(size) else size
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def smooth_images(n: int, size: int | tuple[int, int] = 32, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8 sign-like images: a coloured gradient background with a bright disc and a dark bar."""
    h, w = (size, size) if np.isscalar(size) else size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        base = rng.uniform(40, 200, 3)
        grad = rng.uniform(-60, 60, 3)
        img = base + grad * (xx / max(w - 1, 1))[..., None]
        cy, cx, r = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w, rng.uniform(0.2, 0.35) * min(h, w)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        img[disc] = rng.uniform(150, 255, 3)
        bar = disc & (np.abs(yy - cy) < r / 4)
        img[bar] = rng.uniform(0, 60, 3)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


@pytest.fixture
def make_images():
    """make_images(n, size=32, seed=0) -> (n, size, size, 3) uint8 random RGB images."""
    def _make(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
        return random_images(n, size, seed)
    return _make


@pytest.fixture
def make_image():
    """make_image(h, w, seed=0, smooth=False) -> one (h, w, 3) uint8 RGB image (noise, or sign-like if smooth)."""
    def _make(h: int, w: int | None = None, seed: int = 0, smooth: bool = False) -> np.ndarray:
        w = h if w is None else w
        return (smooth_images if smooth else random_images)(1, (h, w), seed)[0]
    return _make


def star_sign(seed: int, size: int = 64) -> np.ndarray:
    """A sign no model here knows: a yellow star on magenta."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = (rng.integers(150, 200), 20, rng.integers(150, 200))
    c = size / 2 + rng.uniform(-3, 3, 2)
    radii = (size * rng.uniform(0.36, 0.42), size * 0.16)
    pts = [(c[0] + radii[k % 2] * np.cos(np.pi / 2 + k * np.pi / 5),
            c[1] - radii[k % 2] * np.sin(np.pi / 2 + k * np.pi / 5)) for k in range(10)]
    cv2.fillPoly(img, [np.int32(pts)], (255, 230, 0))
    return img
