"""Explanations of single predictions: the public entry points.

Both methods explain what the network saw: the image goes through :func:`core.data.images.resize_to_input` and
:func:`core.data.images.preprocess` (the one preprocessing path), and every explanation is in network-input pixels,
``config.INPUT_SIZE`` x ``config.INPUT_SIZE`` (48 x 48).

* :func:`integrated_gradients` (:mod:`core.analysis.attributions`) attributes an output's logit to input pixels;
  :func:`explain_class` does it for a dataset class id, :func:`explain_report_image` for an image of an
  evaluation report, checked against the model file that made the report.
* :func:`anchor_explanation` (:mod:`core.analysis.anchors`) finds superpixels that, kept, pin the prediction down.
* :func:`overlay` and :func:`anchor_overlay` (:mod:`core.analysis.overlays`) draw them; RGB uint8 images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from core.analysis import reports
from core.analysis.anchors import FILLS, SEGMENTATIONS, AnchorResult, anchor_explanation  # noqa: F401 (public API)
from core.analysis.attributions import BLUR_SIGMA, IG_BASELINES, IGResult, integrated_gradients  # noqa: F401
from core.analysis.overlays import RED_YELLOW_SCALE, anchor_overlay, overlay  # noqa: F401 (public API)
from core.learning import registry
from core.learning.models import load_checkpoint, model_from_checkpoint

#: Reads a model file: path -> (checkpoint dict, network). Pages pass a cached one.
Loader = Callable[[str], tuple[dict, torch.nn.Module]]


def load_network(path: str) -> tuple[dict, torch.nn.Module]:
    """(checkpoint, network) of a model file, read afresh (the default :data:`Loader`)."""
    ckpt = load_checkpoint(path)
    return ckpt, model_from_checkpoint(ckpt)


def output_index(class_ids: Sequence[int], class_id: int) -> int:
    """The network output that scores dataset class ``class_id``, for a model predicting ``class_ids`` in order
    (a checkpoint's ``class_ids``: output k is class ``class_ids[k]``)."""
    ids = [int(c) for c in class_ids]
    if int(class_id) not in ids:
        shown = ", ".join(map(str, ids[:60])) + (", ..." if len(ids) > 60 else "")
        raise ValueError(f"the model does not predict class {class_id}; its {len(ids)} classes are {shown}")
    return ids.index(int(class_id))


def explain_class(model: torch.nn.Module, image: np.ndarray, *, class_ids: Sequence[int], class_id: int | None = None,
                  steps: int = 32, baseline: str = "black") -> IGResult:
    """Integrated Gradients of dataset class ``class_id`` (default: the predicted class) for one image.

    Parameters
    ----------
    model : torch.nn.Module whose output k scores class ``class_ids[k]``
    image : np.ndarray (H, W, 3) uint8 RGB, any size
    class_ids : the model's classes in output order (a checkpoint's ``class_ids``)
    class_id : a dataset class id, not an output index

    Returns
    -------
    IGResult whose ``target`` is the output index explained.
    """
    target = None if class_id is None else output_index(class_ids, class_id)
    return integrated_gradients(model, image, target=target, steps=steps, baseline=baseline)


@dataclass(frozen=True, eq=False)
class ReportExplanation:
    """Integrated Gradients of one image of an evaluation report.

    Attributes
    ----------
    image : np.ndarray (H, W, 3) uint8, the image as stored in the report's dataset
    class_id : int, the explained class (dataset id; the report's prediction unless another was asked for)
    model_version : str, the model file's version, the one that made the report
    ig : IGResult, heat map and attributions at 48 x 48
    """

    image: np.ndarray
    class_id: int
    model_version: str
    ig: IGResult


def report_model_file(report: reports.Report) -> str:
    """The model file behind a report, as long as it is still the version that made the report's predictions.

    Raises ValueError (with the fix) when the file is gone or has changed since (retrained, replaced): an
    explanation would then explain another model than the one whose predictions the report shows.
    """
    name, seen = report.summary["model"], report.summary.get("model_version")
    try:
        path = registry.model_path(name)
        gone = None if os.path.isfile(path) else f"no file {path}"
    except ValueError as e:  # no longer registered
        gone = str(e)
    if gone:
        raise ValueError(f"the model {name!r} of report {report.id} no longer exists ({gone}); its images cannot be "
                         "explained. Evaluate an existing model and explain from its report.")
    now = registry.file_version(path)
    if now != seen:
        raise ValueError(f"report {report.id} was made by version {seen} of model {name!r}, and its file is now "
                         f"version {now} (retrained or replaced), so an explanation would not explain the report's "
                         "predictions. Evaluate the model again and explain from the new report.")
    return str(path)


def explain_report_image(report: reports.Report, index: int, *, class_id: int | None = None, steps: int = 32,
                         baseline: str = "black", load: Loader = load_network) -> ReportExplanation:
    """Integrated Gradients of image ``index`` of an evaluation report, by the model version that made the report.

    ``class_id``: the dataset class to explain; default, the class the report predicted for the image. ``load``
    reads the model file (pages pass their cached loader). Raises ValueError when the report's model file has
    changed since the report (:func:`report_model_file`), when the report is stale (its dataset changed), or when
    ``index`` is not one of its images.
    """
    n = len(report.predictions.y_pred)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise ValueError(f"image index {index!r} is not one of report {report.id}'s {n} images (0-{n - 1})")
    path = report_model_file(report)
    ckpt, network = load(path)
    (image,) = reports.report_images(report, [int(index)])
    cid = int(report.predictions.y_pred[index]) if class_id is None else int(class_id)
    ig = explain_class(network, image, class_ids=ckpt["class_ids"], class_id=cid, steps=steps, baseline=baseline)
    return ReportExplanation(image=image, class_id=cid, model_version=report.summary["model_version"], ig=ig)
