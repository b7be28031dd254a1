"""Deployment: what Streamlit Community Cloud installs and the upload limits it enforces."""
from __future__ import annotations

import tomllib
from pathlib import Path

from core.base import config

PROJECT = Path(__file__).resolve().parent.parent


def _requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (PROJECT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name, op, version = next((line.partition(op)[0], op, line.partition(op)[2])
                                     for op in ("==", ">=") if op in line)
            pins[name.lower()] = op + version
    return pins


def test_cloud_dependencies_match_requirements():
    """The Pipfile the Cloud installs from pins exactly what requirements.txt pins (and torch's CPU index)."""
    pipfile = tomllib.loads((PROJECT / "Pipfile").read_text())
    cloud = {**pipfile["packages"], **pipfile["dev-packages"]}
    cloud = {k.lower(): (v["version"] if isinstance(v, dict) else v) for k, v in cloud.items()}
    assert cloud == _requirement_pins()
    torch_pin = pipfile["packages"]["torch"]
    sources = {s["name"]: s["url"] for s in pipfile["source"]}
    assert sources[torch_pin["index"]] == "https://download.pytorch.org/whl/cpu"
    assert "pytest" not in pipfile["packages"] and "playwright" not in pipfile["packages"]  # tests only


def test_the_upload_limit_fits_the_pixel_limit():
    """Streamlit's upload cap (MB) equals config.MAX_UPLOAD_BYTES and lets a JPEG at the pixel limit through."""
    cfg = tomllib.loads((PROJECT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["maxUploadSize"] * 2**20 == config.MAX_UPLOAD_BYTES
    # A photo at the pixel limit is ~0.5 bytes a pixel as JPEG: it must fit under the cap.
    assert config.MAX_IMAGE_PIXELS * 0.5 <= config.MAX_UPLOAD_BYTES
