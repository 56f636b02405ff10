"""Update-gate RNN (docs/models.md, 'Cells'): [ĝ, ĉ] = W∗[a, h] + b; g = σ(ĝ + 1); h_t = g⊙h + (1−g)⊙tanh(ĉ)."""

from __future__ import annotations

import torch

from convrnn.cells.base import RecurrentCell, State
from convrnn.layers import SameConv2d


class UGRNNCell(RecurrentCell):
    def __init__(self, in_channels: int, out_channels: int, spatial_size: tuple[int, int], *,
                 kernel_size: int = 3, forget_bias: float = 1.0,
                 kernel_init: str | dict | None = "glorot_uniform", weight_decay: float = 1e-4) -> None:
        super().__init__(in_channels, out_channels, spatial_size)
        self.forget_bias = forget_bias
        self.conv = SameConv2d(in_channels + out_channels, 2 * out_channels, kernel_size, init=kernel_init,
                               weight_decay=weight_decay)

    def forward(self, input: torch.Tensor, state: State, feedback=None, residual=None):
        (h,) = state
        gate, candidate = self.conv(torch.cat([input, h], dim=1)).chunk(2, dim=1)
        g = torch.sigmoid(gate + self.forget_bias)
        h = g * h + (1 - g) * torch.tanh(candidate)
        return h, (h,)
