"""Time-decay memory (docs/models.md, 'Cells'): h_t = m·h_{t−1} + a_t with one trainable scalar m per layer,
initialised to 0.

m is unconstrained, as in the release (the paper may use m = e^{−1/τ}; not verified), so the layer is purely
feed-forward at initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from convrnn.cells.base import RecurrentCell, State


class TimeDecayCell(RecurrentCell):
    def __init__(self, in_channels: int, out_channels: int, spatial_size: tuple[int, int], *,
                 decay_init: float = 0.0) -> None:
        if out_channels != in_channels:
            raise ValueError(f"time_decay keeps the input depth: out_channels {out_channels} != {in_channels}")
        super().__init__(in_channels, out_channels, spatial_size)
        self.decay = nn.Parameter(torch.tensor(float(decay_init)))

    def forward(self, input: torch.Tensor, state: State, feedback=None, residual=None):
        (h,) = state
        h = self.decay * h + input
        return h, (h,)
