"""Explanations of single predictions: Integrated Gradients and image Anchors.

Both explain what the network saw: the image goes through :func:`core.data.images.resize_to_input` and
:func:`core.data.images.preprocess` (the one preprocessing path), and every explanation is in network-input pixels,
``config.INPUT_SIZE`` x ``config.INPUT_SIZE`` (48 x 48).

* :func:`integrated_gradients` (Sundararajan et al. 2017, via captum) attributes the target class's *logit*
  to input pixels relative to a baseline image (black, or a blurred copy).
* :func:`anchor_explanation` (Ribeiro et al. 2018, "Anchors: high-precision model-agnostic explanations")
  finds a small set of superpixels that, when kept, makes the prediction stay the same on at least
  ``threshold`` of random perturbations of the rest, with a KL-LUCB bandit deciding how many perturbations
  each candidate needs.

Display helpers :func:`overlay` and :func:`anchor_overlay` return RGB uint8 images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch
from captum.attr import IntegratedGradients
from skimage.segmentation import quickshift, slic

from core.base import config
from core.data.images import preprocess, resize_to_input
from core.learning.inference import predict_proba
from core.base.progress import ProgressFn, StopFn, check

#: Side of the network input; all maps returned here are this size.
INPUT = config.INPUT_SIZE

# ---------------------------------------------------------------- Integrated Gradients
IG_BASELINES = ("black", "blur")
#: Gaussian sigma (px at 48 x 48) of the "blur" baseline: wipes out pictogram strokes (2-4 px wide) while
#: keeping the sign's coarse colour layout, so attributions point at the shape, not at "red exists".
BLUR_SIGMA = 4.0
IG_MIN_STEPS, IG_MAX_STEPS = 2, 1024

# ---------------------------------------------------------------- Anchors
SEGMENTATIONS = ("slic", "quickshift")
FILLS = ("mean", "black")
#: SLIC compactness on the 0-255 Lab image: 10 is skimage's default and gives blob-like superpixels at 48 x 48.
SLIC_COMPACTNESS = 10.0
#: Quickshift settings scaled down from alibi's (kernel 4, max_dist 200) for 48 x 48 inputs.
QUICKSHIFT_KERNEL, QUICKSHIFT_MAX_DIST, QUICKSHIFT_RATIO = 2, 20, 0.5
#: A removed superpixel is kept with this probability in a perturbation (the paper's and alibi's 0.5).
KEEP_PROBABILITY = 0.5
#: Every new candidate gets at least this many labelled perturbations before the bandit starts, topped up
#: in one batched model call; most come free from earlier samples (see ``_Sampler.stats``).
MIN_INITIAL_SAMPLES = 32
#: Validating one candidate stops after this many samples even when its bounds still straddle the threshold
#: (a precision within a hair of ``threshold`` would otherwise sample forever); it then counts as not met.
MAX_VALIDATION_SAMPLES = 1024
#: KL-LUCB stops after this many rounds even if the best and the rest are not yet ``epsilon`` apart; it then
#: returns its current best guess. Keeps the latency bounded on models whose candidates all look alike.
MAX_KLLUCB_ROUNDS = 24
#: Constants of the KL-LUCB exploration rate (Kaufmann & Kalyanakrishnan 2013; alibi uses the same values).
KL_ALPHA, KL_K = 1.1, 405.5
#: Bisection steps for the KL confidence bounds: 2**-17 < 1e-5, far below any precision we report.
KL_BISECT_STEPS = 17
#: Share of the progress bar for labelling the coverage samples; the rest is split over anchor sizes.
COVERAGE_PROGRESS = 0.2
#: Grey that :func:`anchor_overlay` blends everything outside the anchor towards.
OVERLAY_GREY = 160


# ================================================================ validation helpers


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}; "
                         "load files with core.data.images.load_image")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0-255), got {image.dtype}; convert with "
                         "np.clip(x, 0, 255).astype(np.uint8) (multiply by 255 first if it is 0-1 float)")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must have shape (H, W, 3) RGB, got {image.shape}; greyscale or RGBA images "
                         "should go through core.data.images.load_image")
    return image


def _check_probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not (0.0 < value < 1.0):
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum \
            or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def _check_choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _output_size(size, image: np.ndarray) -> tuple[int, int]:
    if size is None:
        return INPUT, INPUT
    if isinstance(size, str) and size == "image":
        return int(image.shape[0]), int(image.shape[1])
    if (isinstance(size, tuple) and len(size) == 2
            and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in size)):
        return int(size[0]), int(size[1])
    raise ValueError(f"size must be None (network input, {INPUT}x{INPUT}), 'image' (the image's own size) or a "
                     f"(height, width) tuple of positive ints, got {size!r}")


def _resize_for_display(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if hw == (INPUT, INPUT):
        return resize_to_input(image)  # exactly what the network saw
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if (h > hw[0] or w > hw[1]) else cv2.INTER_LINEAR
    return cv2.resize(image, (hw[1], hw[0]), interpolation=interp)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)  # results are frozen dataclasses; keep their arrays frozen too
    return a


# ================================================================ Integrated Gradients


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
    image = _check_image(image)
    steps = _check_int("steps", steps, IG_MIN_STEPS, IG_MAX_STEPS)
    baseline = _check_choice("baseline", baseline, IG_BASELINES)
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
        target = _check_int("target", target, 0, n_classes - 1)
        ig = IntegratedGradients(model)
        attr, delta = ig.attribute(x, baselines=base, target=target, n_steps=steps, method="gausslegendre",
                                   internal_batch_size=steps, return_convergence_delta=True)
    attributions = attr.detach()[0].permute(1, 2, 0).numpy().astype(np.float32, copy=True)
    mass = np.abs(attributions).sum(axis=2)
    peak = float(mass.max())
    heatmap = (mass / peak if peak > 0 else np.zeros_like(mass)).astype(np.float32)
    return IGResult(attributions=_readonly(attributions), heatmap=_readonly(heatmap), target=target,
                    convergence_delta=float(delta.detach().reshape(-1)[0]), baseline=baseline, steps=steps)


#: The overlay's colours as a plotly colour scale for a heat map beside the image, with black at 0: the overlay
#: fades a pixel's colour out with its attribution, so "none" shows as the image there and as black here.
RED_YELLOW_SCALE = ((0.0, "rgb(0,0,0)"), (0.25, "rgb(128,0,0)"), (0.5, "rgb(255,0,0)"), (1.0, "rgb(255,255,0)"))


def _red_yellow(heat: np.ndarray) -> np.ndarray:
    """Colormap (..., ) in [0, 1] -> (..., 3) float RGB 0-255: dark red at 0, red at 0.5, yellow at 1."""
    r = np.clip(0.5 + heat, 0.0, 1.0)
    g = np.clip(2.0 * heat - 1.0, 0.0, 1.0)
    return np.stack([r, g, np.zeros_like(heat)], axis=-1) * 255.0


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.5,
            size: None | str | tuple[int, int] = None) -> np.ndarray:
    """Blend a red-yellow coloured heatmap onto the image.

    Parameters
    ----------
    image : np.ndarray (H, W, 3) uint8 RGB
    heatmap : np.ndarray (h, w) float in [0, 1], e.g. :attr:`IGResult.heatmap`
    alpha : float in [0, 1]
        Opacity of the colour where the heatmap is 1; it fades in proportion to the heatmap, so pixels with no
        attribution show the image unchanged.
    size : None, "image" or (height, width)
        Output size: None gives the 48 x 48 network input, "image" the image's own size (the heatmap is
        upsampled bilinearly).

    Returns
    -------
    np.ndarray (height, width, 3) uint8
    """
    image = _check_image(image)
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2 or heatmap.size == 0 or not np.issubdtype(heatmap.dtype, np.number):
        raise ValueError(f"heatmap must be a 2-D numeric array, got shape {heatmap.shape} dtype {heatmap.dtype}; "
                         "pass IGResult.heatmap")
    heatmap = heatmap.astype(np.float32)
    if not np.isfinite(heatmap).all() or heatmap.min() < 0 or heatmap.max() > 1:
        raise ValueError("heatmap values must be finite and in [0, 1]; pass IGResult.heatmap or normalise "
                         "with h / h.max()")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    hw = _output_size(size, image)
    base = _resize_for_display(image, hw).astype(np.float32)
    if heatmap.shape != hw:
        heatmap = np.clip(cv2.resize(heatmap, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    weight = (alpha * heatmap)[..., None]
    out = (1.0 - weight) * base + weight * _red_yellow(heatmap)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ================================================================ Anchors


@dataclass(frozen=True, eq=False)
class AnchorResult:
    """Anchor explanation of one image.

    Attributes
    ----------
    mask : np.ndarray (48, 48) bool
        Pixels of the anchor's superpixels (all False for the empty anchor).
    segments : np.ndarray (48, 48) int
        Superpixel label map the anchor refers to (the caller's labels when ``segments`` was passed).
    anchor : tuple of int
        Superpixel labels in the anchor, ascending.
    precision : float
        Fraction of the perturbations that keep the anchor whose prediction equals ``prediction``.
    precision_lower_bound : float
        KL lower confidence bound on the precision at level ``delta`` (union-bounded over candidates).
    coverage : float
        Fraction of ``coverage_samples`` uniform perturbations that contain the anchor (1 for the empty one).
    prediction : int
        Class predicted for the unperturbed image.
    num_samples : int
        Perturbed images the model classified in total (coverage samples included).
    threshold : float
        Requested precision.
    met_threshold : bool
        True if ``precision_lower_bound >= threshold``; otherwise this is the best candidate found.
    """

    mask: np.ndarray
    segments: np.ndarray
    anchor: tuple[int, ...]
    precision: float
    precision_lower_bound: float
    coverage: float
    prediction: int
    num_samples: int
    threshold: float
    met_threshold: bool


def _kl_bernoulli(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    eps = 1e-12  # keeps log finite at p or q in {0, 1}
    p = np.clip(p, eps, 1 - eps)
    q = np.clip(q, eps, 1 - eps)
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def _kl_upper(p: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Largest q >= p with KL(p, q) <= level (bisection; returns the conservative end)."""
    p = np.asarray(p, float)
    lo, hi = p.copy(), np.ones_like(p)
    for _ in range(KL_BISECT_STEPS):
        mid = (lo + hi) / 2
        over = _kl_bernoulli(p, mid) > level
        hi = np.where(over, mid, hi)
        lo = np.where(over, lo, mid)
    return hi


def _kl_lower(p: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Smallest q <= p with KL(p, q) <= level (bisection; returns the conservative end)."""
    p = np.asarray(p, float)
    lo, hi = np.zeros_like(p), p.copy()
    for _ in range(KL_BISECT_STEPS):
        mid = (lo + hi) / 2
        over = _kl_bernoulli(p, mid) > level
        lo = np.where(over, mid, lo)
        hi = np.where(over, hi, mid)
    return lo


def _lucb_beta(n_arms: int, t: int, delta: float) -> float:
    """Exploration rate of KL-LUCB at round t (Kaufmann & Kalyanakrishnan 2013, eq. for beta(t, delta))."""
    temp = math.log(KL_K * n_arms * t ** KL_ALPHA / delta)
    return temp + math.log(temp)


class _Sampler:
    """Draws and labels perturbations and keeps every labelled sample for reuse.

    A sample drawn for anchor A keeps A and each other superpixel with probability 1/2. Conditioned on also
    containing B, with A a subset of B, it is an exact draw for anchor B, so every new candidate starts with
    the matching samples of its ancestors and of the (A = empty) coverage samples instead of fresh ones.
    """

    def __init__(self, model, small: np.ndarray, seg_index: np.ndarray, n_seg: int, fill: np.ndarray,
                 prediction: int, rng: np.random.Generator, should_stop: StopFn | None):
        self.model, self.small, self.seg_index, self.n_seg = model, small, seg_index, n_seg
        self.fill, self.prediction, self.rng, self.should_stop = fill, prediction, rng, should_stop
        self._present: list[np.ndarray] = []
        self._source: list[np.ndarray] = []
        self._correct: list[np.ndarray] = []
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.stats: dict[tuple[int, ...], list[int]] = {}  # anchor -> [samples, correct]

    @property
    def num_samples(self) -> int:
        return sum(len(c) for c in self._correct)

    def _arrays(self):
        if self._cache is None:
            self._cache = (np.concatenate(self._present), np.concatenate(self._source),
                           np.concatenate(self._correct))
        return self._cache

    def _anchor_mask(self, anchor: tuple[int, ...]) -> np.ndarray:
        m = np.zeros(self.n_seg, bool)
        m[list(anchor)] = True
        return m

    def draw(self, requests: list[tuple[tuple[int, ...], int]]) -> list[np.ndarray]:
        """Label ``n`` new perturbations for each (anchor, n), in one model call; returns their correctness."""
        requests = [(a, n) for a, n in requests if n > 0]
        if not requests:
            return []
        present, source = [], []
        for anchor, n in requests:
            m = self._anchor_mask(anchor)
            present.append((self.rng.random((n, self.n_seg)) < KEEP_PROBABILITY) | m)
            source.append(np.broadcast_to(m, (n, self.n_seg)))
        present_all = np.concatenate(present)
        correct = self._label(present_all)
        self._present.append(present_all)
        self._source.append(np.concatenate(source))
        self._correct.append(correct)
        self._cache = None
        out, start = [], 0
        for anchor, n in requests:
            c = correct[start:start + n]
            start += n
            if anchor in self.stats:
                self.stats[anchor][0] += n
                self.stats[anchor][1] += int(c.sum())
            out.append(c)
        return out

    def _label(self, present: np.ndarray) -> np.ndarray:
        check(self.should_stop)
        keep_pixel = present[:, self.seg_index]  # (N, 48, 48)
        images = np.where(keep_pixel[..., None], self.small, self.fill)
        proba = predict_proba(self.model, images, should_stop=self.should_stop)
        return proba.argmax(axis=1) == self.prediction

    def init_stats(self, anchors: list[tuple[int, ...]]) -> None:
        """Start each new anchor's counts from the reusable samples, then top up to MIN_INITIAL_SAMPLES."""
        present, source, correct = self._arrays()
        for anchor in anchors:
            if anchor in self.stats:
                continue
            m = self._anchor_mask(anchor)
            valid = present[:, m].all(axis=1) & ~(source[:, ~m].any(axis=1))
            self.stats[anchor] = [int(valid.sum()), int(correct[valid].sum())]
        self.draw([(a, MIN_INITIAL_SAMPLES - self.stats[a][0]) for a in anchors])

    def coverage(self, anchor: tuple[int, ...], coverage_present: np.ndarray) -> float:
        if not anchor:
            return 1.0
        return float(coverage_present[:, list(anchor)].all(axis=1).mean())


def _segment(small: np.ndarray, segmentation: str, n_segments: int, seed: int) -> np.ndarray:
    if segmentation == "slic":
        return slic(small, n_segments=n_segments, compactness=SLIC_COMPACTNESS, start_label=0, channel_axis=-1)
    return quickshift(small, kernel_size=QUICKSHIFT_KERNEL, max_dist=QUICKSHIFT_MAX_DIST, ratio=QUICKSHIFT_RATIO,
                      rng=seed, channel_axis=-1)


@dataclass(frozen=True)
class _AnchorOptions:
    """The tuning arguments of :func:`anchor_explanation` (documented there); :meth:`checked` validates them."""

    threshold: float
    n_segments: int
    segmentation: str
    fill: str
    seed: int
    delta: float
    epsilon: float
    batch_size: int
    beam_size: int
    max_anchor_size: int | None
    coverage_samples: int
    max_samples: int

    def checked(self) -> _AnchorOptions:
        """A validated copy (plain int / float values); raises ValueError naming the first bad argument."""
        threshold = _check_probability("threshold", self.threshold)
        delta = _check_probability("delta", self.delta)
        epsilon = _check_probability("epsilon", self.epsilon)
        segmentation = _check_choice("segmentation", self.segmentation, SEGMENTATIONS)
        fill = _check_choice("fill", self.fill, FILLS)
        n_segments = _check_int("n_segments", self.n_segments, 1)
        seed = _check_int("seed", self.seed, 0)
        batch_size = _check_int("batch_size", self.batch_size, 1)
        beam_size = _check_int("beam_size", self.beam_size, 1)
        coverage_samples = _check_int("coverage_samples", self.coverage_samples, 1)
        max_samples = _check_int("max_samples", self.max_samples, coverage_samples)
        max_anchor_size = self.max_anchor_size
        if max_anchor_size is not None:
            max_anchor_size = _check_int("max_anchor_size", max_anchor_size, 1)
        return _AnchorOptions(threshold=threshold, n_segments=n_segments, segmentation=segmentation, fill=fill,
                              seed=seed, delta=delta, epsilon=epsilon, batch_size=batch_size, beam_size=beam_size,
                              max_anchor_size=max_anchor_size, coverage_samples=coverage_samples,
                              max_samples=max_samples)


def _anchor_labels(small: np.ndarray, segments: np.ndarray | None, options: _AnchorOptions) -> np.ndarray:
    """The superpixel label map (48, 48) int64: the caller's ``segments``, checked, or a fresh segmentation."""
    if segments is None:
        labels = _segment(small, options.segmentation, options.n_segments, options.seed)
    else:
        labels = np.asarray(segments)
        if labels.shape != (INPUT, INPUT) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"segments must be an integer label map of shape ({INPUT}, {INPUT}) (network-input "
                             f"pixels), got shape {labels.shape} dtype {labels.dtype}")
    return np.array(labels, dtype=np.int64)


class _AnchorSearch:
    """One run of :func:`anchor_explanation`, split into its steps.

    Holds the validated options, the superpixels, the :class:`_Sampler` (and with it the seeded rng and every
    labelled sample, hence the sample budget) and the coverage samples. :meth:`run` does the whole search:
    coverage samples, the empty anchor, then :meth:`_beam_search` (candidates, :meth:`kl_lucb`,
    :meth:`validate`), and finally :meth:`_result`.
    """

    def __init__(self, model, small: np.ndarray, labels: np.ndarray, options: _AnchorOptions,
                 progress: ProgressFn | None, should_stop: StopFn | None):
        self.opts, self.labels, self.progress = options, labels, progress
        ids, seg_index = np.unique(labels, return_inverse=True)
        self.ids, self.seg_index, self.n_seg = ids, seg_index.reshape(labels.shape), len(ids)
        n_seg = self.n_seg
        self.max_size = n_seg if options.max_anchor_size is None else min(options.max_anchor_size, n_seg)
        fill = small.reshape(-1, 3).mean(axis=0).round() if options.fill == "mean" else np.zeros(3)
        check(should_stop)
        self.prediction = int(predict_proba(model, [small]).argmax(axis=1)[0])
        rng = np.random.default_rng(options.seed)
        self.sampler = _Sampler(model, small, self.seg_index, n_seg, fill.astype(np.uint8), self.prediction, rng,
                                should_stop)
        self.cov_present = np.zeros((0, n_seg), bool)  # set by run(): which superpixels each coverage sample kept
        # Union bound over the candidates that can be validated, as in alibi's anchor_beam.
        self.beta_valid = math.log(1.0 / (options.delta / (1 + (options.beam_size - 1) * n_seg)))

    @classmethod
    def start(cls, model, image, segments, options: _AnchorOptions, progress, should_stop) -> _AnchorSearch:
        """Check the arguments (image first, then options, then model), segment and classify the image."""
        image = _check_image(image)
        options = options.checked()
        if not hasattr(model, "num_classes"):
            raise ValueError("model must expose num_classes (as core.learning.models.TrafficSignNet does)")
        small = resize_to_input(image)
        return cls(model, small, _anchor_labels(small, segments, options), options, progress, should_stop)

    def report(self, fraction: float) -> None:
        if self.progress is not None:
            self.progress(float(min(1.0, max(0.0, fraction))), "searching anchors")

    def out_of_budget(self) -> bool:
        return self.sampler.num_samples >= self.opts.max_samples

    def bounds(self, anchor: tuple[int, ...]) -> tuple[float, float, float]:
        """(precision, KL lower bound, KL upper bound) of ``anchor`` at the union-bounded level ``beta_valid``."""
        n, pos = self.sampler.stats[anchor]
        mean = pos / n
        return (mean, float(_kl_lower(np.array([mean]), self.beta_valid / n)[0]),
                float(_kl_upper(np.array([mean]), self.beta_valid / n)[0]))

    def validate(self, anchors: list[tuple[int, ...]]) -> None:
        """Sample the undecided ones together (one model call per round) until each is decided or capped."""
        threshold, batch_size = self.opts.threshold, self.opts.batch_size
        while True:
            open_ = []
            for a in anchors:
                mean, lb, ub = self.bounds(a)
                if lb < threshold <= ub and self.sampler.stats[a][0] < MAX_VALIDATION_SAMPLES:
                    open_.append(a)
            if not open_ or self.out_of_budget():
                return
            self.sampler.draw([(a, min(batch_size, MAX_VALIDATION_SAMPLES - self.sampler.stats[a][0]))
                               for a in open_])

    def kl_lucb(self, arms: list[tuple[int, ...]], top_n: int) -> list[tuple[int, ...]]:
        """The ``top_n`` most precise arms, most precise first (KL-LUCB, capped at MAX_KLLUCB_ROUNDS rounds)."""
        if len(arms) <= top_n:
            return list(arms)
        stats, opts = self.sampler.stats, self.opts
        for t in range(1, MAX_KLLUCB_ROUNDS + 1):
            n = np.array([stats[a][0] for a in arms], float)
            pos = np.array([stats[a][1] for a in arms], float)
            means = pos / n
            certified = _kl_lower(means, self.beta_valid / n) >= opts.threshold
            # Sort by (certified, mean): a candidate already proven valid heads the beam.
            order = np.lexsort((means, certified))
            best, rest = order[-top_n:], order[:-top_n]
            if certified.any():
                # This size already has a valid anchor. Coverage halves with every superpixel added, so no
                # larger anchor will beat it: ranking the rest of the beam (often a many-way tie that KL-LUCB
                # separates only with thousands of samples) would just burn time.
                break
            beta = _lucb_beta(len(arms), t, opts.delta)
            ub = _kl_upper(means[rest], beta / n[rest])
            lb = _kl_lower(means[best], beta / n[best])
            if ub.max() - lb.min() <= opts.epsilon or self.out_of_budget():
                break
            # The two arms most likely on the wrong side: the strongest outsider and the weakest insider.
            self.sampler.draw([(arms[rest[np.argmax(ub)]], opts.batch_size),
                               (arms[best[np.argmin(lb)]], opts.batch_size)])
        return [arms[i] for i in best[::-1]]

    def _candidates(self, beam: list[tuple[int, ...]], best_cov: float) -> list[tuple[int, ...]]:
        """Every beam member grown by one superpixel, keeping only those that could still beat ``best_cov``."""
        candidates = sorted({tuple(sorted(a + (j,))) for a in beam for j in range(self.n_seg) if j not in a})
        return [c for c in candidates if self.sampler.coverage(c, self.cov_present) > best_cov]

    def _beam_search(self) -> tuple[tuple[int, ...], float, bool]:
        """Grow the beam one superpixel per round; returns (anchor, its coverage, whether it meets threshold)."""
        best_anchor, best_cov, met = None, -1.0, False
        beam: list[tuple[int, ...]] = [()]
        tried: list[tuple[int, ...]] = [()]
        for size in range(1, self.max_size + 1):
            if self.out_of_budget():
                break
            candidates = self._candidates(beam, best_cov)
            if not candidates:
                break
            self.sampler.init_stats(candidates)
            beam = self.kl_lucb(candidates, min(self.opts.beam_size, len(candidates)))
            self.validate(beam)
            tried.extend(beam)
            for a in beam:
                _, lb, _ = self.bounds(a)
                cov = self.sampler.coverage(a, self.cov_present)
                if lb >= self.opts.threshold and cov > best_cov:
                    best_anchor, best_cov, met = a, cov, True
            self.report(COVERAGE_PROGRESS + (1 - COVERAGE_PROGRESS) * size / self.max_size)
        if best_anchor is None:
            # Nothing reached the threshold: report the most confidently precise candidate we validated.
            best_anchor = max(tried, key=lambda a: (self.bounds(a)[1], self.bounds(a)[0], -len(a)))
            best_cov = self.sampler.coverage(best_anchor, self.cov_present)
        return best_anchor, best_cov, met

    def run(self) -> AnchorResult:
        coverage_samples = self.opts.coverage_samples
        # Coverage samples double as the first precision samples for every candidate (anchor = empty).
        (cov_correct,) = self.sampler.draw([((), coverage_samples)])
        self.cov_present = self.sampler._arrays()[0].copy()
        self.report(COVERAGE_PROGRESS)
        self.sampler.stats[()] = [coverage_samples, int(cov_correct.sum())]
        self.validate([()])
        if self.bounds(())[1] >= self.opts.threshold:
            # The prediction does not depend on the image content at all: the empty anchor already holds.
            return self._result((), 1.0, True)
        return self._result(*self._beam_search())

    def _result(self, best_anchor: tuple[int, ...], best_cov: float, met: bool) -> AnchorResult:
        precision, lower, _ = self.bounds(best_anchor)
        anchor_ids = tuple(sorted(int(self.ids[i]) for i in best_anchor))
        mask = np.isin(self.seg_index, list(best_anchor)) if best_anchor else np.zeros((INPUT, INPUT), bool)
        self.report(1.0)
        return AnchorResult(mask=_readonly(mask), segments=_readonly(self.labels), anchor=anchor_ids,
                            precision=float(precision), precision_lower_bound=float(lower),
                            coverage=float(best_cov), prediction=self.prediction,
                            num_samples=self.sampler.num_samples, threshold=self.opts.threshold,
                            met_threshold=bool(met))


def anchor_explanation(model: torch.nn.Module, image: np.ndarray, *, threshold: float = 0.95,
                       segments: np.ndarray | None = None, n_segments: int = 25, segmentation: str = "slic",
                       fill: str = "mean", seed: int = 0, delta: float = 0.1, epsilon: float = 0.15,
                       batch_size: int = 64, beam_size: int = 2, max_anchor_size: int | None = None,
                       coverage_samples: int = 1000, max_samples: int = 15_000,
                       progress: ProgressFn | None = None,
                       should_stop: StopFn | None = None) -> AnchorResult:
    """Anchor explanation (Ribeiro et al. 2018): superpixels that, kept, pin the prediction down.

    The 48 x 48 network-input image is cut into superpixels. A perturbation keeps the anchor's superpixels and
    each other superpixel with probability 1/2; removed superpixels are painted with a fixed "absent" colour.
    An anchor's precision is the fraction of its perturbations the model still gives the original class.

    Search: beam search over superpixel sets, growing each kept candidate by one superpixel per round. Among
    each round's candidates KL-LUCB (Kaufmann & Kalyanakrishnan 2013, as in the paper and alibi) picks the
    ``beam_size`` most precise: it samples only the two arms whose KL confidence bounds overlap most, until
    the weakest chosen arm's lower bound is within ``epsilon`` of the strongest other arm's upper bound. The
    chosen candidates are then sampled until their KL lower bound (at level ``delta``, union-bounded over
    ``1 + (beam_size - 1) * n_superpixels`` candidates, as in alibi) clears ``threshold`` or their upper bound
    falls below it. Valid anchors compete on coverage; the search stops when no larger candidate could beat
    the best valid coverage (coverage only shrinks as anchors grow).

    Parameters
    ----------
    model : torch.nn.Module
        Classifier with a ``num_classes`` attribute, used through :func:`core.learning.inference.predict_proba`.
    image : np.ndarray (H, W, 3) uint8 RGB, any size
        Resized to 48 x 48 by :func:`core.data.images.resize_to_input` before segmenting and perturbing.
    threshold : float in (0, 1)
        Required precision.
    segments : np.ndarray (48, 48) int, optional
        Superpixel label map to use instead of segmenting (any integer labels).
    n_segments : int
        Approximate number of SLIC superpixels (ignored for quickshift or given ``segments``).
    segmentation : {"slic", "quickshift"}
        skimage algorithm used on the 48 x 48 image when ``segments`` is None.
    fill : {"mean", "black"}
        Colour of removed superpixels. "mean" (default) is the image's mean RGB colour: it removes the
        superpixel's content without adding the strong dark edges that black would (black borders are
        themselves a sign feature, e.g. on speed-limit and end-of-restriction signs).
    seed : int
        Seeds every random draw (and quickshift); same inputs and seed give the same anchor.
    delta : float in (0, 1)
        Confidence level of the precision bounds.
    epsilon : float in (0, 1)
        Precision gap KL-LUCB tolerates when picking the beam.
    batch_size : int
        Perturbations drawn per arm per bandit round (and per validation round).
    beam_size : int
        Candidates kept per anchor size.
    max_anchor_size : int, optional
        Largest anchor tried; defaults to the number of superpixels.
    coverage_samples : int
        Uniform perturbations (anchor = empty) used to estimate coverage. They are also classified, which
        gives every small candidate its first precision samples for free.
    max_samples : int
        Latency guard: once this many perturbed images have been classified (about 0.3 ms each for the
        published CNN on one core), the search stops after the current bandit or validation round and
        returns the best anchor so far (``met_threshold`` says whether it holds). Typical GTSRB images need
        1,000-4,000.
    progress : core.base.progress.ProgressFn, optional
        Called with a coarse fraction done in [0, 1].
    should_stop : callable() -> bool, optional
        Polled before every model call; True raises :class:`core.base.progress.Cancelled`.

    Returns
    -------
    AnchorResult
        ``met_threshold=False`` means no candidate up to ``max_anchor_size`` reached ``threshold``; the result
        is then the validated candidate with the highest precision lower bound.
    """
    options = _AnchorOptions(threshold=threshold, n_segments=n_segments, segmentation=segmentation, fill=fill,
                             seed=seed, delta=delta, epsilon=epsilon, batch_size=batch_size, beam_size=beam_size,
                             max_anchor_size=max_anchor_size, coverage_samples=coverage_samples,
                             max_samples=max_samples)
    return _AnchorSearch.start(model, image, segments, options, progress, should_stop).run()


def _check_mask(mask) -> np.ndarray:
    if isinstance(mask, AnchorResult):
        return mask.mask
    if not isinstance(mask, np.ndarray):
        raise ValueError("mask must be a 2-D boolean numpy array (h, w), such as AnchorResult.mask, "
                         f"got {type(mask).__name__}")
    if mask.ndim != 2 or mask.shape[0] < 1 or mask.shape[1] < 1:
        raise ValueError("mask must be a 2-D boolean array (h, w), such as AnchorResult.mask, got shape "
                         f"{mask.shape}")
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind not in "iuf":
        raise ValueError(f"mask must be a boolean array (or 0/1 numbers), got dtype {mask.dtype}")
    if not np.isin(mask, (0, 1)).all():
        raise ValueError(f"mask must be a boolean array (or 0/1 numbers), got {mask.dtype} values other than 0 "
                         "and 1 (a heatmap? threshold it first)")
    return mask.astype(bool)


def anchor_overlay(image: np.ndarray, mask: np.ndarray | AnchorResult, *,
                   size: None | str | tuple[int, int] = None) -> np.ndarray:
    """The image with everything outside the anchor greyed out (desaturated and faded towards light grey).

    Parameters
    ----------
    image : np.ndarray (H, W, 3) uint8 RGB, the explained image
    mask : np.ndarray (h, w) bool
        The anchor's pixels, normally ``AnchorResult.mask`` (48 x 48, network-input pixels); any 2-D mask
        covering the whole image works, upsampled nearest to the output size. 0/1 integer or float arrays
        are taken as boolean. An :class:`AnchorResult` is still accepted (its ``mask`` is used).
    size : None, "image" or (height, width)
        As in :func:`overlay`: None gives 48 x 48, "image" the image's own size.

    Returns
    -------
    np.ndarray (height, width, 3) uint8
        Pixels inside the mask unchanged; the others grey, ``(luma + OVERLAY_GREY) / 2`` in every channel.

    Raises
    ------
    ValueError
        If ``image`` is not (H, W, 3) uint8, ``mask`` is not a 2-D boolean-like array, or ``size`` is invalid.
    """
    image = _check_image(image)
    mask = _check_mask(mask)
    hw = _output_size(size, image)
    base = _resize_for_display(image, hw)
    if mask.shape != hw:
        mask = cv2.resize(mask.astype(np.uint8), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    luma = base.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma
    grey = 0.5 * luma + 0.5 * OVERLAY_GREY
    out = base.copy()
    out[~mask] = np.clip(np.rint(grey[~mask]), 0, 255).astype(np.uint8)[:, None]
    return out
