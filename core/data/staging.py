"""Staging: the app's uploads written under the data root for a run to read (an import, a detection)."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Sequence

from core.data.uploads import safe_name


def stage(items: Sequence[tuple[str, bytes]], root: Path) -> list[str]:
    """Write uploads ``(name, bytes)`` into a new folder under ``root`` (one sub-folder per item, the file under
    its :func:`core.data.uploads.safe_name`); returns their paths, in order."""
    folder = Path(root) / uuid.uuid4().hex
    paths = []
    for k, (name, data) in enumerate(items):
        path = folder / f"{k:05d}" / safe_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(str(path))
    return paths
