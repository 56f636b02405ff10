"""Presentation schedules (docs/models.md, 'Unrolling'): what conv1 sees at each step.

A schedule is a function step → frame, so a 26-step movie is never materialised. The blank is a *batch-1*
tensor: the unroller notices that it does not depend on the image and computes on it once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Frames = Callable[[int], torch.Tensor]

#: The input normalisation every released model expects: RGB in [0, 1], minus ImageNet's channel means, over its
#: channel standard deviations. The blank frame (0.5) is a value in this normalised space.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalisation(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 ``(mean, std)`` [3, 1, 1] tensors :func:`normalise` uses.

    Why separate: a caller that normalises many batches (the DataModule's ``Normalize``) builds them once.
    """
    if len(mean) != 3 or len(std) != 3:
        raise ValueError("mean and std need 3 values (RGB)")
    return (torch.tensor([float(m) for m in mean]).view(3, 1, 1),
            torch.tensor([float(s) for s in std]).view(3, 1, 1))


def normalise(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, *,
              constants: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 RGB ``[..., 3, H, W]`` (0-255) -> float32 ``(x / 255 - mean) / std``, the input every model expects.

    Why one home: training (``convrnn.data.transforms.Normalize``) and the neural fits
    (``convrnn.neural.features.image_tensor``) must present images identically. Computed in float32 in that order
    (torchvision's ``ToDtype(scale=True)`` + ``Normalize``) on a fresh copy; ``constants`` (from
    :func:`normalisation`) skips rebuilding the mean and std tensors.
    """
    mean_t, std_t = constants if constants is not None else normalisation(mean, std)
    y = x.to(torch.float32, memory_format=torch.contiguous_format)
    if y is x:  # already float32: do not modify the caller's tensor
        y = y.clone()
    if mean_t.device != y.device:
        mean_t, std_t = mean_t.to(y.device), std_t.to(y.device)
    return y.div_(255.0).sub_(mean_t).div_(std_t)


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
