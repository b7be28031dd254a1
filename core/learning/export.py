"""Export a model as a TorchScript file plus its card, for use outside the workbench.

``FILE.pt`` is the evaluation network as TorchScript (``torch.jit.load(FILE.pt)`` needs no workbench code); it
maps a (N, 3, 48, 48) float32 batch to logits (N, K). ``FILE.json`` beside it is the model's card: its classes
(output index -> class id and name), how to turn an RGB image into the input tensor (the steps of
:func:`core.data.images.preprocess`, with the numbers), the dataset and version it was trained on, its metrics,
architecture and parent. The card is also inside the .pt file (``torch.jit.load(..., _extra_files={"card.json":
""})``), so the two cannot be separated by accident.

Both files are written through temp files and ``os.replace``; before they are, the exported network is loaded
back and must give the checkpoint's logits on a batch (within :data:`LOGIT_TOLERANCE`).
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.base import config
from core.base.files import atomic_write_bytes
from core.data.export import atomic_target, check_target
from core.data.images import MEAN, STD, preprocess
from core.learning import registry
from core.learning.models import load_checkpoint, model_from_checkpoint

CARD_NAME = "card.json"
CARD_FORMAT = 1
#: Largest absolute difference allowed between the exported network's logits and the checkpoint's.
LOGIT_TOLERANCE = 1e-4
#: Images in the batch the export is checked on (seeded noise, so every export checks the same inputs).
CHECK_BATCH = 8


@dataclass(frozen=True)
class ModelExport:
    """What :func:`export_model` wrote: the TorchScript file, the card beside it, and the check it passed."""

    path: Path
    card_path: Path
    card: dict
    max_logit_diff: float


def model_card(ckpt: dict, *, name: str, version: str) -> dict:
    """The card of a checkpoint: everything needed to use the exported network correctly."""
    size = config.INPUT_SIZE
    return {
        "format": CARD_FORMAT, "model": name, "model_version": version, "architecture": ckpt["architecture"],
        "parent": ckpt["parent"], "mode": ckpt["mode"], "epochs": ckpt["epochs"], "created": ckpt["created"],
        "dataset": {"name": ckpt["dataset"], "version": ckpt["dataset_fingerprint"]},
        "metrics": ckpt.get("metrics", {}),
        "classes": [{"index": i, "class_id": int(c), "name": n}
                    for i, (c, n) in enumerate(zip(ckpt["class_ids"], ckpt["class_names"]))],
        "input": {"shape": [None, 3, size, size], "dtype": "float32", "layout": "NCHW", "colour_order": "RGB"},
        "output": {"shape": [None, len(ckpt["class_ids"])], "meaning": "logits; softmax over dim 1 gives the "
                   "probability of each class, in the order of 'classes'"},
        "preprocessing": {
            "input_size": size, "colour_order": "RGB", "scale": 1 / 255,
            "mean": [round(float(v), 6) for v in MEAN], "std": [round(float(v), 6) for v in STD],
            "resize": f"to {size}x{size} pixels, ignoring aspect ratio: OpenCV INTER_AREA when shrinking, "
                      "INTER_LINEAR when enlarging",
            "steps": [
                "decode the image as RGB uint8 (H, W, 3); composite any alpha channel on white; greyscale to RGB",
                f"resize to {size}x{size}",
                "convert to float and divide by 255",
                "subtract mean and divide by std, per channel (R, G, B)",
                "transpose to (3, H, W) and stack into a batch (N, 3, H, W)"],
        },
        "torch_version": torch.__version__,
    }


def export_model(ref: str, out: str | os.PathLike, *, overwrite: bool = False) -> ModelExport:
    """Write model ``ref`` (a registered name or a checkpoint path) as TorchScript ``out`` (``.pt``) and its card
    ``out`` with ``.json``. Raises ValueError (unknown model, existing or unwritable target) before writing."""
    path = check_target(out, overwrite=overwrite, suffix=".pt")
    card_path = check_target(path.with_suffix(".json"), overwrite=overwrite)
    src = registry.model_path(ref)
    ckpt = load_checkpoint(src)
    model = model_from_checkpoint(ckpt)
    card = model_card(ckpt, name=registry.model_label(ref), version=registry.file_version(src))
    card_bytes = json.dumps(card, indent=1).encode("utf-8")
    scripted = _script(model)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf, _extra_files={CARD_NAME: card_bytes})
    diff = _check_same_logits(model, buf.getvalue())
    with atomic_target(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    atomic_write_bytes(card_path, card_bytes)
    return ModelExport(path, card_path, card, diff)


def load_exported(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict]:
    """(network, card) of an exported file; what a user outside the workbench does, in two lines."""
    extra = {CARD_NAME: ""}
    net = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return net, json.loads(extra[CARD_NAME])


def _script(model: torch.nn.Module) -> torch.jit.ScriptModule:
    # Scripting keeps the batch size free (the spatial transformer reads the input's shape); tracing is the
    # fallback for a network TorchScript cannot compile.
    model.eval()
    try:
        return torch.jit.script(model)
    except Exception:  # TorchScript raises many types for unsupported Python
        example = torch.zeros(2, 3, config.INPUT_SIZE, config.INPUT_SIZE)
        with torch.no_grad():
            return torch.jit.trace(model, example)


def _check_same_logits(model: torch.nn.Module, data: bytes) -> float:
    images = np.random.default_rng(0).integers(0, 256, (CHECK_BATCH, 40, 40, 3), dtype=np.uint8)
    x = preprocess(images)
    loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    with torch.inference_mode():
        diff = float((loaded(x) - model(x)).abs().max())
    if not diff <= LOGIT_TOLERANCE:
        raise ValueError(f"the exported network's logits differ from the checkpoint's by {diff:.2e} (more than "
                         f"{LOGIT_TOLERANCE:.0e}); nothing was written. Report this with the model's architecture.")
    return diff
