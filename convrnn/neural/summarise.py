"""The summarise stage: from ``r[layer, time_bin, split, neuroid]`` and the ceilings to the score tables: per
(area, layer, bin) raw r (median over the area's neuroids, mean over splits), ceiling and noise-corrected score; time
averages over the reliable bins; and the best layer per area, chosen once on the selection splits.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .metrics import CONVENTIONS, noise_correct, split_half_ceiling

__all__ = ["DEFAULT_MIN_CEILING", "TIME_AVERAGE_COLUMNS", "ScoringResult", "area_ceilings", "add_nayebi",
           "mark_best", "pick_best_layers", "reliable_bins", "summarise", "time_average"]

#: Time averages of noise-corrected scores use only bins whose area ceiling is at least this (``fit_neural.py
#: --min-ceiling``). Why: before the response starts the ceiling is ~0 and R**2/c is unbounded.
DEFAULT_MIN_CEILING = 0.2
#: Columns of :func:`time_average`'s table (after ``area``, ``layer``).
TIME_AVERAGE_COLUMNS = ["n_bins", "n_ceiled_bins", "mean_score_ceiled_bins", "mean_raw_r_ceiled_bins",
                        "mean_ceiling_ceiled_bins", "mean_raw_r_all_bins", "convention", "min_ceiling"]


@dataclass
class ScoringResult:
    """Tables from :func:`score_model`.

    * ``scores``: one row per (area, layer, bin): ``bin`` (start ms), ``bin_end``, ``step``, ``raw_r`` (mean over
      splits of the median-over-neuroids r), ``raw_r_std``/``raw_r_sem`` (over splits, ddof=0 as Brain-Score),
      ``n_splits``, ``ceiling``, ``score``, ``convention``, ``formula``, ``reliable`` (:func:`reliable_bins`).
    * ``time_averaged``: per (area, layer) means over bins (:func:`time_average`): the signed score, raw r and
      ceiling over the bins whose ceiling is at least ``min_ceiling`` (``*_ceiled_bins``), raw r over all bins.
    * ``best_layers``: per area the layer with the highest ``selection_raw_r`` and its time averages.
    * ``selection``: per (area, layer) the bin-averaged raw score on the selection splits.
    * ``ceilings``: per (area, bin) the ceiling and its std over repetition splits.
    * ``neuroid_r``: Pearson r per (layer, bin, split, neuroid) on the evaluation splits.
    """

    scores: pd.DataFrame
    time_averaged: pd.DataFrame
    best_layers: pd.DataFrame
    selection: pd.DataFrame
    ceilings: pd.DataFrame
    neuroid_r: xr.DataArray
    info: dict[str, Any] = field(default_factory=dict)


def reliable_bins(ceiling: Any, min_ceiling: float) -> np.ndarray:
    """The one "reliable bin" rule: the area's ceiling is finite and at least ``min_ceiling``.

    Why one home: time averages, the ``reliable`` column of the score table and the plots (which leave the other
    bins out) must agree on which bins count; downstream stages read the column instead of re-deriving it.
    """
    ceiling = np.asarray(ceiling, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(ceiling) & (ceiling >= min_ceiling)


def time_average(scores: pd.DataFrame, min_ceiling: float = DEFAULT_MIN_CEILING) -> pd.DataFrame:
    """Per (area, layer) averages over bins of a per-bin ``scores`` table (columns area, layer, raw_r, ceiling,
    score, convention), in the table's order.

    * ``mean_score_ceiled_bins``: mean of ``sign(raw_r) * |score|`` over the bins whose ceiling is >= ``min_ceiling``
      (``n_ceiled_bins`` of them). Why both: where the ceiling is ~0 (before the response starts) R**2/c is
      unbounded (R = 0.018, c = -0.0009 gives -0.35), and R**2/c or (R/c)**2 turn a negative r into a positive
      score; so R**2/c becomes sign(R) R**2/c here (R/c keeps its sign anyway).
    * ``mean_raw_r_ceiled_bins``, ``mean_ceiling_ceiled_bins``: raw r and ceiling over the same bins.
    * ``mean_raw_r_all_bins`` (over the ``n_bins`` bins with a finite r): raw r is bounded, so it needs no ceiling.
    NaN where no bin qualifies.
    """
    rows = []
    if scores.empty:  # no layer scored
        return pd.DataFrame(rows, columns=["area", "layer", *TIME_AVERAGE_COLUMNS])
    for (area, layer), group in scores.groupby(["area", "layer"], sort=False):
        raw = group["raw_r"].to_numpy(dtype=np.float64)
        ceiling = group["ceiling"].to_numpy(dtype=np.float64)
        signed = np.sign(raw) * np.abs(group["score"].to_numpy(dtype=np.float64))
        ceiled = reliable_bins(ceiling, min_ceiling) & np.isfinite(raw)

        def mean(values: np.ndarray, where: np.ndarray) -> float:
            return float(values[where].mean()) if where.any() else np.nan

        rows.append(dict(area=area, layer=layer, n_bins=int(np.isfinite(raw).sum()), n_ceiled_bins=int(ceiled.sum()),
                         mean_score_ceiled_bins=mean(signed, ceiled), mean_raw_r_ceiled_bins=mean(raw, ceiled),
                         mean_ceiling_ceiled_bins=mean(ceiling, ceiled),
                         mean_raw_r_all_bins=mean(raw, np.isfinite(raw)),
                         convention=group["convention"].iloc[0], min_ceiling=float(min_ceiling)))
    return pd.DataFrame(rows, columns=["area", "layer", *TIME_AVERAGE_COLUMNS])


def pick_best_layers(time_averaged: pd.DataFrame, selection: pd.DataFrame, areas: Sequence[str]) -> pd.DataFrame:
    """Per area the layer with the highest ``selection_raw_r`` and its :func:`time_average` row.

    Areas without a finite selection score are left out.
    """
    rows = []
    for area in areas:
        sel = selection[selection["area"] == area]
        if sel.empty or not np.isfinite(sel["selection_raw_r"]).any():
            continue
        pick = sel.loc[sel["selection_raw_r"].idxmax()]
        ta = time_averaged[(time_averaged["area"] == area) & (time_averaged["layer"] == pick["layer"])].iloc[0]
        rows.append(dict(area=area, layer=pick["layer"], selection_raw_r=pick["selection_raw_r"],
                         **{c: ta[c] for c in TIME_AVERAGE_COLUMNS}))
    return pd.DataFrame(rows, columns=["area", "layer", "selection_raw_r", *TIME_AVERAGE_COLUMNS])


def mark_best(scores: pd.DataFrame, best_of: Mapping[str, str]) -> pd.DataFrame:
    """``scores`` with ``is_best`` (the row's layer is its area's best, ``best_of[area]``) and then ``reliable``
    as its last two columns (the order ``scores.csv`` has always had)."""
    rows = scores.copy()
    rows["is_best"] = [best_of.get(a) == layer for a, layer in zip(rows["area"], rows["layer"], strict=True)]
    rows["reliable"] = rows.pop("reliable")
    return rows


def add_nayebi(scores: pd.DataFrame, best_layers: pd.DataFrame, nayebi: pd.DataFrame
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Nayebi's r̃ per bin (:func:`convrnn.neural.fit.fit_nayebi`) merged into ``scores`` as ``nayebi_r``, and its
    time average over the reliable bins with a finite r̃ into ``best_layers`` as ``mean_nayebi_r_ceiled_bins``
    (the same bins as the other ``*_ceiled_bins`` averages)."""
    rows = scores.merge(nayebi, on=["area", "layer", "bin"], how="left")
    ceiled = rows[rows["reliable"] & rows["nayebi_r"].notna()]
    mean = ceiled.groupby(["area", "layer"])["nayebi_r"].mean().rename("mean_nayebi_r_ceiled_bins").reset_index()
    return rows, best_layers.merge(mean, on=["area", "layer"], how="left")


def area_ceilings(trials: np.ndarray, masks: Mapping[str, np.ndarray], n_splits: int, missing: str
                  ) -> dict[str, np.ndarray]:
    """Per area the split-half ceiling of each repetition split and bin, [splits, bin] (NaN with ``n_splits=0``).
    ``trials`` is [repetition, stimulus, neuroid, bin]."""
    if n_splits > 0:
        ceil = split_half_ceiling(trials, n_splits=n_splits, missing=missing)
        return {a: ceil.per_split(m) for a, m in masks.items()}
    return {a: np.full((1, trials.shape[-1]), np.nan) for a in masks}


def _area_stats(r: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median over the area's neuroids for each split: r [..., split, N] -> [..., split]."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(r[..., mask], axis=-1)


def summarise(
    r: xr.DataArray,
    n_eval: int,
    masks: Mapping[str, np.ndarray],
    bins: np.ndarray,
    steps: Sequence[int],
    ceil_area: Mapping[str, np.ndarray],
    convention: str,
    min_ceiling: float,
    neuroids: pd.DataFrame,
    info: dict[str, Any],
) -> ScoringResult:
    """Tables from ``r`` (:func:`convrnn.neural.fit.fit_layers`; its first ``n_eval`` splits are the evaluation
    splits, the rest the selection splits) and the per-split area ceilings ``ceil_area[area]`` [splits, bin]: per
    (area, layer, bin) the median over the area's neuroids, mean over splits, noise-corrected with ``convention``;
    per (area, layer) the time averages; per area the best layer, chosen once (:func:`pick_best_layers`)."""
    r_all = r.values
    layers = [str(v) for v in r["layer"].values]
    rows, sel_rows, ceil_rows = [], [], []
    n_bins = len(steps)
    for area, mask in masks.items():
        per_split_ceiling = ceil_area[area]
        c = per_split_ceiling.mean(0)
        reliable = reliable_bins(c, min_ceiling)
        for b in range(n_bins):
            ceil_rows.append(dict(area=area, bin=bins[b, 0], bin_end=bins[b, 1], ceiling=c[b],
                                  ceiling_std=per_split_ceiling[:, b].std(), n_neuroids=int(mask.sum())))
        for li, layer in enumerate(layers):
            split_med = _area_stats(r_all[li, :, :n_eval], mask)  # [B, splits]
            raw = split_med.mean(-1)
            std = split_med.std(-1)
            score = noise_correct(raw, c, convention)
            for b in range(n_bins):
                rows.append(dict(area=area, layer=layer, bin=bins[b, 0], bin_end=bins[b, 1], step=steps[b],
                                 raw_r=raw[b], raw_r_std=std[b], raw_r_sem=std[b] / np.sqrt(n_eval),
                                 n_splits=n_eval, ceiling=c[b], score=score[b], convention=convention,
                                 formula=CONVENTIONS[convention], reliable=bool(reliable[b])))
            if r_all.shape[2] > n_eval:
                sel = _area_stats(r_all[li, :, n_eval:], mask).mean(-1)  # [B]
                sel_rows.append(dict(area=area, layer=layer,
                                     selection_raw_r=np.nanmean(sel) if np.isfinite(sel).any() else np.nan))
    scores = pd.DataFrame(rows)
    time_averaged = time_average(scores, min_ceiling)
    selection = pd.DataFrame(sel_rows, columns=["area", "layer", "selection_raw_r"])
    best_layers = pick_best_layers(time_averaged, selection, list(masks))
    neuroid_r = xr.DataArray(
        r_all[:, :, :n_eval], dims=["layer", "time_bin", "split", "neuroid"],
        coords={"layer": list(layers), "time_bin_start": ("time_bin", bins[:, 0]),
                "time_bin_end": ("time_bin", bins[:, 1]), "step": ("time_bin", list(steps)),
                **{c: ("neuroid", neuroids[c].to_numpy()) for c in neuroids.columns}},
    )
    return ScoringResult(scores=scores, time_averaged=time_averaged, best_layers=best_layers, selection=selection,
                         ceilings=pd.DataFrame(ceil_rows), neuroid_r=neuroid_r, info=info)
