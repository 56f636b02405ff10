"""One node of the graph: harbor → pre-memory conv → cell (or identity) → post-memory (docs/models.md, 'The node')."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from convrnn.cells import CELLS, build_cell
from convrnn.cells.base import State, activation
from convrnn.graph.schema import ConvSpec, FCSpec, NodeSpec
from convrnn.graph.spec import InputTooSmallError
from convrnn.layers import SameConv2d, SameMaxPool2d, init_tensor
from convrnn.layers.conv import WeightDecayMixin


def conv_output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "valid":
        return (size - kernel) // stride + 1
    return math.ceil(size / stride)


def _conv_from_spec(in_channels: int, spec: ConvSpec) -> tuple[SameConv2d, nn.Module]:
    conv = SameConv2d(
        in_channels, int(spec.channels), int(spec.kernel), stride=int(spec.stride), padding=spec.padding,
        bias=spec.bias, init=spec.init, bias_init=float(spec.bias_init), weight_decay=float(spec.weight_decay),
    )
    return conv, activation(spec.activation)


class Linear(WeightDecayMixin, nn.Linear):
    """nn.Linear with TF initialisers and the release's per-tensor weight decay."""

    def __init__(self, in_features: int, out_features: int, spec: FCSpec) -> None:
        super().__init__(in_features, out_features)
        init_tensor(self.weight, spec.init)
        nn.init.constant_(self.bias, float(spec.bias_init))
        self.set_weight_decay(weight=float(spec.weight_decay), bias=float(spec.weight_decay))


class Node(nn.Module):
    """A layer of the ConvRNN. `forward(x, feedback, state) -> (output, new_state)`.

    `x` is the feed-forward input (predecessor's output at t−1, or the frame), `feedback` the list of
    feedback sources' outputs at t−1. Feedback is resized (bilinear, align_corners) to x's size and
    concatenated; cells that take feedback themselves get it, otherwise a 1×1 conv adds it to the cell input.
    """

    def __init__(self, name: str, cfg: NodeSpec | Mapping[str, Any], in_channels: int, in_size: tuple[int, int],
                 feedback_channels: int = 0) -> None:
        super().__init__()
        spec = cfg if isinstance(cfg, NodeSpec) else NodeSpec.from_config(cfg)
        self.name = name
        self.in_channels = in_channels
        self.in_size = tuple(in_size)
        size = self.in_size
        channels = in_channels
        where = f"node {name!r}"

        self.pre = self.pre_activation = None
        if spec.pre is not None:
            self.pre, self.pre_activation = _conv_from_spec(channels, spec.pre)
            size = tuple(conv_output_size(s, k, self.pre.stride, self.pre.padding)
                         for s, k in zip(size, self.pre.kernel_size, strict=True))
            channels = int(spec.pre.channels)
        self._check_size(size, where)
        self.cell_size = size

        self.cell = None
        self.feedback_projection = None
        if spec.cell is not None:
            options = dict(spec.cell)
            kind = options.pop("type")
            out_channels = int(options.pop("out_channels", channels))
            self.cell = build_cell(kind, channels, out_channels, size, residual_channels=in_channels,
                                   feedback_channels=feedback_channels if _takes_feedback(kind) else 0,
                                   **options)
            channels = self.cell.out_channels
        if feedback_channels and (self.cell is None or not self.cell.handles_feedback):
            target = self.pre.weight.shape[0] if self.pre is not None else in_channels
            self.feedback_projection = SameConv2d(feedback_channels, target, 1)

        post = spec.post
        self.post_conv = self.post_conv_activation = None
        if post.conv is not None:
            self.post_conv, _ = _conv_from_spec(channels, post.conv)
            if post.conv.activation not in (None, "identity", "linear"):
                raise ValueError(f"{where}: post.conv is linear; use post.activation (after the residual)")
            channels = int(post.conv.channels)
        self.skip = None
        self.residual = bool(post.residual)
        if self.residual:
            # S(x): identity when shapes match, else 1×1, no bias, GU init, no weight decay (docs/models.md, 'The node')
            self.skip = nn.Identity() if in_channels == channels else SameConv2d(in_channels, channels, 1,
                                                                                 bias=False)
        self.post_activation = activation(post.activation)
        self.pool = SameMaxPool2d(int(post.pool), int(post.pool)) if post.pool else None
        if self.pool is not None:
            size = tuple(math.ceil(s / self.pool.stride) for s in size)
        self.global_pool = bool(post.global_pool)
        if self.global_pool:
            size = (1, 1)
        self.fc = None
        if post.fc is not None:
            if not self.global_pool:
                raise ValueError(f"{where}: post.fc needs post.global_pool: true")
            self.fc = Linear(channels, int(post.fc.channels), post.fc)
            channels = int(post.fc.channels)
        self.out_channels = channels
        self.out_size = tuple(size)

    @staticmethod
    def _check_size(size: tuple[int, ...], where: str) -> None:
        if min(size) < 1:
            raise InputTooSmallError(f"input too small: {where} would produce a {size[0]}×{size[1]} map; "
                             "use a larger input_size")

    def initial_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return self.cell.initial_state(batch, device, dtype) if self.cell is not None else ()

    def harbor(self, x: torch.Tensor, feedback: list[torch.Tensor]) -> torch.Tensor | None:
        if not feedback:
            return None
        size = x.shape[-2:]
        parts = []
        for f in feedback:
            if f.shape[-2:] != size:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=True)
            parts.append(f.expand(x.shape[0], -1, -1, -1) if f.shape[0] != x.shape[0] else f)
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(self, x: torch.Tensor, feedback: list[torch.Tensor], state: State) -> tuple[torch.Tensor, State]:
        fb = self.harbor(x, feedback)
        a = x
        if self.pre is not None:
            a = self.pre_activation(self.pre(x))
        if fb is not None and self.feedback_projection is not None:
            a = a + self.feedback_projection(fb)
        if self.cell is not None:
            y, state = self.cell(a, state, feedback=fb if self.cell.handles_feedback else None, residual=x)
        else:
            y = a
        if self.post_conv is not None:
            y = self.post_conv(y)
        if self.skip is not None:
            y = y + self.skip(x)
        y = self.post_activation(y)
        if self.pool is not None:
            y = self.pool(y)
        if self.global_pool:
            y = y.mean(dim=(-2, -1), keepdim=self.fc is None)
        if self.fc is not None:
            y = self.fc(y)
        return y, state


def _takes_feedback(kind: str) -> bool:
    return kind in CELLS and CELLS[kind].handles_feedback  # an unknown kind is reported by build_cell
