"""Architectures, checkpoints and class-set surgery.

``published`` is the competition CNN exactly: 48x48 RGB input; 1x1 conv (one filter, a learned colour-to-grey
transform); conv 5x5x29, conv 3x3x59, conv 3x3x74, each followed by 3x3 stride-2 max-pool with ceil mode ->
74 x 4 x 4 = 1,184 features; FC 300, FC 300; classifier. ``bn_stn`` is the selectable improvement: a spatial
transformer in front, a 3-filter 1x1 conv, and batch-norm after every conv; same widths otherwise. ``bn`` is
``bn_stn`` without the spatial transformer. A ``_lcn`` suffix (``bn_stn_lcn``, ``published_lcn``) puts local
contrast normalisation (:class:`LocalContrastNorm`) in front: the input option lives in the architecture name the
checkpoint stores, and runs inside the network, so training, evaluation, prediction and explanations all see it.
"""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.base.files import atomic_write_bytes
from core.learning import bn_pool, narrow_conv

ARCHITECTURES = ("published", "bn", "bn_stn", "published_lcn", "bn_stn_lcn")
#: Suffix of an architecture with local contrast normalisation in front.
LCN_SUFFIX = "_lcn"
CHECKPOINT_FORMAT = 1
CHECKPOINT_KEYS = ("format", "weights", "architecture", "class_ids", "class_names", "dataset",
                   "dataset_fingerprint", "parent", "mode", "epochs", "history", "metrics", "config", "created")
FEATURES = 1184
HIDDEN = 300


class LocalContrastNorm(nn.Module):
    """Per-image local contrast normalisation of the luminance (after Jarrett et al. 2009 and the IDSIA committee's
    contrast-normalised column): subtract the Gaussian-weighted local mean of the luminance from every channel and
    divide by the local standard deviation of the luminance, floored at the image's mean local deviation, so dark,
    washed-out and bright signs reach the convolutions alike while the colour differences stay. No parameters."""

    def __init__(self, sigma: float = 4.0, size: int = 13):
        super().__init__()
        r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-r ** 2 / (2 * sigma ** 2))
        kernel = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, size, size)
        self.register_buffer("kernel", kernel, persistent=False)
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)

    def _blur(self, y: torch.Tensor) -> torch.Tensor:
        pad = self.kernel.shape[-1] // 2
        return F.conv2d(F.pad(y, (pad,) * 4, mode="reflect"), self.kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x * self.luma).sum(1, keepdim=True)
        mean = self._blur(y)
        std = self._blur((y - mean) ** 2).clamp_min(0).sqrt()
        floor = std.mean(dim=(2, 3), keepdim=True).clamp_min(1e-2)
        return (x - mean) / torch.maximum(std, floor)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that, where it pays, trains in the default memory layout inside a channels-last network.

    Same parameters and buffers as ``nn.BatchNorm2d``, so checkpoints load alike; evaluation (a per-channel affine)
    is left as is. Whole ``bn_stn`` training steps on this project's CPU build (torch 2.13, batch 128, medians of
    4 alternating rounds, 2026-12-04): fp32 262 ms with every batch norm copied to the default layout, 239 ms with
    none, **210 ms** with only the 3-channel one; bf16 143 ms with every one, 148 ms with the 3-channel one only,
    170 ms with none. So: the 3-channel batch norm always (channels-last batch norm on 3 channels is slow: 19
    against 5 ms), the wide ones only in bf16. (An earlier day's profile had the 29-channel one at 82 ms native
    against 35 ms copied; these whole-step numbers supersede it.)"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.copies_layout(x):
            y = _DefaultLayoutGrad.apply(super().forward(x.contiguous()))
            return y.contiguous(memory_format=torch.channels_last)
        return super().forward(x)

    def copies_layout(self, x: torch.Tensor) -> bool:
        """Whether training runs this batch norm on a default-layout copy of ``x`` (see the class text)."""
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        return channels_last and (self.num_features <= 3 or x.dtype != torch.float32)


class _DefaultLayoutGrad(torch.autograd.Function):
    """Identity whose backward hands the gradient on in the default layout (batch norm's backward is slow when its
    gradient is channels-last and its saved input is not)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class SpatialTransformer(nn.Module):
    """Predicts an affine warp of the input from a small localisation net (Jaderberg et al. 2015)."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.loc = nn.Sequential(
            nn.Conv2d(channels, 16, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(32 * 9, 64), nn.ReLU(inplace=True), nn.Linear(64, 6))
        nn.init.zeros_(self.loc[-1].weight)
        with torch.no_grad():
            self.loc[-1].bias.copy_(torch.tensor([1, 0, 0, 0, 1, 0], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.loc(x).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False, padding_mode="border")


class TrafficSignNet(nn.Module):
    """The published CNN; with ``improved=True`` the bn_stn variant.

    Input (N, 3, 48, 48) from :func:`core.data.images.preprocess`; output logits (N, num_classes).
    """

    def __init__(self, num_classes: int, *, improved: bool = False, stn: bool = True, dropout: float = 0.3,
                 lcn: bool = False):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.improved = improved
        self.lcn = LocalContrastNorm() if lcn else nn.Identity()
        c0 = 3 if improved else 1

        def block(cin: int, cout: int, k: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, k)]
            if improved:
                layers.append(BatchNorm2d(cout))
            # Max-pool, then ReLU: the same function as the published ReLU-then-pool (ReLU is monotone, so it
            # commutes with max; gradients agree too) on a quarter of the values, and faster to train on CPU.
            # No parameters move: checkpoints of either order load alike.
            return layers + [nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.ReLU(inplace=True)]

        self.stn = SpatialTransformer(3) if improved and stn else nn.Identity()
        self.features = nn.Sequential(
            nn.Conv2d(3, c0, 1), *([BatchNorm2d(c0), nn.ReLU(inplace=True)] if improved else []),
            *block(c0, 29, 5), *block(29, 59, 3), *block(59, 74, 3), nn.Flatten())
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(FEATURES, HIDDEN), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(HIDDEN, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He init: PyTorch's default shrinks the signal at every ReLU layer, and without batch-norm the
        # published net then barely trains (measured: 11 % vs. far higher val accuracy after 3 short epochs).
        for m in list(self.features.modules()) + list(self.head.modules()):
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, 300), used for t-SNE, novelty and smart segregation."""
        return self.head(self._features(self.stn(self.lcn(x))))

    def _features(self, x: torch.Tensor, stage=None) -> torch.Tensor:
        """``self.features(x)``; while the published network trains, its first two convolutions run as one (below);
        while the improved ones train, batch norm and max-pool where :mod:`core.learning.bn_pool` applies.

        Nothing lies between the published 1x1 conv (3 -> 1) and the 5x5 conv (1 -> 29), so together they are one
        5x5 conv (3 -> 29) whose weights are the product of the two and whose bias takes the 1x1 bias through the
        5x5 weights: the same function (to float rounding), the same parameters and gradients (autograd goes
        through the product), but the backward pass no longer computes the gradient of the one-channel map, which
        oneDNN does slowly (profiled on this project's CPU, batch 128: 44 ms of a 114 ms fp32 step; the gain is
        measured by ``bench/bench_train.py --vs-bare``). Evaluation keeps the two layers, so recorded results do
        not move.

        ``stage``, for profiling (``bench/profile_step.py``): a callable ``(name, tensor) -> tensor`` handed each
        training step's output as it is made (a layer, or layers run as one), whose return value goes on."""
        if self.training and not self.improved:
            return self._features_one_stem(x, stage)
        if self.training:
            return self._features_fused(x, stage)
        return self.features(x)

    @torch.jit.unused
    def _features_fused(self, x, stage):
        """``self.features(x)`` with each batch norm and the max-pool after it as one step where
        :func:`core.learning.bn_pool.applies` (fp32, channels-last, CPU): same function and gradients, faster."""
        layers = list(self.features)
        i = 0
        while i < len(layers):
            if i + 1 < len(layers) and bn_pool.applies(layers[i], layers[i + 1], x):
                x = _report(stage, bn_pool.batch_norm_max_pool(x, layers[i], layers[i + 1]), i, layers[i:i + 2],
                            "fused")
                i += 2
            elif narrow_conv.applies(layers[i], x):
                x = _report(stage, narrow_conv.conv2d(x, layers[i]), i, layers[i:i + 1], "narrow")
                i += 1
            else:
                x = _report(stage, layers[i](x), i, layers[i:i + 1])
                i += 1
        return x

    # Training only: TorchScript (export) compiles the evaluation path, and reads this stub's types from its
    # unannotated signature (Tensor); it cannot resolve this module's postponed annotations here.
    @torch.jit.unused
    def _features_one_stem(self, x, stage):
        grey, first = self.features[0], self.features[1]
        weight = first.weight * grey.weight.view(1, -1, 1, 1)  # (29, 1, 5, 5) x (1, 3, 1, 1) -> (29, 3, 5, 5)
        bias = first.bias + grey.bias * first.weight.sum((1, 2, 3))
        x = _report(stage, F.conv2d(x, weight.contiguous(memory_format=torch.channels_last), bias), 0,
                    [grey, first], "one stem")
        for i, layer in enumerate(self.features[2:], start=2):
            x = _report(stage, layer(x), i, [layer])
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def _report(stage, x: torch.Tensor, start: int, layers, tag: str = "") -> torch.Tensor:
    """``x``, the output of ``layers`` (from index ``start`` of ``features``), through ``stage`` if there is one,
    named like ``4-5 BatchNorm2d 29 + MaxPool2d (fused)``; without a stage no name is made."""
    if stage is None:
        return x
    span = f"{start}-{start + len(layers) - 1}" if len(layers) > 1 else str(start)
    return stage(f"{span} {' + '.join(describe_layer(m) for m in layers)}" + (f" ({tag})" if tag else ""), x)


def describe_layer(layer: nn.Module) -> str:
    """A layer's short name for profiles: ``Conv2d 29->59 3x3``, ``BatchNorm2d 29``, ``MaxPool2d``."""
    if isinstance(layer, nn.Conv2d):
        return f"Conv2d {layer.in_channels}->{layer.out_channels} {layer.kernel_size[0]}x{layer.kernel_size[1]}"
    if isinstance(layer, nn.BatchNorm2d):
        return f"BatchNorm2d {layer.num_features}"
    return type(layer).__name__


class Committee(nn.Module):
    """Several networks with the same classes averaged in probability space (a committee, as in MCDNN).

    ``forward`` returns the log of the mean softmax, so ``softmax(forward(x))`` is the committee's probability.
    Used as the teacher when distilling several models into one (``core.learning.training``).
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("a committee needs at least one member")
        sizes = {m.num_classes for m in members}
        if len(sizes) != 1:
            raise ValueError(f"committee members disagree on the number of classes: {sorted(sizes)}")
        self.members = nn.ModuleList(members)

    @property
    def num_classes(self) -> int:
        return self.members[0].num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.softmax(m(x), dim=1) for m in self.members]).mean(0)
        return p.clamp_min(1e-8).log()


def build_model(architecture: str, num_classes: int) -> TrafficSignNet:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")
    base = architecture.removesuffix(LCN_SUFFIX)
    return TrafficSignNet(num_classes, improved=base != "published", stn=base == "bn_stn",
                          lcn=architecture.endswith(LCN_SUFFIX))


def expand_classifier(model: TrafficSignNet, n_new: int) -> TrafficSignNet:
    """Add ``n_new`` output rows to the classifier in place; the old rows' weights and biases are kept exactly.

    New rows start small (scaled like PyTorch's default init) so the old classes' decisions barely move.
    """
    if n_new < 0:
        raise ValueError(f"n_new must be >= 0, got {n_new}")
    old = model.classifier
    new = nn.Linear(old.in_features, old.out_features + n_new)
    with torch.no_grad():
        new.weight[: old.out_features] = old.weight
        new.bias[: old.out_features] = old.bias
        if n_new:
            new.bias[old.out_features:] = old.bias.min()
    model.classifier = new
    return model


def make_checkpoint(model: TrafficSignNet, *, architecture: str, class_ids: list[int], class_names: list[str],
                    dataset: str, dataset_fingerprint: str, parent: str | None, mode: str, epochs: int,
                    history: list[dict], metrics: dict, config: dict) -> dict:
    if len(class_ids) != model.num_classes or len(class_names) != len(class_ids):
        raise ValueError(f"checkpoint has {len(class_ids)} class ids and {len(class_names)} names for a model "
                         f"with {model.num_classes} outputs")
    return {"format": CHECKPOINT_FORMAT, "weights": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "architecture": architecture, "class_ids": [int(c) for c in class_ids], "class_names": list(class_names),
            "dataset": dataset, "dataset_fingerprint": dataset_fingerprint, "parent": parent, "mode": mode,
            "epochs": int(epochs), "history": history, "metrics": metrics, "config": config,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def save_checkpoint(ckpt: dict, path: Path, *, keys: tuple[str, ...] = CHECKPOINT_KEYS,
                    what: str = "checkpoint") -> Path:
    """Write atomically (temp file + rename): a crash never leaves a half-written model. ``keys``: the keys the
    dict must have (another kind of checkpoint, e.g. the generator's, names its own)."""
    missing = [k for k in keys if k not in ckpt]
    if missing:
        raise ValueError(f"{what} lacks keys {missing}")
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a checkpoint with ``weights_only=True``; raises ValueError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or foreign files
        raise ValueError(f"{path}: not a readable model checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ckpt, dict) or "weights" not in ckpt or "architecture" not in ckpt:
        raise ValueError(f"{path}: not a workbench checkpoint (expected a dict with keys {', '.join(CHECKPOINT_KEYS)})")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks keys {', '.join(missing)}")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> TrafficSignNet:
    """Rebuild the network; a mismatch of architecture or class count gives a clear ValueError."""
    model = build_model(ckpt["architecture"], len(ckpt["class_ids"]))
    try:
        model.load_state_dict(ckpt["weights"])
    except RuntimeError as e:
        raise ValueError(f"checkpoint weights do not fit architecture {ckpt['architecture']!r} with "
                         f"{len(ckpt['class_ids'])} classes: {str(e).splitlines()[0][:200]}") from None
    model.eval()
    return model
