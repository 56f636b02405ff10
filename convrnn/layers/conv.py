"""Convolutions and pools with TensorFlow "SAME"/"VALID" padding (docs/models.md, 'Conventions').

TF pads floor(p/2) before and the rest after, which differs from PyTorch's symmetric padding for even kernels
and for stride 2 on even maps (7×7/2 on 224: 2 before, 3 after). Getting this right is what makes exactness
tests and weight import possible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from convrnn.layers.init import init_tensor


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding TF "SAME" uses along one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class WeightDecayMixin:
    """Remembers which of a module's own parameters the release decays, and by how much
    (docs/models.md, 'Conventions')."""

    def set_weight_decay(self, **decays: float) -> None:
        self._weight_decay = {name: float(value) for name, value in decays.items() if value}

    def weight_decay_of(self, name: str) -> float:
        return getattr(self, "_weight_decay", {}).get(name, 0.0)


class SameConv2d(WeightDecayMixin, nn.Module):
    """2-D convolution with TF padding, TF initialisers and per-tensor weight decay.

    `clip_to`, when given, clips the kernel to that feature-map size: the RGC code does this, and it only
    matters for 128-px inputs where late maps are 4×4 (docs/models.md, 'Conventions').
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: str = "same",
        bias: bool = True,
        groups: int = 1,
        init: str | float | dict | None = None,
        bias_init: float = 0.0,
        weight_decay: float = 0.0,
        bias_decay: float | None = None,
        clip_to: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        kh, kw = _pair(kernel_size)
        if clip_to is not None:
            kh, kw = min(kh, clip_to[0]), min(kw, clip_to[1])
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        self.kernel_size = (kh, kw)
        self.stride = stride
        self.padding = padding
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init))) if bias else None
        depthwise = groups > 1 and groups == in_channels
        init_tensor(self.weight, init, depthwise=depthwise)
        self.set_weight_decay(weight=weight_decay, bias=weight_decay if bias_decay is None else bias_decay)
        self._pad_cache: dict[tuple[int, int], tuple[tuple[int, int, int, int], tuple[int, int] | None]] = {}

    def _padding_for(self, height: int, width: int):
        key = (height, width)
        if key not in self._pad_cache:
            if self.padding == "valid":
                self._pad_cache[key] = ((0, 0, 0, 0), (0, 0))
            else:
                top, bottom = same_padding(height, self.kernel_size[0], self.stride)
                left, right = same_padding(width, self.kernel_size[1], self.stride)
                symmetric = (top, left) if (top == bottom and left == right) else None
                self._pad_cache[key] = ((left, right, top, bottom), symmetric)
        return self._pad_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad, symmetric = self._padding_for(x.shape[-2], x.shape[-1])
        if symmetric is None:
            x = F.pad(x, pad)
            symmetric = (0, 0)
        return F.conv2d(x, self.weight, self.bias, self.stride, symmetric, 1, self.groups)

    def extra_repr(self) -> str:
        o, i = self.weight.shape[0], self.weight.shape[1] * self.groups
        return (f"{i}, {o}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"groups={self.groups}, bias={self.bias is not None}")


class SeparableConv2d(nn.Module):
    """Depthwise k×k (multiplier 1, no bias) then pointwise 1×1 with bias, nothing in between
    (docs/models.md, 'Cells')."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        init: str | float | dict | None = None,
        weight_decay: float = 0.0,
        bias_decay: float | None = None,
        clip_to: tuple[int, int] | None = None,
        repeat_activation: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.depthwise = SameConv2d(in_channels, in_channels, kernel_size, groups=in_channels, bias=False,
                                    init=init, weight_decay=weight_decay, clip_to=clip_to)
        # `ds_repeat`: an extra depthwise conv + activation before the separable conv (off in every release)
        self.repeat = None
        if repeat_activation is not None:
            self.repeat = nn.Sequential(
                SameConv2d(in_channels, in_channels, kernel_size, groups=in_channels, bias=False, init=init,
                           weight_decay=weight_decay, clip_to=clip_to),
                repeat_activation,
            )
        self.pointwise = SameConv2d(in_channels, out_channels, 1, bias=bias, init=init,
                                    weight_decay=weight_decay, bias_decay=bias_decay)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat is not None:
            x = self.repeat(x)
        return self.pointwise(self.depthwise(x))


class SameMaxPool2d(nn.Module):
    """Max-pool with TF "SAME" padding: padded positions never win (≡ ceil_mode for 2×2/2)."""

    def __init__(self, kernel_size: int = 2, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size, self.stride)
        left, right = same_padding(x.shape[-1], self.kernel_size, self.stride)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding=same"
