"""Intersection RNN (docs/models.md, 'Cells'): a carried state h and a separate output y that mixes in the input."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convrnn.cells.base import RecurrentCell, State
from convrnn.layers import SameConv2d


class IntersectionRNNCell(RecurrentCell):
    def __init__(self, in_channels: int, out_channels: int, spatial_size: tuple[int, int], *,
                 kernel_size: int = 3, forget_bias: float = 1.0,
                 kernel_init: str | dict | None = "glorot_uniform", weight_decay: float = 1e-4) -> None:
        if in_channels != out_channels:
            raise ValueError(
                f"intersection_rnn needs input depth == out_channels (got {in_channels} and {out_channels})"
            )
        super().__init__(in_channels, out_channels, spatial_size)
        self.forget_bias = forget_bias
        self.conv = SameConv2d(2 * out_channels, 4 * out_channels, kernel_size, init=kernel_init,
                               weight_decay=weight_decay)

    def forward(self, input: torch.Tensor, state: State, feedback=None, residual=None):
        (h,) = state
        gate_h, cand_h, gate_y, cand_y = self.conv(torch.cat([input, h], dim=1)).chunk(4, dim=1)
        g_h = torch.sigmoid(gate_h + self.forget_bias)
        g_y = torch.sigmoid(gate_y + self.forget_bias)
        h = g_h * h + (1 - g_h) * torch.tanh(cand_h)
        y = g_y * input + (1 - g_y) * F.relu(cand_y)
        return y, (h,)
