"""Optimiser and learning-rate schedule for ConvRNN training.

Why a module of its own: the release's weight decay is per tensor (docs/models.md, 'Conventions'), so the
optimiser must be built from ``model.parameter_groups()`` rather than from ``model.parameters()`` with one global
decay, and the schedule is a pure function of the optimiser step (so it resumes exactly and works for any run length).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import nn

OptimizerName = Literal["sgd", "adamw"]
ScheduleName = Literal["cosine", "step", "constant"]


def decay_groups(model: nn.Module, weight_decay_scale: float = 1.0) -> list[dict[str, Any]]:
    """Parameter groups with the release's per-tensor L2 decay, each multiplied by ``weight_decay_scale``.

    Tensors the release does not decay (LayerNorm γ/β, cell biases, skip projections, ...) stay at 0 whatever
    the scale. Models without ``parameter_groups()`` get one group without decay. Parameters that do not
    require gradients are left out, so frozen parts are never touched by the optimiser.
    """
    if weight_decay_scale < 0:
        raise ValueError(f"weight_decay_scale must be >= 0, got {weight_decay_scale}")
    groups = model.parameter_groups() if hasattr(model, "parameter_groups") else [
        {"params": list(model.parameters()), "weight_decay": 0.0}]
    out = []
    seen: set[int] = set()
    for group in groups:
        params = [p for p in group["params"] if p.requires_grad]
        for p in params:
            if id(p) in seen:
                raise ValueError("a parameter appears in two weight-decay groups")
            seen.add(id(p))
        if params:
            decay = float(group["weight_decay"]) * weight_decay_scale
            # the name shows in the LR monitor (lr/wd0.0001) and in error messages
            out.append({"params": params, "weight_decay": decay, "name": f"wd{float(group['weight_decay']):g}"})
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(f"parameter_groups() left out trainable parameters: {missing[:5]}")
    return out


def build_optimizer(groups: Iterable[dict[str, Any]], name: OptimizerName = "sgd", lr: float = 0.01,
                    momentum: float = 0.9, nesterov: bool = True,
                    betas: Sequence[float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """SGD (optionally Nesterov, as the release's lstm_shallow) or AdamW over weight-decay groups.

    For SGD the decay is the coupled L2 gradient λ·w, which equals TF's ``l2_regularizer(λ)`` (docs/models.md,
    'Conventions'). For AdamW it is the decoupled decay, which is not what the release did; it is there for experiments.
    """
    groups = list(groups)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(float(betas[0]), float(betas[1])))
    raise ValueError(f"unknown optimizer {name!r}; known: sgd, adamw")


def lr_factor(step: int, total_steps: int, schedule: ScheduleName = "cosine", warmup_steps: int = 0,
              min_lr_ratio: float = 0.0, milestones: Sequence[float] = (), gamma: float = 0.1) -> float:
    """The multiplier of the peak learning rate after ``step`` optimiser steps.

    Linear warm-up from 1/(warmup_steps+1) to 1 over ``warmup_steps``, then:
    - cosine: from 1 down to ``min_lr_ratio`` at ``total_steps``;
    - step: × ``gamma`` at each milestone, given as fractions of ``total_steps`` (0.3 = 30% of training);
    - constant: 1.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        passed = sum(1 for m in milestones if step >= round(m * total_steps))
        return gamma**passed
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, max(0.0, (step - warmup_steps) / span))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}; known: cosine, step, constant")


class StepSchedule:
    """A picklable ``LambdaLR`` multiplier (a plain function of the step; nothing to restore but the step)."""

    def __init__(self, total_steps: int, schedule: ScheduleName, warmup_steps: int, min_lr_ratio: float,
                 milestones: Sequence[float], gamma: float) -> None:
        self.total_steps = int(total_steps)
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.min_lr_ratio = float(min_lr_ratio)
        self.milestones = tuple(float(m) for m in milestones)
        self.gamma = float(gamma)

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.total_steps, self.schedule, self.warmup_steps, self.min_lr_ratio,
                         self.milestones, self.gamma)
