"""Paths and constants, named in one place.

The data root defaults to ``<project>/data`` and moves with the ``TSW_DATA_ROOT`` environment variable.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # core/base/config.py
DATA_ROOT_ENV = "TSW_DATA_ROOT"

#: Side of the square network input, in pixels.
INPUT_SIZE = 48
#: Images larger than this many pixels are refused before they are decoded (decompression bombs, 20k x 20k photos).
MAX_IMAGE_PIXELS = 40_000_000
#: Upload size limit in bytes.
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
#: The embedded sample that ships with the project (read-only, tracked in git).
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"
#: Shipped models (tracked in git).
ARTIFACTS_DIR = PROJECT_ROOT / "artifacts"
#: Most evaluation jobs allowed to run at once.
MAX_CONCURRENT_EVALUATIONS = 5


def data_root() -> Path:
    """Folder holding built datasets, the store, user images, trained models and reports."""
    root = Path(os.environ.get(DATA_ROOT_ENV, PROJECT_ROOT / "data")).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def datasets_dir() -> Path:
    return data_root() / "datasets"


def models_dir() -> Path:
    return data_root() / "models"


def reports_dir() -> Path:
    return data_root() / "reports"


def store_dir() -> Path:
    """One TinyDB file per table (see :mod:`core.base.store`)."""
    return data_root() / "store"


def workspaces_dir() -> Path:
    """Workspace datasets: user-changed datasets derived from built ones (see :mod:`core.data.workspaces`)."""
    return data_root() / "workspaces"


def runs_dir() -> Path:
    """One folder per run: its progress file and whatever files it produces besides models and reports."""
    return data_root() / "runs"


def cache_dir() -> Path:
    """Derived files that can be recomputed at any time (decoded splits)."""
    return data_root() / "cache"
