"""TF-"SAME" convs and pools, TF initialisers and kernel clipping (docs/models.md, 'Conventions').

Expected values are written out from docs/models.md, 'Conventions' (TF puts floor(p/2) before and the rest
after), never computed with the implementation's own helpers.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convrnn.layers import (
    SameConv2d,
    SameMaxPool2d,
    SeparableConv2d,
    glorot_uniform_,
    same_padding,
    variance_scaling_,
)
from convrnn.layers.init import init_tensor

# (size, kernel, stride) → (before, after), from docs/models.md, 'Conventions'
TF_SAME_PADS = [
    ((224, 7, 2), (2, 3)),  # 7×7/2 on 224: PyTorch padding=3 would be shifted by one pixel
    ((9, 2, 1), (0, 1)),
    ((9, 3, 1), (1, 1)),
    ((9, 4, 1), (1, 2)),
    ((9, 7, 1), (3, 3)),
    ((9, 8, 1), (3, 4)),
    ((7, 2, 2), (0, 1)),  # 2×2/2 pool on an odd map: one extra row after
    ((8, 2, 2), (0, 0)),
    ((56, 3, 1), (1, 1)),
    ((3, 7, 1), (3, 3)),  # kernel larger than the map: total = k − 1 at stride 1
]


@pytest.mark.parametrize(("args", "expected"), TF_SAME_PADS)
def test_same_padding_matches_tf(args, expected):
    assert same_padding(*args) == expected


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_same_conv_7x7_stride2_on_224_pads_2_before_3_after():
    conv = SameConv2d(3, 4, 7, stride=2).double()
    with torch.no_grad():
        conv.bias.copy_(_rand(4, seed=1))
    x = _rand(1, 3, 224, 224)
    y = conv(x)
    assert y.shape == (1, 4, 112, 112)
    expected = F.conv2d(F.pad(x, (2, 3, 2, 3)), conv.weight, conv.bias, stride=2)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    # and it really differs from PyTorch's symmetric padding=3
    torch_style = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=3)
    assert (y - torch_style).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("kernel", "pads"), [(2, (0, 1)), (3, (1, 1)), (4, (1, 2)), (7, (3, 3)), (8, (3, 4))]
)
def test_same_conv_even_and_odd_kernels_stride1(kernel, pads):
    conv = SameConv2d(3, 5, kernel).double()
    with torch.no_grad():
        conv.bias.copy_(_rand(5, seed=2))
    x = _rand(2, 3, 9, 11)
    before, after = pads
    expected = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, conv.bias)
    y = conv(x)
    assert y.shape == (2, 5, 9, 11)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


def test_same_conv_valid_padding_and_no_bias():
    conv = SameConv2d(3, 4, 2, padding="valid", bias=False).double()
    assert conv.bias is None
    x = _rand(1, 3, 4, 4)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight), rtol=0, atol=1e-12)
    assert conv(x).shape == (1, 4, 3, 3)


def test_same_conv_depthwise_groups():
    conv = SameConv2d(6, 6, 3, groups=6, bias=False).double()
    assert conv.weight.shape == (6, 1, 3, 3)
    x = _rand(1, 6, 5, 5)
    torch.testing.assert_close(
        conv(x), F.conv2d(F.pad(x, (1, 1, 1, 1)), conv.weight, groups=6), rtol=0, atol=1e-12
    )


def test_separable_conv_is_depthwise_then_pointwise_with_bias():
    sep = SeparableConv2d(3, 5, 4).double()
    assert sep.depthwise.weight.shape == (3, 1, 4, 4)
    assert sep.depthwise.bias is None  # depthwise without bias
    assert sep.pointwise.weight.shape == (5, 3, 1, 1)
    with torch.no_grad():
        sep.pointwise.bias.copy_(_rand(5, seed=3))
    x = _rand(2, 3, 6, 6)
    dw = F.conv2d(F.pad(x, (1, 2, 1, 2)), sep.depthwise.weight, groups=3)
    expected = F.conv2d(dw, sep.pointwise.weight, sep.pointwise.bias)
    torch.testing.assert_close(sep(x), expected, rtol=0, atol=1e-12)


def test_same_maxpool_2x2_stride2_on_odd_map():
    pool = SameMaxPool2d(2, 2)
    # all-negative values: a zero-padded pool would wrongly return 0 on the last row/column
    x = -1.0 - torch.rand(2, 3, 7, 7, generator=torch.Generator().manual_seed(0))
    y = pool(x)
    assert y.shape == (2, 3, 4, 4)
    torch.testing.assert_close(y, nn.MaxPool2d(2, 2, ceil_mode=True)(x), rtol=0, atol=0)
    # last row/column of the output is the max over the single real row/column
    torch.testing.assert_close(y[..., 3, 3], x[..., 6, 6], rtol=0, atol=0)
    torch.testing.assert_close(y[..., 3, 0], x[..., 6, 0:2].amax(-1), rtol=0, atol=0)


def test_same_maxpool_even_map_is_plain_pool():
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(SameMaxPool2d(2, 2)(x), F.max_pool2d(x, 2, 2), rtol=0, atol=0)


# ------------------------------------------------------------------------------------- initialisers
TRUNC = 0.87962566103423978  # std of N(0, 1) truncated to ±2


@pytest.mark.parametrize(
    ("shape", "depthwise", "fan_in"),
    [
        ((64, 32, 3, 3), False, 3 * 3 * 32),  # TF: kh·kw·cin
        ((48, 96, 1, 1), False, 96),
        ((256, 1, 7, 7), True, 7 * 7 * 256),  # TF depthwise [kh,kw,C,1]: kh·kw·C (PyTorch would say 49)
        ((40, 300), False, 300),  # linear [out, in]
    ],
)
@pytest.mark.parametrize("scale", [1.0, 0.6393])
def test_variance_scaling_std_and_truncation(shape, depthwise, fan_in, scale):
    torch.manual_seed(0)
    w = torch.empty(shape, dtype=torch.float64)
    variance_scaling_(w, scale, depthwise=depthwise)
    target = math.sqrt(scale / fan_in)  # post-truncation std
    n = w.numel()
    assert abs(w.std().item() / target - 1) < 6 / math.sqrt(2 * n) + 0.01
    assert abs(w.mean().item()) < 5 * target / math.sqrt(n)
    sigma = target / TRUNC  # the normal's std before truncation
    assert w.abs().max().item() <= 2 * sigma * (1 + 1e-9)  # cut at 2σ
    assert w.abs().max().item() > 1.9 * sigma  # ... and actually reaching it


def test_variance_scaling_depthwise_via_conv_modules():
    torch.manual_seed(0)
    conv = SameConv2d(512, 512, 7, groups=512, bias=False, init={"variance_scaling": 2.0})
    expected = math.sqrt(2.0 / (7 * 7 * 512))
    assert abs(conv.weight.std().item() / expected - 1) < 0.03
    sep = SeparableConv2d(512, 64, 7, init={"variance_scaling": 0.6393})
    assert abs(sep.depthwise.weight.std().item() / math.sqrt(0.6393 / (49 * 512)) - 1) < 0.03
    assert abs(sep.pointwise.weight.std().item() / math.sqrt(0.6393 / 512) - 1) < 0.03


@pytest.mark.parametrize(
    ("shape", "depthwise", "fan_in", "fan_out"),
    [
        ((64, 32, 3, 3), False, 9 * 32, 9 * 64),
        ((128, 1, 7, 7), True, 49 * 128, 49),  # TF depthwise kernel [7,7,128,1]
        ((50, 200), False, 200, 50),
    ],
)
def test_glorot_uniform_bounds(shape, depthwise, fan_in, fan_out):
    torch.manual_seed(0)
    w = torch.empty(shape, dtype=torch.float64)
    glorot_uniform_(w, depthwise=depthwise)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert w.abs().max().item() <= limit
    assert w.abs().max().item() > 0.99 * limit
    assert abs(w.std().item() / (limit / math.sqrt(3)) - 1) < 0.05


def test_init_tensor_other_specs():
    torch.manual_seed(0)
    w = torch.empty(200, 300)
    init_tensor(w, {"normal": 0.01})
    assert abs(w.std().item() - 0.01) < 5e-4
    init_tensor(w, {"constant": 1.5})
    assert torch.all(w == 1.5)
    init_tensor(w, "zeros")
    assert torch.all(w == 0)
    conv = SameConv2d(3, 4, 3, bias_init=1.0)
    assert torch.all(conv.bias == 1.0)
    with pytest.raises(ValueError, match="unknown initialiser"):
        init_tensor(w, "he_normal")


# ---------------------------------------------------------------------------------- kernel clipping
def test_kernel_clipping_shrinks_kernels_to_the_map():
    conv = SameConv2d(3, 4, 7, clip_to=(4, 4)).double()
    assert conv.weight.shape == (4, 3, 4, 4)
    assert conv.kernel_size == (4, 4)
    x = _rand(1, 3, 4, 4)
    # a clipped 4×4 kernel at stride 1 pads (1, 2) like any 4×4 kernel
    torch.testing.assert_close(
        conv(x), F.conv2d(F.pad(x, (1, 2, 1, 2)), conv.weight, conv.bias), rtol=0, atol=1e-12
    )
    assert SameConv2d(3, 4, 7, clip_to=(5, 3)).weight.shape == (4, 3, 5, 3)
    assert SameConv2d(3, 4, 3, clip_to=(7, 7)).weight.shape == (4, 3, 3, 3)  # smaller kernels unchanged
    sep = SeparableConv2d(6, 2, 7, clip_to=(4, 4))
    assert sep.depthwise.weight.shape == (6, 1, 4, 4)
    assert sep.pointwise.weight.shape == (2, 6, 1, 1)
