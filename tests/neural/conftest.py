"""Shared fixtures for the neural-data tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures" / "brainio"


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """These tests use many tiny tensor ops; on a shared 2-core machine OpenMP hand-offs dominate them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def _make_recordings(
    n_stimuli: int = 400,
    n_neuroids: int = 24,
    n_bins: int = 3,
    n_reps: int = 6,
    n_features: int = 30,
    noise_var: float = 1.5,
    n_steps: int = 12,
    seed: int = 0,
    per_bin_maps: bool = False,
) -> dict:
    """Synthetic recordings whose trial-averaged signal is a known linear map of the step features.

    signal[s, n, b] = X_{step(b)}[s] @ W[:, n] (``per_bin_maps``: a different W per bin), scaled to unit
    variance per neuroid; trials add N(0, noise_var).
    The analytic reliability of the R-trial average (= the Spearman-Brown split-half ceiling) is
    1 / (1 + noise_var / R).
    """
    rng = np.random.default_rng(seed)
    feats = {t: rng.standard_normal((n_stimuli, n_features)) for t in range(n_steps)}
    W = rng.standard_normal((n_features, n_neuroids))
    bins = [(70 + 10 * b, 80 + 10 * b) for b in range(n_bins)]
    steps = [start // 10 for start, _ in bins]
    maps = [rng.standard_normal(W.shape) if per_bin_maps else W for _ in steps]
    signal = np.stack([feats[t] @ w for t, w in zip(steps, maps, strict=True)], axis=-1)
    signal = (signal - signal.mean(0)) / signal.std(0)
    trials = signal[None] + np.sqrt(noise_var) * rng.standard_normal((n_reps,) + signal.shape)
    objects = np.repeat([f"obj{i}" for i in range(8)], int(np.ceil(n_stimuli / 8)))[:n_stimuli]
    stimuli = pd.DataFrame({"stimulus_id": [f"im{i:04d}" for i in range(n_stimuli)], "object_name": objects})
    half = n_neuroids // 2
    neuroids = pd.DataFrame({
        "neuroid_id": [f"site{i}" for i in range(n_neuroids)],
        "region": ["V4"] * half + ["IT"] * (n_neuroids - half),
    })
    return dict(features=feats, trials=trials, stimuli=stimuli, neuroids=neuroids, bins=bins,
                reliability=1.0 / (1.0 + noise_var / n_reps))


@pytest.fixture
def make_recordings() -> Callable[..., dict]:
    """Factory for synthetic recordings with known ground truth (see ``_make_recordings``)."""
    return _make_recordings
