"""A convolution with few input channels whose input gradient is computed the fast way on CPU: the same function
and gradients, other rounding.

A convolution's input gradient is a convolution of the output gradient with the flipped kernel, whose output
channels are the layer's input channels. In ``bn_stn`` the first 5x5 convolution reads the spatial transformer's
3-channel image, and oneDNN computes a 3-channel output at the cost of 16 (its channel block): profiled on this
project's CPU (fp32, batch 128, channels-last), that input gradient took 28 ms of a 165 ms training step. Here it is
instead a ``(kh, 1)`` convolution with ``cin * kw`` output channels (one per input channel and kernel column: 15
for 3 x 5, nearly a full block), followed by ``kw`` shifted sums over the width: the same products and sums in
another order (11 ms for that layer, 8.6 of them the convolution). Forward, weight and bias gradients are the native
ones. Used by :meth:`core.learning.models.TrafficSignNet._features` while a channels-last fp32 network trains on
CPU (see :func:`applies`; measured in ``bench/bench_train.py --vs-bare``); evaluation runs the layer as it is.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: oneDNN's channel block for fp32 on AVX-512: an input gradient with at most this many channels costs as much as
#: one with this many, so the column form pays while ``cin * kw`` stays within it. On an AVX2-only CPU the block is
#: 8, and the column form's 15 channels (two blocks) still won there: ``bn_stn`` steps 196.4 against 222.7 ms without
#: it (fp32, 4 rounds alternating, 2026-12-05).
CHANNEL_BLOCK = 16


def applies(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`conv2d` stands in for ``conv(x)``: a plain stride-1, unpadded, undilated, ungrouped
    convolution with a kernel wider than 1 and ``in_channels * kernel width <= CHANNEL_BLOCK``, on a channels-last
    float32 input on CPU that needs its gradient, outside autocast."""
    if not (isinstance(conv, nn.Conv2d) and type(conv).forward is nn.Conv2d.forward):
        return False
    kw = conv.kernel_size[1]
    return (conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding in ((0, 0), "valid") and conv.padding_mode == "zeros"
            and 1 < kw and conv.in_channels * kw <= CHANNEL_BLOCK
            and x.requires_grad and torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and x.device.type == "cpu" and x.dtype == torch.float32 and conv.weight.dtype == torch.float32
            and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())


def conv2d(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` with the input gradient of :func:`input_gradient` (see :func:`applies`)."""
    return _NarrowConv.apply(x, conv.weight, conv.bias)


def column_weight(weight: torch.Tensor) -> torch.Tensor:
    """(cout, cin, kh, kw) -> (cin * kw, cout, kh, 1): the flipped kernel, one output channel per input channel
    ``c`` and flipped kernel column ``k`` (channel ``c * kw + k``), channels-last."""
    cout, cin, kh, kw = weight.shape
    flipped = weight.flip(2, 3).transpose(0, 1)  # (cin, cout, kh, kw): the input gradient's kernel
    return flipped.permute(0, 3, 1, 2).reshape(cin * kw, cout, kh, 1).contiguous(memory_format=torch.channels_last)


def input_gradient(grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The gradient of an unpadded stride-1 convolution's input.

    Parameters
    ----------
    grad : torch.Tensor (N, cout, Ho, Wo), the output gradient
    weight : torch.Tensor (cout, cin, kh, kw)

    Returns
    -------
    torch.Tensor (N, cin, Ho + kh - 1, Wo + kw - 1), channels-last.
    """
    n, _, ho, wo = grad.shape
    _, cin, kh, kw = weight.shape
    grad = grad.contiguous(memory_format=torch.channels_last)
    # rows[n, y, x', c, k] = sum over output channels and kernel rows; x' runs over the width padded by kw - 1
    rows = F.conv2d(grad, column_weight(weight), padding=(kh - 1, kw - 1))
    rows = rows.permute(0, 2, 3, 1).reshape(n, ho + kh - 1, wo + 2 * (kw - 1), cin, kw)
    width = wo + kw - 1
    out = rows[:, :, 0:width, :, 0].clone()
    for k in range(1, kw):
        out += rows[:, :, k:k + width, :, k]
    return out.permute(0, 3, 1, 2)


class _NarrowConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = input_gradient(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = grad_b = None
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1], [0, 0], [1, 1], False,
                [0, 0], 1, [False, ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]])
        return grad_x, grad_w, grad_b
