"""Readouts over time (docs/models.md, 'Decoders'): which step's logits answer, given logits [T, B, K]."""

from __future__ import annotations

import torch

DECODERS = ("last", "tmaxconf", "dthresh", "mean")


def decode(logits: torch.Tensor, kind: str = "last", window_start: int = 0, beta: float = 1.0,
           threshold: float = 0.9, window_end: int | None = None) -> torch.Tensor:
    """Collapse [T, B, K] logits to [B, K].

    - last: z_{T−1}.
    - tmaxconf: the step of highest max-softmax(β·z) confidence in the window.
    - dthresh: the first step in the window whose max-softmax(z) ≥ threshold, else the most confident one.
    - mean: the mean of the logits over the window (differentiable through every step).
    The window is steps [window_start, window_end) (end defaults to T). The selections are argmaxes, so
    tmaxconf/dthresh pass gradients only through the chosen step, as in the release.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be [T, B, K], got shape {tuple(logits.shape)}")
    T = logits.shape[0]
    end = T if window_end is None else window_end
    if kind == "last":
        return logits[T - 1]
    if not 0 <= window_start < end <= T:
        raise ValueError(f"decoder window [{window_start}, {end}) is empty or outside the {T} steps")
    window = logits[window_start:end]
    if kind == "mean":
        return window.mean(dim=0)
    if kind == "tmaxconf":
        confidence = torch.softmax(beta * window, dim=-1).amax(dim=-1)  # [T', B]
        step = confidence.argmax(dim=0)
    elif kind == "dthresh":
        confidence = torch.softmax(window, dim=-1).amax(dim=-1)
        above = confidence >= threshold
        first = above.float().argmax(dim=0)  # first True (0 if none)
        step = torch.where(above.any(dim=0), first, confidence.argmax(dim=0))
    else:
        raise ValueError(f"unknown decoder {kind!r}; known: {DECODERS}")
    return window.gather(0, step.view(1, -1, 1).expand(1, -1, window.shape[-1])).squeeze(0)
