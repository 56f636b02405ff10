"""The one interface every recurrent cell implements, so the graph never needs to know which cell it runs."""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, ...]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,  # α = 1 as in TF
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def activation(name: str | None) -> nn.Module:
    """An activation module by config name; None or "identity" (also "linear") is the identity."""
    if name is None or name == "linear":
        name = "identity"
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def make_layer_norm(channels: int) -> nn.GroupNorm:
    """TF-contrib layer norm: statistics over (C, H, W) per sample, per-channel γ/β, ε = 1e-12
    (docs/models.md, 'Conventions')."""
    return nn.GroupNorm(1, channels, eps=1e-12)


class RecurrentCell(nn.Module):
    """Base class: `forward(input, state, feedback=None, residual=None) -> (output, new_state)`.

    - `input`: the pre-memory conv output `a` [B, in_channels, H, W].
    - `state`: a tuple of tensors, all zeros at t = 0 (`initial_state`).
    - `feedback`: resized, concatenated long-range feedback [B, feedback_channels, H, W], or None. Cells whose
      `handles_feedback` is False never see it: the node adds it to their input instead.
    - `residual`: the node's raw feed-forward input `x` (before the pre-memory conv), for cells with a bypass.

    Subclasses set `out_channels` (what they send up) and implement `state_shapes`.
    """

    handles_feedback = False

    def __init__(self, in_channels: int, out_channels: int, spatial_size: tuple[int, int]) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.spatial_size = tuple(spatial_size)

    def state_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shapes of the state tensors."""
        return [(self.out_channels, *self.spatial_size)]

    def initial_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return tuple(torch.zeros(batch, *shape, device=device, dtype=dtype) for shape in self.state_shapes())

    def forward(self, input: torch.Tensor, state: State, feedback: torch.Tensor | None = None,
                residual: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError
