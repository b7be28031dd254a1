"""The dataset catalog: one name resolves to one source, built or workspace, behind one interface.

Two kinds of source implement :class:`DatasetSource` (module-level ``read_rows`` and ``load_split``):

- **built** datasets (:mod:`core.data.built`: GTSRB, GTSRB_48, Difficult, Testing, imported ones, the embedded
  sample) are immutable: written once, never changed afterwards;
- **workspaces** (:mod:`core.data.workspaces`) are what users change: derived from a built dataset, copy-on-write.

Every dataset state has a version (``DatasetInfo.fingerprint``: the content hash of a built dataset, the
overlay's fingerprint of a workspace), recorded by models and reports. Everything outside ``core.data`` finds and
reads datasets through this module (:func:`list_datasets`, :func:`get_dataset`, :func:`read_index`,
:func:`load_split`); changing a workspace goes through :mod:`core.data.workspace_changes`.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from core.data import built, workspaces
from core.data.built import SPLITS, DatasetInfo, SplitArrays

__all__ = ["SPLITS", "DatasetInfo", "SplitArrays", "DatasetSource", "list_datasets", "get_dataset", "read_index",
           "list_files", "load_split", "require_split", "dataset_input"]


class DatasetSource(Protocol):
    """What each kind of dataset provides (implemented as module functions by ``built`` and ``workspaces``)."""

    def list_infos(self, known: list[DatasetInfo]) -> list[DatasetInfo]:
        """This kind's datasets; ``known``: those the sources before it listed (a workspace needs its base)."""

    def read_rows(self, info: DatasetInfo, split: str | None = None) -> list[dict]: ...

    def load_split(self, info: DatasetInfo, split: str) -> SplitArrays: ...


#: The source of each kind of dataset (``DatasetInfo.kind``), in listing order: a name taken by an earlier source
#: hides a later one's.
SOURCES: dict[str, DatasetSource] = {"built": built, "workspace": workspaces}


def list_datasets() -> list[DatasetInfo]:
    """Every dataset: built ones, then workspaces."""
    found: list[DatasetInfo] = []
    for source in SOURCES.values():
        names = {d.name for d in found}
        found += [d for d in source.list_infos(found) if d.name not in names]
    return found


def get_dataset(name: str) -> DatasetInfo:
    infos = list_datasets()
    for info in infos:
        if info.name == name:
            return info
    names = [d.name for d in infos]
    raise ValueError(f"no dataset named {name!r}; available: "
                     f"{', '.join(names) or 'none (run: python -m core datasets build)'}")


def _source(info: DatasetInfo) -> DatasetSource:
    return SOURCES[info.kind]


def read_index(info: DatasetInfo, split: str | None = None) -> list[dict]:
    """Rows of the dataset's index (optionally one split), in file order."""
    return _source(info).read_rows(info, split)


def list_files(info: DatasetInfo, split: str, class_id: int | None = None) -> list[str]:
    """Relative paths of one split (optionally one class), in index order; no image is decoded."""
    return [r["file"] for r in read_index(info, split) if class_id is None or r["class_id"] == class_id]


def load_split(info: DatasetInfo | str, split: str, *, classes: list[int] | None = None) -> SplitArrays:
    """All images of a split as one array (decoded once and cached by the dataset's version), optionally only
    the images of ``classes``."""
    if isinstance(info, str):
        info = get_dataset(info)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    arrays = _source(info).load_split(info, split)
    if classes is not None:
        idx = np.flatnonzero(np.isin(arrays.labels, np.asarray(classes)))
        arrays = SplitArrays(arrays.images[idx], arrays.labels[idx], [arrays.files[i] for i in idx])
    return arrays


def require_split(name: str, split: str, *, minimum: int = 1) -> DatasetInfo:
    """The dataset ``name``, after checking that ``split`` is a split of it with at least ``minimum`` images."""
    info = get_dataset(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    n = info.split_size(split)
    if n < minimum:
        raise ValueError(f"{name}/{split} is empty; choose another split" if n == 0 else
                         f"{name}/{split} has {n} images; this needs at least {minimum}")
    return info


def dataset_input(info: DatasetInfo) -> dict:
    """How a run records the dataset it reads: ``{name, version}``."""
    return {"name": info.name, "version": info.fingerprint}
