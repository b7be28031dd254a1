"""Batch norm and max-pool as one training step (core.learning.bn_pool): the same values, gradients and running
statistics as the two native layers, and used by bn_stn's training only where it applies."""
import pytest
import torch
from torch import nn

from core.learning import bn_pool, models


def _layers(channels: int, pool: nn.MaxPool2d, *, momentum=0.1, seed: int = 0):
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(channels, momentum=momentum).double().train()
    with torch.no_grad():
        bn.weight.uniform_(-1.5, 2.0)  # some channels with a negative scale: their max is read off -x
        bn.weight[0] = -0.7
        bn.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(-1, 1)
    return bn, pool


def _run(fn, bn, x, weights):
    xi = x.clone().requires_grad_(True)
    for p in bn.parameters():
        p.grad = None
    out = fn(xi)
    (out * weights).sum().backward()
    return out.detach(), xi.grad, bn.weight.grad.clone(), bn.bias.grad.clone()


@pytest.mark.parametrize("pool", [nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.MaxPool2d(2),
                                  nn.MaxPool2d(3, stride=2, padding=1)], ids=["3-2-ceil", "2", "3-2-pad"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_it_equals_batch_norm_then_max_pool_in_values_gradients_and_running_statistics(pool, momentum):
    bn, pool = _layers(5, pool, momentum=momentum)
    twin = nn.BatchNorm2d(5, momentum=momentum).double().train()
    twin.load_state_dict(bn.state_dict())
    x = (torch.randn(6, 5, 13, 13, dtype=torch.float64) * 3 + 2).contiguous(memory_format=torch.channels_last)
    weights = torch.randn_like(pool(x))
    for step in range(2):  # twice: the running statistics move on from where the first step left them
        want = _run(lambda v: pool(twin(v)), twin, x + step, weights)
        got = _run(lambda v: bn_pool.batch_norm_max_pool(v, bn, pool), bn, x + step, weights)
        for a, b in zip(got, want):
            assert torch.allclose(a, b, atol=1e-10, rtol=1e-9)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.allclose(getattr(bn, name).double(), getattr(twin, name).double(), atol=1e-12), name


def test_its_gradient_passes_gradcheck():
    bn, pool = _layers(3, nn.MaxPool2d(3, stride=2, ceil_mode=True), seed=1)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(
        lambda v, g, b: bn_pool._BatchNormMaxPool.apply(v, g, b, bn.eps, ((3, 3), (2, 2), (0, 0), (1, 1), True))[0],
        (x.requires_grad_(True), bn.weight.detach().clone().requires_grad_(True),
         bn.bias.detach().clone().requires_grad_(True)))


def test_it_applies_to_a_training_channels_last_fp32_map_on_cpu_only():
    bn, pool = nn.BatchNorm2d(4).train(), nn.MaxPool2d(2)
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    assert bn_pool.applies(bn, pool, x)
    assert not bn_pool.applies(bn, pool, x.contiguous()), "the default layout keeps the native layers"
    assert not bn_pool.applies(bn, pool, x.to(torch.bfloat16)), "bf16 keeps the native layers"
    assert not bn_pool.applies(bn, nn.ReLU(), x)
    assert not bn_pool.applies(bn.eval(), pool, x), "evaluation runs the layers as they are"
    assert not bn_pool.applies(nn.BatchNorm2d(4, affine=False).train(), pool, x)


def test_bn_stn_trains_with_the_fused_step_and_gets_the_native_features_and_gradients():
    torch.manual_seed(0)
    model = models.build_model("bn_stn", 5).train().to(memory_format=torch.channels_last)
    twin = models.build_model("bn_stn", 5).train().to(memory_format=torch.channels_last)
    twin.load_state_dict(model.state_dict())
    x = torch.randn(8, 3, 48, 48).contiguous(memory_format=torch.channels_last)
    target = torch.randn(8, models.FEATURES)
    calls = []
    for layer in model.features:
        if isinstance(layer, nn.MaxPool2d):
            layer.register_forward_hook(lambda *a: calls.append(1))
    got = model._features(x)
    assert not calls, "training ran batch norm and max-pool as one step"
    want = twin.features(x)  # the layers one after another
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    ((got - target) ** 2).sum().backward()
    ((want - target) ** 2).sum().backward()
    # Float rounding scales with the gradients (up to ~1e3 here): the conv biases in front of a batch norm have a
    # true gradient of 0 and get rounding noise of ~1e-3 on either path, so the tolerance is relative to the largest.
    scale = max(float(p.grad.abs().max()) for p in twin.parameters() if p.grad is not None)
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        if a.grad is not None or b.grad is not None:
            assert torch.allclose(a.grad, b.grad, atol=1e-5 * scale, rtol=1e-3), name
    for a, b in zip(model.buffers(), twin.buffers()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)
    model.eval()(x)
    assert len(calls) == 3, "evaluation runs the layers as they are"
