"""Security basics: no file a user hands over can run code, and nothing a user names escapes the data root."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from core.analysis import novelty
from core.base import config
from core.learning import models
from core import runs
from core.curation.import_run import stage_uploads
from core.learning.train_run import RESUME_FILE, load_training_state

PROJECT = Path(__file__).resolve().parent.parent


class _Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_file(tmp_path: Path, name: str, **extra) -> tuple[Path, Path]:
    marker = tmp_path / f"{name}.pwned"
    path = tmp_path / name
    torch.save({"weights": _Payload(marker), "architecture": "published", **extra}, path)
    return path, marker


def test_a_malicious_pickle_checkpoint_is_refused_without_running_its_code(tmp_path):
    path, marker = _evil_file(tmp_path, "evil.pt")
    with pytest.raises(ValueError, match="not a readable model checkpoint"):
        models.load_checkpoint(path)
    assert not marker.exists()
    # The same file through torch's own unsafe default really would have run it: the test is not toothless.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_malicious_training_state_is_refused_without_running_its_code(tmp_path):
    path, marker = _evil_file(tmp_path, RESUME_FILE)
    with pytest.raises(ValueError, match="not a readable training state"):
        load_training_state(path)
    assert not marker.exists()


def test_a_novelty_sidecar_with_pickled_objects_is_ignored(tmp_path):
    path = tmp_path / "m.novelty.npz"
    np.savez(path, meta=np.array([_Payload(tmp_path / "npz.pwned")], dtype=object))
    with pytest.raises(ValueError):
        novelty.Detector.load(path)  # allow_pickle=False: object arrays are refused
    assert not (tmp_path / "npz.pwned").exists()


def test_staged_uploads_stay_inside_the_data_root_whatever_their_names(data_root):
    names = ["../../../../etc/evil.png", "/abs/path.png", "..\\..\\win.png", "a/../../b.png", "\x00nul.png"]
    paths = stage_uploads([(n, b"x") for n in names])
    root = config.data_root()
    for p in map(Path, paths):
        assert p.resolve().is_relative_to(root), p
        assert p.is_file()


DANGEROUS_CALLS = {"eval", "exec", "compile", "__import__"}
DANGEROUS_ATTRS = {("os", "system"), ("os", "popen"), ("pickle", "load"), ("pickle", "loads"),
                   ("marshal", "loads"), ("yaml", "load"), ("subprocess", "getoutput")}


def _python_files() -> list[Path]:
    return [PROJECT / "Home.py", *sorted((PROJECT / "core").glob("*.py")), *sorted((PROJECT / "pages").glob("*.py"))]


def test_no_user_controlled_value_can_reach_a_shell_or_eval():
    """The app and core never call eval/exec, os.system, pickle loads or a subprocess with shell=True."""
    found = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if isinstance(f, ast.Name) and f.id in DANGEROUS_CALLS:
                found.append(f"{path.name}:{node.lineno} {f.id}()")
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in DANGEROUS_ATTRS:
                found.append(f"{path.name}:{node.lineno} {f.value.id}.{f.attr}()")
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in node.keywords):
                found.append(f"{path.name}:{node.lineno} shell=")
            if isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name) \
                    and f.value.id == "torch" and not any(k.arg == "weights_only" and getattr(k.value, "value", None)
                                                          is True for k in node.keywords):
                found.append(f"{path.name}:{node.lineno} torch.load without weights_only=True")
    assert not found, found

