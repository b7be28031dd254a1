"""Image Anchors (Ribeiro et al. 2018, "Anchors: high-precision model-agnostic explanations"): a small set of
superpixels that, when kept, makes the prediction stay the same on at least ``threshold`` of random perturbations
of the rest, with a KL-LUCB bandit (:mod:`core.analysis.anchor_bandit`) deciding how many perturbations each
candidate needs. Works on the 48 x 48 network input (:func:`core.data.images.resize_to_input`); draw a result with
:func:`core.analysis.overlays.anchor_overlay`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from skimage.segmentation import quickshift, slic

from core.analysis.anchor_bandit import Sampler, kl_lower, kl_upper, lucb_beta
from core.analysis.explain_checks import check_choice, check_image, check_int, check_probability, readonly
from core.base import config
from core.base.progress import ProgressFn, StopFn, check
from core.data.images import resize_to_input
from core.learning.inference import predict_proba

#: Side of the network input; masks and segments returned here are this size.
INPUT = config.INPUT_SIZE
SEGMENTATIONS = ("slic", "quickshift")
FILLS = ("mean", "black")
#: SLIC compactness on the 0-255 Lab image: 10 is skimage's default and gives blob-like superpixels at 48 x 48.
SLIC_COMPACTNESS = 10.0
#: Quickshift settings scaled down from alibi's (kernel 4, max_dist 200) for 48 x 48 inputs.
QUICKSHIFT_KERNEL, QUICKSHIFT_MAX_DIST, QUICKSHIFT_RATIO = 2, 20, 0.5
#: Validating one candidate stops after this many samples even when its bounds still straddle the threshold
#: (a precision within a hair of ``threshold`` would otherwise sample forever); it then counts as not met.
MAX_VALIDATION_SAMPLES = 1024
#: KL-LUCB stops after this many rounds even if the best and the rest are not yet ``epsilon`` apart; it then
#: returns its current best guess. Keeps the latency bounded on models whose candidates all look alike.
MAX_KLLUCB_ROUNDS = 24
#: Share of the progress bar for labelling the coverage samples; the rest is split over anchor sizes.
COVERAGE_PROGRESS = 0.2


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
        threshold = check_probability("threshold", self.threshold)
        delta = check_probability("delta", self.delta)
        epsilon = check_probability("epsilon", self.epsilon)
        segmentation = check_choice("segmentation", self.segmentation, SEGMENTATIONS)
        fill = check_choice("fill", self.fill, FILLS)
        n_segments = check_int("n_segments", self.n_segments, 1)
        seed = check_int("seed", self.seed, 0)
        batch_size = check_int("batch_size", self.batch_size, 1)
        beam_size = check_int("beam_size", self.beam_size, 1)
        coverage_samples = check_int("coverage_samples", self.coverage_samples, 1)
        max_samples = check_int("max_samples", self.max_samples, coverage_samples)
        max_anchor_size = self.max_anchor_size
        if max_anchor_size is not None:
            max_anchor_size = check_int("max_anchor_size", max_anchor_size, 1)
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

    Holds the validated options, the superpixels, the :class:`Sampler` (and with it the seeded rng and every
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
        self.sampler = Sampler(model, small, self.seg_index, n_seg, fill.astype(np.uint8), self.prediction, rng,
                                should_stop)
        self.cov_present = np.zeros((0, n_seg), bool)  # set by run(): which superpixels each coverage sample kept
        # Union bound over the candidates that can be validated, as in alibi's anchor_beam.
        self.beta_valid = math.log(1.0 / (options.delta / (1 + (options.beam_size - 1) * n_seg)))

    @classmethod
    def start(cls, model, image, segments, options: _AnchorOptions, progress, should_stop) -> _AnchorSearch:
        """Check the arguments (image first, then options, then model), segment and classify the image."""
        image = check_image(image)
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
        return (mean, float(kl_lower(np.array([mean]), self.beta_valid / n)[0]),
                float(kl_upper(np.array([mean]), self.beta_valid / n)[0]))

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
            certified = kl_lower(means, self.beta_valid / n) >= opts.threshold
            # Sort by (certified, mean): a candidate already proven valid heads the beam.
            order = np.lexsort((means, certified))
            best, rest = order[-top_n:], order[:-top_n]
            if certified.any():
                # This size already has a valid anchor. Coverage halves with every superpixel added, so no
                # larger anchor will beat it: ranking the rest of the beam (often a many-way tie that KL-LUCB
                # separates only with thousands of samples) would just burn time.
                break
            beta = lucb_beta(len(arms), t, opts.delta)
            ub = kl_upper(means[rest], beta / n[rest])
            lb = kl_lower(means[best], beta / n[best])
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
        return AnchorResult(mask=readonly(mask), segments=readonly(self.labels), anchor=anchor_ids,
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
