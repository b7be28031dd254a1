"""Synthetic outliers for outlier exposure: sign-like images that are none of the training classes.

Outlier exposure (Hendrycks et al. 2019) trains a model to give near-uniform probabilities on images outside its
classes, which makes its novelty scores separate unseen classes better. It needs outlier images; there is no
auxiliary dataset here, and the unseen signs users care about look like known ones (a known frame around an
unknown pictogram), so the outliers are made from the training batch itself, in the model's input space
(normalised (N, 3, S, S) tensors), by four transforms that keep sign statistics but break class identity:

- ``centre_swap``: image i's frame around image j's centre disk turned 90, 180 or 270 degrees or flipped upside
  down (an unknown pictogram in a known frame);
- ``channel_swap``: colour channels permuted (red frames turn blue or green, blue discs red);
- ``jigsaw``: the 3 x 3 tiles of an image shuffled;
- ``halves``: the left half of one image beside the right half of another class's image.

An outlier that barely differs from a real sign (a grey sign's colours swapped, a blank or symmetric centre
turned) would teach a known class to look novel; such outliers are dropped (:data:`MIN_CHANGE`).
"""
from __future__ import annotations

import torch

KINDS = ("centre_swap", "channel_swap", "jigsaw", "halves")
#: Mean absolute change (normalised units, about 0.26 of the pixel range each) below which an outlier is dropped.
MIN_CHANGE = 0.25
#: Radius of the swapped centre disk, and of the disk where a sign's colours are judged, as shares of the side.
CENTRE_RADIUS = 0.24
SIGN_RADIUS = 0.4
_CHANNEL_PERMUTATIONS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def synthesize(x: torch.Tensor, y: torch.Tensor, *, n: int, generator: torch.Generator) -> torch.Tensor:
    """Up to ``n`` outliers made from the batch ``x`` (N, 3, S, S) with class indices ``y`` (N,).

    Each outlier takes a random kind of :data:`KINDS` and random source images; those changed by less than
    :data:`MIN_CHANGE` are dropped, so fewer than ``n`` may come back (never more). Deterministic for a given
    ``generator`` state.
    """
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3] or len(y) != len(x):
        raise ValueError(f"x must be a batch of square RGB images (N, 3, S, S) with one label each in y, got "
                         f"{tuple(x.shape)} and {len(y)} labels")
    if n <= 0 or len(x) < 2:
        return x[:0]
    kind = torch.randint(len(KINDS), (n,), generator=generator)
    i = torch.randint(len(x), (n,), generator=generator)
    j = (i + torch.randint(1, len(x), (n,), generator=generator)) % len(x)  # another image, never i itself
    out = torch.empty((n, *x.shape[1:]), dtype=x.dtype, device=x.device)
    keep = torch.zeros(n, dtype=torch.bool, device=x.device)
    other_class = (y[i] != y[j]).to(x.device)
    for k, make in enumerate((_centre_swap, _channel_swap, _jigsaw, _halves)):
        sel = torch.nonzero(kind == k).flatten()
        if len(sel):
            out[sel], keep[sel] = make(x[i[sel]], x[j[sel]], other_class[sel], generator)
    return out[keep].contiguous(memory_format=torch.channels_last)


def _changed(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per image: mean absolute difference of ``a`` and ``b`` (over ``mask`` when given) above MIN_CHANGE."""
    d = (a - b).abs().mean(1)
    if mask is None:
        return d.flatten(1).mean(1) > MIN_CHANGE
    return (d * mask).flatten(1).sum(1) / mask.sum() > MIN_CHANGE


def _centre_disk(size: int, radius: float = CENTRE_RADIUS) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= (radius * size) ** 2).float()  # (size, size), on the CPU


def _centre_swap(a, b, _other_class, generator):
    turn = torch.randint(4, (len(a),), generator=generator)  # 1-3: quarter turns; 0: upside down
    moved = torch.stack([torch.flip(im, dims=(1,)) if t == 0 else torch.rot90(im, int(t), dims=(1, 2))
                         for im, t in zip(b, turn)])
    m = _centre_disk(a.shape[-1]).to(a.device)
    out = a * (1 - m) + moved * m
    # the centre must really change: not a symmetric or blank centre turned, not the same pictogram again
    return out, _changed(moved, b, m) & _changed(out, a, m)


def _channel_swap(a, _b, _other_class, generator):
    pick = torch.randint(len(_CHANNEL_PERMUTATIONS), (len(a),), generator=generator)
    out = torch.stack([im[list(_CHANNEL_PERMUTATIONS[p])] for im, p in zip(a, pick)])
    # judged on the sign's colours, not the background's (a grey sign before a green hedge stays a grey sign)
    return out, _changed(out, a, _centre_disk(a.shape[-1], SIGN_RADIUS).to(a.device))


def _jigsaw(a, _b, _other_class, generator):
    s = a.shape[-1] // 3
    out = a.clone()
    for n in range(len(a)):
        order = torch.randperm(9, generator=generator)
        while bool((order == torch.arange(9)).all()):
            order = torch.randperm(9, generator=generator)
        tiles = [a[n, :, r * s:(r + 1) * s, c * s:(c + 1) * s] for r in range(3) for c in range(3)]
        for t, src in enumerate(order.tolist()):
            r, c = divmod(t, 3)
            out[n, :, r * s:(r + 1) * s, c * s:(c + 1) * s] = tiles[src]
    return out, _changed(out, a)


def _halves(a, b, other_class, _generator):
    h = a.shape[-1] // 2
    out = a.clone()
    out[..., h:] = b[..., h:]
    return out, other_class & _changed(out, a)
