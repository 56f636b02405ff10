"""Score model features against time-binned neural data: areas x layers x bins, then the best layer per area.

Stages (one call to :func:`score_model`; fit in :mod:`convrnn.neural.fit`, tables in :mod:`convrnn.neural.summarise`):

1. The assembly becomes a dense ``[repetition, stimulus, neuroid, bin]`` array (NaN = missing trial); targets
   are NaN-means over repetitions.
2. Ceilings per area and bin: Brain-Score's split-half internal consistency (:func:`split_half_ceiling`).
3. For every layer and bin, the features of the model step matched to that bin are read once from the
   :class:`FeatureSource`. With more features than training stimuli, one Gram matrix over all stimuli is
   computed and serves every split (:class:`convrnn.neural.gram.SplitGram`); the kernel-PLS fits of all
   splits x areas (x ``bins_per_batch`` bins) run as one batch (:func:`convrnn.neural.pls.pls_kernel`), so
   each PLS component costs one product with the Gram for all of them. With fewer features than training
   stimuli the primal PLS runs on the rows. RidgeCV uses one eigendecomposition per split for all areas.
4. Per split, Pearson r per neuroid on the test stimuli; per area the median over its neuroids; the mean over
   splits is the raw score R. The noise-corrected score uses R, the ceiling c and a chosen convention.
5. The best layer per area maximises the bin-averaged raw score on separate *selection* splits
   (:func:`convrnn.neural.splits.selection_splits`), so the choice does not reuse the evaluation test sets.

**Model step <-> time bin.** Default: step ``t`` covers ``[10 t, 10 t + 10)`` ms, so a bin starting at ``s`` ms is
matched to step ``s // step_ms + offset`` with ``step_ms=10`` and ``offset=0`` (option (a) in ``docs/neural.md``;
the 70-260 ms bins use steps 7-25 of the 26-step neural presentation). ``offset`` shifts all bins by whole steps;
``steps`` gives an explicit step per bin (e.g. for onset-relative mappings, option (b)).

**One map per bin or one shared map.** ``mapping="per_bin"`` (default) fits one map per bin from that bin's step.
``mapping="shared"`` fits one map per layer on presentation x bin stacked samples and scores each bin with it
(Brain-Score's temporal benchmarks); it holds all bins' features of a layer in memory, so it is meant for modest
feature sizes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from .areas import NAYEBI_AREAS, area_masks, default_bin_steps
from .features import ArrayFeatures, FeatureSource, MemmapFeatures
from .fit import fit_layers
from .metrics import CEILING_MISSING, CONVENTIONS
from .ridge import NAYEBI_RIDGE_ALPHAS
from .splits import Split, make_splits, selection_splits
from .summarise import (
    DEFAULT_MIN_CEILING,
    TIME_AVERAGE_COLUMNS,
    ScoringResult,
    area_ceilings,
    pick_best_layers,
    summarise,
    time_average,
)
from .tensors import resolve_device
from .trials import TrialData, check_trials, trial_array

__all__ = [
    "DEFAULT_MIN_CEILING",
    "NAYEBI_AREAS",
    "TIME_AVERAGE_COLUMNS",
    "ArrayFeatures",
    "FeatureSource",
    "MemmapFeatures",
    "ScoringResult",
    "area_masks",
    "default_bin_steps",
    "pick_best_layers",
    "score_model",
    "time_average",
]

logger = logging.getLogger(__name__)


def score_model(
    features: FeatureSource,
    assembly: xr.DataArray | TrialData,
    *,
    layers: Sequence[str] | None = None,
    areas: Mapping[str, Mapping[str, Any]] | None = None,
    regression: str | Callable[[], Any] = "pls",
    n_components: int | Mapping[str, int] = 25,
    ridge_alphas: Sequence[float] | np.ndarray = NAYEBI_RIDGE_ALPHAS,
    ridge_cv: int | None = 5,
    mapping: str = "per_bin",
    split_scheme: str = "brainscore",
    stratify_by: str | None = "object_name",
    splits: Sequence[Split] | None = None,
    selection: Sequence[Split] | None = None,
    n_selection_splits: int = 2,
    offset: int = 0,
    step_ms: float = 10.0,
    steps: Sequence[int] | None = None,
    ceiling_splits: int = 10,
    ceiling_missing: str | None = None,
    convention: str = "r2_over_c",
    min_ceiling: float = DEFAULT_MIN_CEILING,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    gram_dtype: torch.dtype | str | None = None,
    max_batch: int | None = None,
    bins_per_batch: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ScoringResult:
    """Score every layer against every area and time bin; pick the best layer per area on selection splits.

    ``assembly``: (presentation, neuroid[, time_bin]) with ``stimulus_id`` (and ideally ``repetition``,
    ``object_name``) on presentation and area coordinates (``region``/``subregion``) on neuroid; or a
    :class:`TrialData`. ``areas`` maps an area name to ``{coord: value or values}`` (default: one area per
    ``region``; see :data:`NAYEBI_AREAS`). ``regression``: ``"pls"`` (sklearn-equivalent PLS, ``n_components``),
    ``"ridgecv"`` (per-target alpha over ``ridge_alphas``, ``ridge_cv`` folds or None = leave-one-out) or a
    factory returning an sklearn-style estimator. Splits default to ``split_scheme`` stratified by
    ``stratify_by``; selection splits to :func:`selection_splits` (``n_selection_splits``; 0 disables
    selection). ``ceiling_splits=0`` skips ceilings (e.g. single-trial data). ``ceiling_missing``: the ceiling's rule
    for missing trials (:data:`convrnn.neural.metrics.CEILING_MISSING`; default ``drop_neuroid``, Brain-Score's,
    with ``split_scheme="brainscore"`` and ``drop_stimulus`` with ``"nayebi"``). ``convention`` is one of
    :data:`CONVENTIONS`; time averages use the bins whose ceiling is >= ``min_ceiling`` (:func:`time_average`).
    ``gram_dtype`` (e.g. ``torch.float32``) speeds up the Gram products on CPU.
    Batching: kernel-PLS fits of all splits (up to ``max_batch``, default by a memory budget) and all areas run
    together; ``bins_per_batch`` bins of a layer are added to the same batch (default 1 on CPU, 4 on CUDA,
    where larger batches keep the device busy; each costs one n x n Gram in memory).
    ``n_components`` may map each layer to its own count (e.g. fewer for a layer with fewer units).
    ``progress(layer, done, total)`` is called after each layer (e.g. to drive a progress bar).
    PLS fits that stop early on features without stimulus variance (:class:`ConstantFeaturesWarning`) are counted
    per layer in ``info["constant_feature_warnings"]`` instead of being warned about one by one.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose from {sorted(CONVENTIONS)}")
    if mapping not in ("per_bin", "shared"):
        raise ValueError(f"mapping must be 'per_bin' or 'shared', got {mapping!r}")
    dev, dt = resolve_device(device, dtype)
    gdt = getattr(torch, gram_dtype) if isinstance(gram_dtype, str) else (gram_dtype or dt)
    if ceiling_missing is None:
        ceiling_missing = "drop_neuroid" if split_scheme == "brainscore" else "drop_stimulus"
    if ceiling_missing not in CEILING_MISSING:
        raise ValueError(f"unknown ceiling_missing {ceiling_missing!r}; choose from {sorted(CEILING_MISSING)}")
    td = assembly if isinstance(assembly, TrialData) else trial_array(assembly)
    check_trials(td, min_repetitions=2 if ceiling_splits > 0 else 1)
    Y = td.mean()  # [S, N, B]
    n_stim, n_neur, n_bins = Y.shape
    if steps is None:
        if td.bins is None:
            raise ValueError("the assembly has no time_bin_start/time_bin_end; pass steps=[step per bin]")
        steps = default_bin_steps(td.bins, step_ms=step_ms, offset=offset)
    steps = [int(s) for s in steps]
    if len(steps) != n_bins:
        raise ValueError(f"steps has {len(steps)} entries for {n_bins} bins")
    bins = td.bins if td.bins is not None else np.full((n_bins, 2), np.nan)
    masks = area_masks(td.neuroids, areas)
    strata = None
    if stratify_by is not None and stratify_by in td.stimuli.columns:
        strata = td.stimuli[stratify_by].astype(str).to_numpy()
    elif stratify_by is not None:
        logger.info("no %r coordinate: splits are not stratified", stratify_by)
    eval_splits = list(splits) if splits is not None else make_splits(n_stim, strata, scheme=split_scheme)
    sel_splits = list(selection) if selection is not None else (
        selection_splits(n_stim, strata, scheme=split_scheme, n_splits=n_selection_splits)
        if n_selection_splits > 0 else [])
    all_splits = eval_splits + sel_splits
    n_eval = len(eval_splits)
    layers = list(layers) if layers is not None else list(features.layers)
    components = {layer: int(n_components[layer] if isinstance(n_components, Mapping) else n_components)
                  for layer in layers}
    per_batch = int(bins_per_batch) if bins_per_batch else (1 if dev.type == "cpu" else 4)

    # ceilings
    ceil_area = area_ceilings(td.trials, masks, ceiling_splits, ceiling_missing)  # [splits, B] per area

    r, constant = fit_layers(features, Y, td.stimulus_ids, layers, steps, all_splits, masks,
                             components=components, regression=regression,
                             ridge_alphas=np.asarray(ridge_alphas, dtype=np.float64), ridge_cv=ridge_cv,
                             mapping=mapping, device=dev, dtype=dt, gram_dtype=gdt, max_batch=max_batch,
                             per_batch=per_batch, progress=progress)

    return summarise(r, n_eval, masks, bins, steps, ceil_area, convention, min_ceiling, td.neuroids,
                   info=dict(offset=offset, step_ms=step_ms, steps=steps, mapping=mapping,
                             regression=regression if isinstance(regression, str) else repr(regression),
                             n_components=n_components if not isinstance(n_components, Mapping) else components,
                             constant_feature_warnings=constant, n_eval_splits=n_eval,
                             n_selection_splits=len(sel_splits),
                             ceiling_splits=ceiling_splits, ceiling_missing=ceiling_missing,
                             min_ceiling=min_ceiling, n_missing_trials=td.n_missing, bins_per_batch=per_batch,
                             device=str(dev), dtype=str(dt), gram_dtype=str(gdt)))
