"""Convolutional GRU (docs/models.md, 'Cells'). The release adds its "forget bias" 1.0 to the *reset* gate."""

from __future__ import annotations

import torch

from convrnn.cells.base import RecurrentCell, State
from convrnn.layers import SameConv2d


class GRUCell(RecurrentCell):
    def __init__(self, in_channels: int, out_channels: int, spatial_size: tuple[int, int], *,
                 kernel_size: int = 3, forget_bias: float = 1.0, gate_bias_init: float = 1.0,
                 kernel_init: str | dict | None = "glorot_uniform", weight_decay: float = 1e-4) -> None:
        super().__init__(in_channels, out_channels, spatial_size)
        self.forget_bias = forget_bias
        both = in_channels + out_channels
        self.gate_conv = SameConv2d(both, 2 * out_channels, kernel_size, init=kernel_init,
                                    bias_init=gate_bias_init, weight_decay=weight_decay)
        self.candidate_conv = SameConv2d(both, out_channels, kernel_size, init=kernel_init,
                                         weight_decay=weight_decay)

    def forward(self, input: torch.Tensor, state: State, feedback=None, residual=None):
        (h,) = state
        reset, update = self.gate_conv(torch.cat([input, h], dim=1)).chunk(2, dim=1)
        r = torch.sigmoid(reset + self.forget_bias)
        u = torch.sigmoid(update)
        candidate = torch.tanh(self.candidate_conv(torch.cat([input, r * h], dim=1)))
        h = u * h + (1 - u) * candidate
        return h, (h,)
