"""The ConvRNN module and its unroller (docs/models.md, 'Unrolling').

Biological unrolling: every edge takes one step; at step t each node reads its predecessors' outputs from t−1
(conv1 reads frame t) and its own state. Two exact savings make it cheaper than the naive loop:

1. *Batch-1 image-free activity.* A node whose inputs and state do not depend on the image (before the image
   reaches it, or a stateless node after the blank has) computes on a batch of one, broadcast when needed.
2. *Pruned steps.* Node n at step t can only influence node m at steps ≥ t + dist(n, m), so once
   t > T−1 − dist(n, m) for every requested output m, n stops running.

`optimize=False` runs the naive loop (every node, every step, full batch), the reference the tests compare to.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from convrnn.decoders import decode as decode_logits
from convrnn.graph.node import Node
from convrnn.graph.schema import GraphSpec
from convrnn.presentation import movie_schedule, static_schedule

INF = 10**9


@dataclass
class ModelOutput:
    """logits: [T, B, num_classes], one entry per step; features[name]: [T, B, C, H, W]."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)


class ConvRNN(nn.Module):
    """A biologically unrolled ConvRNN built from a resolved graph config (see `convrnn.graph.spec`)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config  # plain types: what a checkpoint stores
        spec = GraphSpec.from_config(config)
        self.name = spec.name or "convrnn"
        self.input_size = int(spec.input_size)
        self.in_channels = int(spec.in_channels)
        self.num_classes = int(spec.num_classes)
        self.times = int(spec.times)
        self.image_off = spec.image_off
        self.blank = float(spec.blank)
        self.decoder = spec.decoder
        self.decoder_window_start = int(spec.decoder_window_start)
        self.unroll = spec.unroll

        node_cfgs = spec.nodes
        self.layer_names = list(node_cfgs)
        self.ff_input = {name: cfg.input for name, cfg in node_cfgs.items()}
        self.feedback_sources: dict[str, list[str]] = {name: [] for name in node_cfgs}
        for edge in spec.feedback:
            self.feedback_sources[edge.target].append(edge.source)
        for sources in self.feedback_sources.values():
            sources.sort()  # TF orders a harbor's inputs by name (matters only for weight import)

        # build in an order where every feedback source exists before its target needs its depth
        shapes: dict[str, tuple[int, tuple[int, int]]] = {"image": (self.in_channels, (self.input_size,) * 2)}
        self.nodes = nn.ModuleDict()
        pending = list(node_cfgs)
        built: dict[str, Node] = {}
        for name in pending:  # feed-forward pass for shapes, feedback depth from a dry build
            channels, size = shapes[self.ff_input[name]]
            built[name] = Node(name, node_cfgs[name], channels, size, 0)
            shapes[name] = (built[name].out_channels, built[name].out_size)
        for name in pending:
            fb_channels = sum(shapes[s][0] for s in self.feedback_sources[name])
            channels, size = shapes[self.ff_input[name]]
            self.nodes[name] = built[name] if not fb_channels else Node(name, node_cfgs[name], channels, size,
                                                                        fb_channels)
        self.output_name = self.layer_names[-1]
        self._out_shapes = {name: (node.out_channels, node.out_size) for name, node in self.nodes.items()}
        self._distances = self._all_distances()
        self.arrival = {name: min((self._distances[src][name] for src in self.layer_names
                                   if self.ff_input[src] == "image"), default=INF) for name in self.layer_names}
        # tmaxconf β (docs/models.md, 'Decoders': inert, 1 if unknown)
        self.register_buffer("decoder_beta", torch.tensor(1.0))


    # ----------------------------------------------------------------------------------------- graph facts
    def _all_distances(self) -> dict[str, dict[str, int]]:
        successors: dict[str, list[str]] = {name: [] for name in self.layer_names}
        for name, src in self.ff_input.items():
            if src != "image":
                successors[src].append(name)
        for target, sources in self.feedback_sources.items():
            for src in sources:
                successors[src].append(target)
        distances = {}
        for start in self.layer_names:
            dist = {name: INF for name in self.layer_names}
            dist[start] = 0
            queue = deque([start])
            while queue:
                u = queue.popleft()
                for v in successors[u]:
                    if dist[v] == INF:
                        dist[v] = dist[u] + 1
                        queue.append(v)
            distances[start] = dist
        return distances

    def first_image_step(self, name: str) -> int:
        """The first step at which `name`'s output depends on the image (conv_l: l−1; docs/models.md, 'Unrolling')."""
        return self.arrival[name]

    def last_needed_steps(self, times: int, targets: list[str]) -> dict[str, int]:
        """For each node, the last step that can influence a target's output at step times−1."""
        return {n: max((times - 1 - self._distances[n][m] for m in targets if self._distances[n][m] < INF),
                       default=-1) for n in self.layer_names}

    # ---------------------------------------------------------------------------------------------- forward
    def forward(self, images: torch.Tensor, times: int | None = None, image_off: int | None = None,
                blank: float | None = None, return_features: list[str] | tuple[str, ...] | None = None,
                unroll: str | None = None, optimize: bool = True) -> ModelOutput:
        """Unroll on `images` [B, 3, H, W] (presented with the schedule) or a movie [B, T, 3, H, W].

        `image_off=None` uses the model's default schedule; pass `image_off >= times` to hold the image.
        """
        unroll = unroll or self.unroll
        frames, batch, times = self._frames(images, times, image_off, blank)
        features = list(dict.fromkeys(return_features or []))  # a layer asked for twice is recorded once
        unknown = [f for f in features if f not in self.nodes]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown} in return_features; layers: {self.layer_names}")
        if times <= self.arrival[self.output_name] and unroll == "biological":
            raise ValueError(
                f"times={times} is too short: the readout {self.output_name!r} first sees the image at step "
                f"{self.arrival[self.output_name]}, so times must be at least {self.arrival[self.output_name] + 1}")
        if unroll == "engineering":
            return self._unroll_engineering(frames, batch, times, features)
        if unroll != "biological":
            raise ValueError(f"unroll must be 'biological' or 'engineering', got {unroll!r}")
        return self._unroll_biological(frames, batch, times, features, optimize)

    def _frames(self, images: torch.Tensor, times: int | None, image_off: int | None, blank: float | None):
        if images.dim() == 5:
            if times is not None and times != images.shape[1]:
                raise ValueError(f"times={times} but the movie has {images.shape[1]} frames")
            times = images.shape[1]
            frame_shape = images.shape[2:]
            frames = movie_schedule(images)
        elif images.dim() == 4:
            frame_shape = images.shape[1:]
            times = self.times if times is None else int(times)
            off = self.image_off if image_off is None else int(image_off)
            frames = static_schedule(images, off, self.blank if blank is None else blank)
        else:
            raise ValueError(f"images must be [B, {self.in_channels}, H, W] or a movie [B, T, "
                             f"{self.in_channels}, H, W]; got shape {tuple(images.shape)}")
        if frame_shape[0] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {frame_shape[0]} "
                             f"(images shape {tuple(images.shape)})")
        if tuple(frame_shape[1:]) != (self.input_size, self.input_size):
            raise ValueError(f"{self.name} was built for {self.input_size}×{self.input_size} inputs, got "
                             f"{frame_shape[1]}×{frame_shape[2]}; build it with input_size={frame_shape[1]}")
        if times < 1:
            raise ValueError(f"times must be ≥ 1, got {times}")
        return frames, images.shape[0], times

    def _zeros(self, name: str, batch: int, like: torch.Tensor) -> torch.Tensor:
        channels, size = self._out_shapes[name]
        shape = (batch, channels) if name == self.output_name and self.nodes[name].fc is not None else (
            batch, channels, *size)
        zeros = like.new_zeros(shape)
        if zeros.dim() == 4 and like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
            zeros = zeros.contiguous(memory_format=torch.channels_last)  # keep one layout: CPU convs need it
        return zeros

    def _initial_states(self, batch: int, like: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
        """Zero states in the input's layout (mixing NCHW and channels_last makes every op copy)."""
        channels_last = like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last)
        states = {}
        for name, node in self.nodes.items():
            state = node.initial_state(batch, like.device, like.dtype)
            if channels_last:
                state = tuple(s.contiguous(memory_format=torch.channels_last) if s.dim() == 4 else s for s in state)
            states[name] = state
        return states

    def _unroll_biological(self, frames, batch: int, times: int, features: list[str], optimize: bool):
        first = frames(0)
        base_batch = 1 if optimize else batch
        targets = [self.output_name, *features]
        last_needed = self.last_needed_steps(times, targets) if optimize else {n: times - 1 for n in self.nodes}
        states = self._initial_states(base_batch, first)
        previous: dict[str, torch.Tensor] = {}
        logits, recorded = [], {f: [] for f in features}
        for t in range(times):
            current: dict[str, torch.Tensor] = {}
            for name, node in self.nodes.items():
                if t > last_needed[name]:
                    continue
                source = self.ff_input[name]
                if source == "image":
                    x = frames(t)
                else:
                    x = previous.get(source) if t else None
                    x = self._zeros(source, base_batch, first) if x is None else x
                fb = [previous[s] if (t and s in previous) else self._zeros(s, base_batch, first)
                      for s in self.feedback_sources[name]]
                state = states[name]
                width = max([x.shape[0], *(f.shape[0] for f in fb), *(s.shape[0] for s in state)])
                if not optimize:
                    width = batch
                if x.shape[0] != width:
                    x = x.expand(width, *x.shape[1:])
                state = tuple(s.expand(width, *s.shape[1:]) if s.shape[0] != width else s for s in state)
                y, states[name] = node(x, fb, state)
                current[name] = y
            previous = current
            logits.append(previous[self.output_name].flatten(1))
            for f in features:
                recorded[f].append(previous[f])
        return ModelOutput(
            logits=torch.stack([z.expand(batch, -1) for z in logits]),
            features={f: torch.stack([v.expand(batch, *v.shape[1:]) for v in vs]) for f, vs in recorded.items()},
        )

    def _unroll_engineering(self, frames, batch: int, times: int, features: list[str]):
        first = frames(0)
        states = self._initial_states(batch, first)
        previous: dict[str, torch.Tensor] = {}
        logits, recorded = [], {f: [] for f in features}
        for t in range(times):
            current: dict[str, torch.Tensor] = {}
            for name, node in self.nodes.items():
                source = self.ff_input[name]
                x = frames(t) if source == "image" else current[source]
                x = x.expand(batch, *x.shape[1:]) if x.shape[0] != batch else x
                fb = [previous[s] if t else self._zeros(s, batch, first) for s in self.feedback_sources[name]]
                current[name], states[name] = node(x, fb, states[name])
            previous = current
            logits.append(current[self.output_name].flatten(1))
            for f in features:
                recorded[f].append(current[f])
        return ModelOutput(logits=torch.stack(logits), features={f: torch.stack(v) for f, v in recorded.items()})

    # ------------------------------------------------------------------------------------------- utilities
    def decode(self, logits: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        """Apply a decoder (default: the model's own) to logits [T, B, K] → [B, K]."""
        kind = kind or self.decoder
        start = min(self.decoder_window_start, logits.shape[0] - 1)
        return decode_logits(logits, kind, window_start=start, beta=float(self.decoder_beta))

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Parameters grouped by the L2 weight decay the release assigns them (0 for the rest)."""
        groups: dict[float, list[nn.Parameter]] = {}
        for module in self.modules():
            decay_of = getattr(module, "weight_decay_of", None)
            for pname, param in module.named_parameters(recurse=False):
                decay = decay_of(pname) if decay_of is not None else 0.0
                groups.setdefault(decay, []).append(param)
        return [{"params": params, "weight_decay": decay} for decay, params in sorted(groups.items())]

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, input_size={self.input_size}, times={self.times}, "
                f"image_off={self.image_off}, decoder={self.decoder!r}, unroll={self.unroll!r}")
