"""Shared fixtures: every test gets its own empty data root, so no test touches ``data/``."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # browser_support


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data-root"
    monkeypatch.setenv("TSW_DATA_ROOT", str(root))
    return root


@pytest.fixture
def make_images():
    """make_images(n, size=32, seed=0) -> (n, size, size, 3) uint8 random RGB images."""
    def _make(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return _make
