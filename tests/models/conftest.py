"""Shared fixtures for the model tests: small zoo builds and parameter randomisation.

Zoo models are built small (width ×0.125, 10 classes; 64 px for intermediate graphs, 96 px for shallow ones,
which need ≥ 65 px so that imnetds' 2×2 VALID conv still has a 2×2 map) so that everything runs on CPU.
"""

from __future__ import annotations

import pytest
import torch

import convrnn

SMALL_WIDTH = 0.125
SMALL_CLASSES = 10


def small_size(name: str) -> int:
    return 96 if name.endswith("shallow") else 64


@pytest.fixture
def small_model():
    """`small_model(name, **overrides)` → a small zoo model (float64 unless dtype= is given)."""

    def build(name: str, dtype: torch.dtype = torch.float64, **overrides):
        kwargs = {
            "input_size": small_size(name),
            "width_multiplier": SMALL_WIDTH,
            "num_classes": SMALL_CLASSES,
        }
        kwargs.update(overrides)
        return convrnn.build_model(name, **kwargs).to(dtype)

    return build


@torch.no_grad()
def _randomize(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Give every bias / LN affine / peephole / time-decay scalar a random nonzero value.

    At initialisation all of these are zero (or constant), which makes the image-free activity before the
    image arrives exactly zero (or spatially constant). Randomising them makes that activity nonzero and
    image-independent, so "does not depend on the image" becomes a real test rather than 0 == 0.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, param in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        noise = torch.randn(param.shape, generator=gen, dtype=torch.float64).to(param.dtype)
        if param.dim() <= 1 and leaf == "weight":  # LN γ
            param.copy_(1.0 + scale * noise)
        elif leaf == "decay":  # time-decay m: keep |m| < 1
            param.copy_(0.5 * torch.tanh(noise))
        elif leaf == "bias" or leaf.startswith("peep"):
            param.copy_(scale * noise)
    return module


@pytest.fixture
def randomize():
    return _randomize


def two_images(model, seed: int = 1, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    return torch.randn(batch, 3, model.input_size, model.input_size, generator=gen, dtype=torch.float64).to(
        dtype
    )


@pytest.fixture
def images():
    """`images(model, seed=1, batch=2)` → random normalised images of the model's input size and dtype."""
    return two_images


@pytest.fixture(autouse=True)
def _single_thread():
    """These models are tiny: intra-op threads buy nothing and, on a loaded 2-core machine, oversubscription
    makes runs 10× slower. Run single-threaded and restore afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
