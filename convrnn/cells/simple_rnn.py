"""Vanilla ConvRNN ("ConvNormBasicCell", docs/models.md, 'Cells'): h_t = ELU(LN(W_x∗a + b_x + W_h∗h_{t−1} + b_h))."""

from __future__ import annotations

import torch

from convrnn.cells.base import RecurrentCell, State, activation, make_layer_norm
from convrnn.layers import SameConv2d


class SimpleRNNCell(RecurrentCell):
    def __init__(self, in_channels: int, out_channels: int, spatial_size: tuple[int, int], *,
                 kernel_size: int = 3, layer_norm: bool = False, activation_fn: str = "elu",
                 kernel_init: str | dict | None = "glorot_uniform", weight_decay: float = 1e-4) -> None:
        super().__init__(in_channels, out_channels, spatial_size)
        self.input_conv = SameConv2d(in_channels, out_channels, kernel_size, init=kernel_init,
                                     weight_decay=weight_decay)
        self.recurrent_conv = SameConv2d(out_channels, out_channels, kernel_size, init=kernel_init,
                                         weight_decay=weight_decay)
        self.norm = make_layer_norm(out_channels) if layer_norm else None
        self.act = activation(activation_fn)

    def forward(self, input: torch.Tensor, state: State, feedback=None, residual=None):
        (h,) = state
        z = self.input_conv(input) + self.recurrent_conv(h)
        if self.norm is not None:
            z = self.norm(z)
        h = self.act(z)
        return h, (h,)

