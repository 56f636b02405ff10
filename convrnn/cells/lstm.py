"""Convolutional LSTM (docs/models.md, 'Cells'): one conv on [a, h_{t−1}] → (i, j, f, o), optional spatial
peepholes and LN.

Choices where the release is silent: peepholes start at zero; with layer norm on, each of i, j, f, o is normalised
before the forget bias and peephole terms are added, and the normalised c_t is what is carried (as TF's
LayerNormBasicLSTMCell does).
"""

from __future__ import annotations

import torch
from torch import nn

from convrnn.cells.base import RecurrentCell, State, make_layer_norm
from convrnn.layers import SameConv2d


class LSTMCell(RecurrentCell):
    def __init__(self, in_channels: int, out_channels: int, spatial_size: tuple[int, int], *,
                 kernel_size: int = 3, forget_bias: float = 1.0, bias_init: float = 0.0,
                 peepholes: bool = False, layer_norm: bool = False,
                 kernel_init: str | dict | None = "glorot_uniform", weight_decay: float = 1e-4) -> None:
        super().__init__(in_channels, out_channels, spatial_size)
        self.forget_bias = forget_bias
        self.conv = SameConv2d(in_channels + out_channels, 4 * out_channels, kernel_size, init=kernel_init,
                               bias_init=bias_init, weight_decay=weight_decay)
        shape = (out_channels, *self.spatial_size)
        if peepholes:
            self.peep_i = nn.Parameter(torch.zeros(shape))
            self.peep_f = nn.Parameter(torch.zeros(shape))
            self.peep_o = nn.Parameter(torch.zeros(shape))
        self.peepholes = peepholes
        self.norms = nn.ModuleList(make_layer_norm(out_channels) for _ in range(5)) if layer_norm else None

    def state_shapes(self) -> list[tuple[int, ...]]:
        shape = (self.out_channels, *self.spatial_size)
        return [shape, shape]  # (c, h)

    def forward(self, input: torch.Tensor, state: State, feedback=None, residual=None):
        c, h = state
        i, j, f, o = self.conv(torch.cat([input, h], dim=1)).chunk(4, dim=1)
        if self.norms is not None:
            i, j, f, o = (norm(z) for norm, z in zip(self.norms[:4], (i, j, f, o), strict=True))
        f = f + self.forget_bias
        if self.peepholes:
            i, f, o = i + self.peep_i * c, f + self.peep_f * c, o + self.peep_o * c
        c_new = c * torch.sigmoid(f) + torch.sigmoid(i) * torch.tanh(j)
        if self.norms is not None:
            c_new = self.norms[4](c_new)
        h = torch.tanh(c_new) * torch.sigmoid(o)
        return h, (c_new, h)
