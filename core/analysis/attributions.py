"""Integrated Gradients (Sundararajan et al. 2017, via captum): attributes a class's *logit* to the pixels of the
48 x 48 network input, relative to a baseline image (black, or a blurred copy).

The image goes through :func:`core.data.images.resize_to_input` and :func:`core.data.images.preprocess` (the one
preprocessing path), so the attributions are in the pixels the network saw. :func:`core.analysis.overlays.overlay`
draws them onto the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from core.analysis.explain_checks import check_choice, check_image, check_int, readonly
from core.data.images import preprocess, resize_to_input

IG_BASELINES = ("black", "blur")
#: Gaussian sigma (px at 48 x 48) of the "blur" baseline: wipes out pictogram strokes (2-4 px wide) while
#: keeping the sign's coarse colour layout, so attributions point at the shape, not at "red exists".
BLUR_SIGMA = 4.0
IG_MIN_STEPS, IG_MAX_STEPS = 2, 1024


@dataclass(frozen=True, eq=False)
class IGResult:
    """Integrated-Gradients explanation of one image.

    Attributes
    ----------
    attributions : np.ndarray (48, 48, 3) float32
        Per input value (network-input pixels, RGB channels in preprocessed units), attribution to the target
        logit. They sum to ``logit(image) - logit(baseline)`` up to ``convergence_delta``.
    heatmap : np.ndarray (48, 48) float32
        ``|attributions|`` summed over channels and divided by its maximum, in [0, 1] (all zeros if no pixel
        has any attribution).
    target : int
        Explained class index (the predicted class unless one was asked for).
    convergence_delta : float
        ``sum(attributions) - (logit(image) - logit(baseline))`` in logit units; the integral's error.
    baseline : str
        "black" or "blur".
    steps : int
        Integration steps (Gauss-Legendre nodes).
    """

    attributions: np.ndarray
    heatmap: np.ndarray
    target: int
    convergence_delta: float
    baseline: str
    steps: int


def _baseline_image(small: np.ndarray, baseline: str) -> np.ndarray:
    if baseline == "black":
        return np.zeros_like(small)
    # Blur the 48 x 48 image the network sees, so BLUR_SIGMA means the same whatever the upload size.
    return cv2.GaussianBlur(small, (0, 0), sigmaX=BLUR_SIGMA, sigmaY=BLUR_SIGMA, borderType=cv2.BORDER_REFLECT)


def integrated_gradients(model: torch.nn.Module, image: np.ndarray, *, target: int | None = None, steps: int = 32,
                         baseline: str = "black") -> IGResult:
    """Integrated Gradients of the target logit with respect to the preprocessed image.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (N, 3, 48, 48) preprocessed images to logits (N, K). Switched to eval mode (dropout off) and
        channels_last, as :func:`core.learning.inference.predict_proba` does.
    image : np.ndarray (H, W, 3) uint8 RGB, any size
        Resized to 48 x 48 and normalised by :func:`core.data.images.preprocess`.
    target : int, optional
        Class to explain; defaults to the model's predicted class.
    steps : int
        Integration steps (Gauss-Legendre nodes), all evaluated in one batch: one forward and one backward
        pass of ``steps`` images, plus single-image forwards for the prediction and the convergence check.
    baseline : {"black", "blur"}
        Reference input: the preprocessed all-black image, or the preprocessed image blurred with a Gaussian
        of ``BLUR_SIGMA`` network pixels.

    Returns
    -------
    IGResult
    """
    image = check_image(image)
    steps = check_int("steps", steps, IG_MIN_STEPS, IG_MAX_STEPS)
    baseline = check_choice("baseline", baseline, IG_BASELINES)
    model.eval()
    # channels_last as in core.learning.inference: ~25 % faster forward + backward for these convs on CPU (measured).
    model = model.to(memory_format=torch.channels_last)
    small = resize_to_input(image)
    # Callers (e.g. a Streamlit page) may sit inside inference_mode; tensors made there can never take part
    # in autograd, so build the inputs with it switched off.
    with torch.inference_mode(False), torch.enable_grad():
        x = preprocess(small).contiguous(memory_format=torch.channels_last)
        base = preprocess(_baseline_image(small, baseline)).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            logits = model(x)
        n_classes = int(logits.shape[1])
        if target is None:
            target = int(logits.argmax(1).item())
        target = check_int("target", target, 0, n_classes - 1)
        from captum.attr import IntegratedGradients  # on first use: 0.55 s off every command's start
        ig = IntegratedGradients(model)
        attr, delta = ig.attribute(x, baselines=base, target=target, n_steps=steps, method="gausslegendre",
                                   internal_batch_size=steps, return_convergence_delta=True)
    attributions = attr.detach()[0].permute(1, 2, 0).numpy().astype(np.float32, copy=True)
    mass = np.abs(attributions).sum(axis=2)
    peak = float(mass.max())
    heatmap = (mass / peak if peak > 0 else np.zeros_like(mass)).astype(np.float32)
    return IGResult(attributions=readonly(attributions), heatmap=readonly(heatmap), target=target,
                    convergence_delta=float(delta.detach().reshape(-1)[0]), baseline=baseline, steps=steps)

