"""The settings of one neural fit (:class:`FitConfig`, the flags of ``scripts/fit_neural.py``) and what a run
returns (:class:`FitResult`), with the file suffixes that decide how ``--data`` and ``--pca-images`` are read.

Why a module of its own: the CLI (:mod:`convrnn.neural.cli`), the search objective
(:mod:`convrnn.search.objectives`), the input loaders (:mod:`convrnn.neural.inputs`), the checks
(:mod:`convrnn.neural.checks`) and the run (:mod:`convrnn.neural.pipeline`) all read a ``FitConfig``; none of them
needs the others to get it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from convrnn.neural.checkpoint import DEFAULT_ZOO_SEED
from convrnn.neural.summarise import DEFAULT_MIN_CEILING, ScoringResult
from convrnn.neural.synthetic import SyntheticConfig, SyntheticRecordings

__all__ = ["IMAGE_SUFFIXES", "PLAIN_SUFFIXES", "FitConfig", "FitResult"]

#: image files taken from a ``--pca-images`` folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: ``data`` files read by the plain route (:func:`convrnn.neural.load_plain`) rather than as brainio assemblies
PLAIN_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")


@dataclass
class FitConfig:
    """Settings of one fit (the CLI flags of ``scripts/fit_neural.py``; see its ``--help``).

    ``model=None`` with synthetic data: the teacher's architecture, untrained (seed ``seed``). ``input_size`` /
    ``width`` apply to zoo/YAML models (defaults: the synthetic data's 64 px / 0.125 with synthetic data, 224 / 1
    otherwise). ``mapping``: ``"per_bin"`` (one regression map per time bin) or ``"shared"`` (one map for all
    bins); not to be confused with ``weights``, the checkpoint weights of a zoo/YAML model.
    ``n_splits=None``: the scheme's default (Brain-Score 10, Nayebi 5). ``min_ceiling``: bins whose area ceiling
    is below it are flagged unreliable and not drawn. ``model_threads``: torch threads while the model runs (1: its
    small convolutions lose to OpenMP overhead, badly so on a busy machine); ``threads``: torch threads for the fits
    (1 by default: on a shared 2-core machine 2 threads took 107 s instead of 39 s for the synthetic demo's fits;
    None: torch's default).
    ``data``: ``"synthetic"``, a brainio assembly (``.nc``), or a responses array (``.npy``/``.npz``/``.h5``,
    ``[repetitions, stimuli, neurons, bins]`` in the stimulus CSV's row order) read with ``neuroids`` (CSV),
    ``bins`` (CSV or .npy, required) and ``responses_key`` (the array's name in .npz/HDF5).
    ``nayebi_seeds``: when > 0, also Nayebi's r̃ (brainmodel_utils ``r_xy_n_sb``) of each area's best layer per
    bin, over that many split-half seeds (brainmodel_utils: 1,000), on the evaluation splits.
    ``synthetic``: the synthetic data's config; None = reuse the dataset in ``synthetic_dir`` whatever its
    config, or generate the default one. ``ceiling_missing``: the ceiling's rule for missing trials
    (:data:`convrnn.neural.metrics.CEILING_MISSING`); None = ``drop_neuroid`` (Brain-Score's) with
    ``splits="brainscore"``, ``drop_stimulus`` with ``"nayebi"``. ``min_ceiling`` also decides which bins the time
    averages use (``mean_*_ceiled_bins``). ``trust_checkpoint``: allow full unpickling of a checkpoint
    (``load_model(trusted=True)``); only for files you trust.
    """

    out: Path
    model: str | None = None
    weights: str | None = None
    data: str = "synthetic"
    stimuli: str | None = None
    stimuli_images: str | None = None
    neuroids: str | None = None
    bins: str | None = None
    responses_key: str | None = None
    layers: Sequence[str] | None = None
    regions: Sequence[str] | None = None
    regression: str = "pls"
    n_components: int = 25
    mapping: str = "per_bin"
    offset: int = 0
    convention: str = "r2_over_c"
    splits: str = "brainscore"
    n_splits: int | None = None
    n_selection_splits: int = 2
    stratify_by: str | None = "object_name"
    device: str = "cpu"
    input_size: int | None = None
    width: float | None = None
    seed: int = DEFAULT_ZOO_SEED
    times: int = 26
    image_off: int | None = 10
    batch_size: int = 32
    pca: int | None = None
    pca_images: str | None = None
    synthetic: SyntheticConfig | None = None
    synthetic_dir: str | None = None
    keep_features: bool = False
    trust_checkpoint: bool = False
    min_ceiling: float = DEFAULT_MIN_CEILING
    ceiling_missing: str | None = None
    model_threads: int | None = 1
    threads: int | None = 1
    progress: bool = True
    nayebi_seeds: int = 0


@dataclass
class FitResult:
    """What :func:`convrnn.neural.pipeline.run` produced: the merged :class:`ScoringResult`, the written tables and
    the file paths.

    ``best_layers`` / ``time_averaged``: :func:`convrnn.neural.scoring.time_average` over the bins whose ceiling is
    at least ``min_ceiling`` (``best_layers`` adds ``mean_nayebi_r_ceiled_bins`` with ``nayebi_seeds``).
    """

    scoring: ScoringResult
    table: pd.DataFrame
    best_layers: pd.DataFrame
    time_averaged: pd.DataFrame
    paths: dict[str, Path]
    timings: dict[str, float]
    synthetic: SyntheticRecordings | None = None
