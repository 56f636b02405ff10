"""Presentation schedules (docs/models.md, 'Unrolling'): what conv1 sees at each step.

A schedule is a function step → frame, so a 26-step movie is never materialised. The blank is a *batch-1*
tensor: the unroller notices that it does not depend on the image and computes on it once per batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Frames = Callable[[int], torch.Tensor]

#: The input normalisation every released model expects: RGB in [0, 1], minus ImageNet's channel means, over its
#: channel standard deviations. The blank frame (0.5) is a value in this normalised space.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def static_schedule(images: torch.Tensor, image_off: int | None, blank: float) -> Frames:
    """The image for steps < image_off, then the blank value (in normalised input space); None = constant."""
    blank_frame = torch.full((1, *images.shape[1:]), float(blank), dtype=images.dtype, device=images.device)
    if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last):
        blank_frame = blank_frame.contiguous(memory_format=torch.channels_last)

    def frame(t: int) -> torch.Tensor:
        return images if image_off is None or t < image_off else blank_frame

    return frame


def movie_schedule(movie: torch.Tensor) -> Frames:
    """A user movie [B, T, C, H, W]: frame t is movie[:, t]."""
    return lambda t: movie[:, t]


def make_movie(images: torch.Tensor, times: int, image_off: int | None, blank: float = 0.5) -> torch.Tensor:
    """Materialise a schedule as [B, T, C, H, W] (for inspection and for feeding other models)."""
    frame = static_schedule(images, image_off, blank)
    return torch.stack([frame(t).expand_as(images) for t in range(times)], dim=1)
