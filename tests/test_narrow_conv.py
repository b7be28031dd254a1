"""A convolution with few input channels, its input gradient as a column convolution plus shifted sums."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from core.learning import narrow_conv


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("cin,cout,kernel", [(3, 29, (5, 5)), (1, 4, (3, 3)), (2, 7, (5, 3)), (3, 6, (3, 5)),
                                             (5, 8, (3, 3))])
def test_values_and_gradients_equal_the_native_convolution_in_float64(cin, cout, kernel):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, kernel).double()
    x = _channels_last(torch.randn(4, cin, 11, 13, dtype=torch.float64)).requires_grad_()
    out = narrow_conv.conv2d(x, conv)
    grad = torch.randn_like(out)
    out.backward(grad)
    ours = [x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()]
    x.grad = None
    conv.zero_grad()
    native = conv(x)
    native.backward(grad)
    torch.testing.assert_close(out, native, rtol=0, atol=1e-12)
    for a, b in zip(ours, [x.grad, conv.weight.grad, conv.bias.grad]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)
    assert ours[0].is_contiguous(memory_format=torch.channels_last)


def test_gradcheck_and_a_convolution_without_bias():
    torch.manual_seed(1)
    x = _channels_last(torch.randn(2, 3, 8, 9, dtype=torch.float64)).requires_grad_()
    w = torch.randn(5, 3, 3, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(narrow_conv._NarrowConv.apply, (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: narrow_conv._NarrowConv.apply(x, w, None), (x, w))


def test_the_input_gradient_alone_matches_torchs():
    torch.manual_seed(2)
    grad = torch.randn(3, 29, 44, 44, dtype=torch.float64)
    weight = torch.randn(29, 3, 5, 5, dtype=torch.float64)
    expected = torch.nn.grad.conv2d_input((3, 3, 48, 48), weight, grad)
    torch.testing.assert_close(narrow_conv.input_gradient(grad, weight), expected, rtol=0, atol=1e-10)


def test_it_applies_only_to_fp32_channels_last_cpu_inputs_that_need_their_gradient():
    conv = nn.Conv2d(3, 29, 5)
    x = _channels_last(torch.randn(2, 3, 12, 12)).requires_grad_()
    assert narrow_conv.applies(conv, x)
    assert not narrow_conv.applies(conv, x.detach())  # no input gradient: nothing to gain
    assert not narrow_conv.applies(conv, x.contiguous())  # default layout
    assert not narrow_conv.applies(nn.Conv2d(29, 59, 3), _channels_last(torch.randn(2, 29, 9, 9)).requires_grad_())
    assert not narrow_conv.applies(nn.Conv2d(3, 8, 1), x)  # a 1-wide kernel has nothing to regroup
    assert not narrow_conv.applies(nn.Conv2d(3, 8, 5, padding=2), x)
    assert not narrow_conv.applies(nn.Conv2d(3, 8, 5, stride=2), x)
    assert not narrow_conv.applies(nn.Conv2d(3, 8, 7), x)  # 3 x 7 = 21 channels: past one channel block
    assert not narrow_conv.applies(conv.double(), x.double())
    with torch.no_grad():
        assert not narrow_conv.applies(nn.Conv2d(3, 29, 5), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not narrow_conv.applies(nn.Conv2d(3, 29, 5), x)


def _graph_names(t: torch.Tensor) -> set[str]:
    names, stack, seen = set(), [t.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(n for n, _ in node.next_functions)
    return names


def test_bn_stn_trains_its_first_5x5_convolution_this_way_and_evaluates_natively():
    from core.learning.models import build_model
    torch.manual_seed(3)
    model = build_model("bn_stn", 10).to(memory_format=torch.channels_last).train()
    x = _channels_last(torch.randn(4, 3, 48, 48))
    assert "_NarrowConvBackward" in _graph_names(model(x))
    model.eval()
    assert "_NarrowConvBackward" not in _graph_names(model(x))
    plain = build_model("published", 10).to(memory_format=torch.channels_last).train()
    assert "_NarrowConvBackward" not in _graph_names(plain(x))  # its first layers see the input only
