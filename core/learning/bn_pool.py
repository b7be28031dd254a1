"""Batch norm then max-pooling, as one training step on CPU: the same function and gradients, fewer passes over
the large map.

In ``bn_stn`` each block is conv -> batch norm -> max-pool -> ReLU. Natively, training writes the normalised map
(128 x 29 x 44 x 44 floats for the first block, 29 MB), pools it, and its backward scatters the pooled gradient
into a zeroed map of that size before batch norm's own backward reads it twice. But batch norm in training is, per
channel, the affine map ``a * x + b`` (``a = gamma / sqrt(var + eps)``), and an affine map with ``a >= 0`` commutes
with max (with ``a < 0`` the max of ``x`` is read off ``-x``). So here the statistics are two sums over the map
(matrix-vector products: the native kernel's reduction over a channels-last map is several times slower), the
pooling runs on the raw map, the affine map on the pooled quarter; the backward needs only the pooled gradient's
sums and one pass ``grad = pool_backward(a * g) + c0 + c1 * x`` over the map. Running statistics move as
``nn.BatchNorm2d``'s do. Used by :meth:`core.learning.models.TrafficSignNet._features` while a channels-last fp32
network trains on CPU (measured in ``bench/bench_train.py --vs-bare``); evaluation runs the layers as they are.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def applies(bn: nn.Module, pool: nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`batch_norm_max_pool` stands in for ``pool(bn(x))``: a training batch norm with learned scale
    and running statistics, followed by a max-pool, on a channels-last float32 map on CPU (where it was measured
    to pay; on a GPU the native kernels are fused already)."""
    return (isinstance(bn, nn.BatchNorm2d) and bn.training and bn.affine and bn.track_running_stats
            and isinstance(pool, nn.MaxPool2d) and not pool.return_indices
            and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())


def batch_norm_max_pool(x: torch.Tensor, bn: nn.BatchNorm2d, pool: nn.MaxPool2d) -> torch.Tensor:
    """``pool(bn(x))`` for a batch norm in training mode; updates ``bn``'s running statistics as it would."""
    geometry = tuple(_pair(v) for v in (pool.kernel_size, pool.stride or pool.kernel_size, pool.padding,
                                        pool.dilation)) + (bool(pool.ceil_mode),)
    out, mean, var = _BatchNormMaxPool.apply(x, bn.weight, bn.bias, bn.eps, geometry)
    _update_running_stats(bn, mean, var, x.numel() // x.shape[1])
    return out


def _pair(v) -> list[int]:
    return list(v) if isinstance(v, (tuple, list)) else [int(v), int(v)]


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) as (N*H*W, C): a view of a channels-last tensor."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def _channel(v: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, 1, 1)


@torch.no_grad()
def _update_running_stats(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """What ``nn.BatchNorm2d.forward`` does in training: count the batch, move the running mean and the running
    (unbiased) variance by the momentum, or by the cumulative average when the momentum is None."""
    bn.num_batches_tracked.add_(1)
    factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    bn.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
    bn.running_var.mul_(1 - factor).add_(var * (count / max(count - 1, 1)), alpha=factor)


class _BatchNormMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps, geometry):
        rows = _rows(x)
        count = rows.shape[0]
        ones = x.new_ones(1, count)
        mean = (ones @ rows).view(-1) / count
        centred = rows - mean  # two passes, as exact as the native kernel's (no E[x^2] - E[x]^2 cancellation)
        var = (ones @ centred.square_()).view(-1) / count
        del centred
        invstd = torch.rsqrt(var + eps)
        scale = gamma * invstd
        flip = bool((scale < 0).any())  # a < 0: max(a x + b) = a min(x) + b = -a max(-x) + b
        sign = _channel(torch.where(scale < 0, -1.0, 1.0)) if flip else None
        kernel, stride, padding, dilation, ceil_mode = geometry
        pooled, index = F.max_pool2d(x * sign if flip else x, kernel, stride, padding, dilation,
                                     ceil_mode=ceil_mode, return_indices=True)
        if flip:
            pooled = pooled * sign  # the raw values of x at the chosen positions
        out = torch.addcmul(_channel(beta - mean * scale), pooled, _channel(scale))
        ctx.geometry = geometry
        ctx.save_for_backward(x, index, pooled, mean, invstd, gamma)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        x, index, pooled, mean, invstd, gamma = ctx.saved_tensors
        count = x.numel() // x.shape[1]
        grad = grad.contiguous(memory_format=torch.channels_last)  # the pool's backward is slow on other layouts
        scale = gamma * invstd
        grad_beta = grad.sum((0, 2, 3))  # the pooled gradient is the whole gradient of the normalised map
        grad_gamma = (grad * ((pooled - _channel(mean)) * _channel(invstd))).sum((0, 2, 3))
        # batch norm's backward: scale * (g - mean(g) - xhat * mean(g * xhat)), with mean(g) = grad_beta / count
        # and mean(g * xhat) = grad_gamma / count; the xhat term, linear in x, is c1 * x + const
        c1 = -scale * invstd * grad_gamma / count
        c0 = -scale * grad_beta / count - c1 * mean
        kernel, stride, padding, dilation, ceil_mode = ctx.geometry
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
            grad * _channel(scale), x, kernel, stride, padding, dilation, ceil_mode, index)
        grad_x.addcmul_(x, _channel(c1)).add_(_channel(c0))
        return grad_x, grad_gamma, grad_beta, None, None
